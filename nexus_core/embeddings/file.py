"""Save embedding tensors as safetensors, with the text reply and the settings in the metadata."""
from __future__ import annotations

import json
from pathlib import Path

import torch

from ..errors import NexusError
from ..files.safetensors_write import write_safetensors

FORMAT = "nexus-gen-embeddings"


def atomic_save(tensors: dict[str, torch.Tensor], path, metadata: dict | None = None) -> Path:
    """Write to a temp file beside the target, then rename: an interrupted save never leaves a partial file."""
    path = Path(path)
    if not path.parent.is_dir():
        raise NexusError(f"Output folder does not exist: {path.parent}")
    return write_safetensors(path, tensors, metadata)


def save_embeddings(path, tensors: dict[str, torch.Tensor], **meta) -> Path:
    """Metadata in a fixed order: "format" first, then `meta` as given (non-strings as JSON)."""
    metadata = {"format": FORMAT}
    metadata.update({k: v if isinstance(v, str) else json.dumps(v, ensure_ascii=False) for k, v in meta.items()})
    return atomic_save(tensors, path, metadata)
