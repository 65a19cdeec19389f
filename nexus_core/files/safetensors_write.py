"""A safetensors writer that keeps the order it is given (tensors and metadata) and writes atomically.

safetensors' own save_file stores metadata through a hash map (a different key order on every run) and
creates its file with mode 0600; files here get the usual permissions (0666 less the umask)."""
from __future__ import annotations

import json
from pathlib import Path

import torch

from .atomic import atomic_write

_DTYPES = {torch.float64: "F64", torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16",
           torch.int64: "I64", torch.int32: "I32", torch.int16: "I16", torch.int8: "I8", torch.uint8: "U8",
           torch.bool: "BOOL", torch.float8_e4m3fn: "F8_E4M3", torch.float8_e5m2: "F8_E5M2"}


def write_safetensors(path, tensors: dict[str, torch.Tensor], metadata: dict[str, str] | None = None) -> Path:
    """Write `tensors` with `metadata` (str -> str, in the given order) to `path`. Tensors keep the given order
    except that wider dtypes come first (stable), so every tensor starts aligned to its element size."""
    items = sorted(tensors.items(), key=lambda kv: -kv[1].element_size())
    flat = {k: v.detach().to("cpu").contiguous() for k, v in items}
    header, offset = {}, 0
    if metadata:
        header["__metadata__"] = {str(k): str(v) for k, v in metadata.items()}
    for name, t in flat.items():
        n = t.numel() * t.element_size()
        header[name] = {"dtype": _DTYPES[t.dtype], "shape": list(t.shape), "data_offsets": [offset, offset + n]}
        offset += n
    raw = json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode()
    raw += b" " * (-len(raw) % 8)
    path = Path(path)
    with atomic_write(path) as tmp, open(tmp, "wb") as f:
        f.write(len(raw).to_bytes(8, "little"))
        f.write(raw)
        for t in flat.values():
            if t.numel():
                f.write(memoryview(t.reshape(-1).view(torch.uint8).numpy()))
    return path
