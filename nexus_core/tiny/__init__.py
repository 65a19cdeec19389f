"""`nexus-gen make-tiny`: tiny random model sets in the real on-disk layouts, deterministic from a seed."""
from __future__ import annotations

import json
from pathlib import Path

from .ar import write_tiny_ar
from .decoders import write_edit_decoder, write_generation_decoder
from .flux import write_tiny_flux


def make_tiny(root, seed: int = 0) -> dict[str, Path]:
    """<root>/Nexus-GenV2 (AR folder + both decoder .bin files) and <root>/FLUX.1-dev (CLIP-L, T5, tokenizers, AE)."""
    root = Path(root)
    ar = write_tiny_ar(root / "Nexus-GenV2", seed=seed)
    cfg = json.loads((ar / "config.json").read_text())
    gen = write_generation_decoder(ar / "generation_decoder.bin", cfg["hidden_size"], seed=seed + 10)
    edit = write_edit_decoder(ar / "edit_decoder.bin", cfg, seed=seed + 20)
    flux = write_tiny_flux(root / "FLUX.1-dev", seed=seed + 30)
    return {"ar": ar, "generation_decoder": gen, "edit_decoder": edit, "flux": flux}
