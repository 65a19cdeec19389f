"""`nexus-gen make-tiny`: tiny random model sets in the real on-disk layouts, deterministic from a seed."""
from __future__ import annotations

from pathlib import Path

from .ar import write_tiny_ar


def make_tiny(root, seed: int = 0) -> dict[str, Path]:
    root = Path(root)
    paths = {"ar": write_tiny_ar(root / "Nexus-GenV2", seed=seed)}
    return paths
