"""Save and load embedding tensors as safetensors, with the text reply in the metadata."""
from __future__ import annotations

import json
import os
from pathlib import Path

import torch

from .errors import NexusError

FORMAT = "nexus-gen-embeddings"


def atomic_save(tensors: dict[str, torch.Tensor], path, metadata: dict | None = None) -> Path:
    """Write to a temp file beside the target, then rename: an interrupted save never leaves a partial file."""
    from safetensors.torch import save_file

    path = Path(path)
    if not path.parent.is_dir():
        raise NexusError(f"Output folder does not exist: {path.parent}")
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        save_file({k: v.detach().contiguous().cpu() for k, v in tensors.items()}, str(tmp), metadata=metadata)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


def save_embeddings(path, tensors: dict[str, torch.Tensor], **meta) -> Path:
    metadata = {"format": FORMAT}
    metadata.update({k: v if isinstance(v, str) else json.dumps(v, ensure_ascii=False) for k, v in meta.items()})
    return atomic_save(tensors, path, metadata)
