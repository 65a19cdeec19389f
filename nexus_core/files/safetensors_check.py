"""Validate safetensors files before loading, so truncated or foreign files get a clear message."""
from __future__ import annotations

import json
import os
import struct
from pathlib import Path

from ..errors import NexusError


def read_header(path: str | os.PathLike) -> dict:
    """Return the safetensors header (tensor name -> info, plus '__metadata__'), refusing truncated files."""
    path = Path(path)
    if not path.is_file():
        raise NexusError(f"File not found: {path}")
    size = path.stat().st_size
    try:
        with open(path, "rb") as f:
            raw = f.read(8)
            if len(raw) < 8:
                raise NexusError(f"{path} is not a safetensors file (only {size} bytes)")
            (n,) = struct.unpack("<Q", raw)
            if n <= 0 or 8 + n > size:
                raise NexusError(
                    f"{path} is truncated or not a safetensors file (header claims {n} bytes, file has {size})"
                )
            header = json.loads(f.read(n))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise NexusError(f"{path} is not a safetensors file (unreadable header: {e})") from None
    end = max((v["data_offsets"][1] for k, v in header.items() if k != "__metadata__"), default=0)
    if 8 + n + end > size:
        raise NexusError(
            f"{path} is truncated: its tensors need {8 + n + end} bytes but the file has {size}. "
            "Download or convert it again."
        )
    return header


def tensor_names(path: str | os.PathLike) -> dict[str, dict]:
    return {k: v for k, v in read_header(path).items() if k != "__metadata__"}
