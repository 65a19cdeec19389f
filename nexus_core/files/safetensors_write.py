"""A safetensors writer that keeps the order it is given (tensors and metadata) and writes atomically.

safetensors' own save_file stores metadata through a hash map (a different key order on every run) and
creates its file with mode 0600; files here get the usual permissions (0666 less the umask)."""
from __future__ import annotations

import json
import math
from pathlib import Path

import torch

from ..settings.validate import as_utf8
from .atomic import atomic_write

_DTYPES = {torch.float64: "F64", torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16",
           torch.int64: "I64", torch.int32: "I32", torch.int16: "I16", torch.int8: "I8", torch.uint8: "U8",
           torch.bool: "BOOL", torch.float8_e4m3fn: "F8_E4M3", torch.float8_e5m2: "F8_E5M2"}


def write_safetensors(path, tensors: dict[str, torch.Tensor], metadata: dict[str, str] | None = None) -> Path:
    """Write `tensors` with `metadata` (str -> str, in the given order) to `path`. Tensors keep the given order
    except that wider dtypes come first (stable), so every tensor starts aligned to its element size."""
    flat = {k: v.detach().to("cpu").contiguous() for k, v in tensors.items()}
    return write_safetensors_streamed(path, [(k, tuple(v.shape), v.dtype, flat.__getitem__) for k, v in flat.items()],
                                      metadata)


def write_safetensors_streamed(path, entries, metadata: dict[str, str] | None = None, on_tensor=None,
                               overwrite: bool = True) -> Path:
    """Write a safetensors file one tensor at a time: `entries` is [(name, shape, dtype, make)] and `make(name)`
    returns that tensor when its turn comes, so only one tensor is in memory at once. The header is computed from
    the shapes first. Entries keep their order except that wider dtypes come first (stable), so every tensor starts
    aligned to its element size. Atomic (temp file + rename)."""
    entries = sorted(entries, key=lambda e: -e[2].itemsize)
    header, offset = {}, 0
    if metadata:
        header["__metadata__"] = {as_utf8(k): as_utf8(v) for k, v in metadata.items()}
    for name, shape, dtype, _ in entries:
        n = math.prod(shape) * dtype.itemsize
        header[name] = {"dtype": _DTYPES[dtype], "shape": list(shape), "data_offsets": [offset, offset + n]}
        offset += n
    raw = json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode()
    raw += b" " * (-len(raw) % 8)
    path = Path(path)
    with atomic_write(path, overwrite) as tmp, open(tmp, "wb") as f:
        f.write(len(raw).to_bytes(8, "little"))
        f.write(raw)
        for i, (name, shape, dtype, make) in enumerate(entries):
            t = make(name)
            if tuple(t.shape) != tuple(shape) or t.dtype != dtype:
                raise ValueError(f"{name}: made {tuple(t.shape)} {t.dtype}, the header says {tuple(shape)} {dtype}")
            t = t.detach().to("cpu").contiguous()
            if t.numel():
                f.write(memoryview(t.reshape(-1).view(torch.uint8).numpy()))
            del t
            if on_tensor is not None:
                on_tensor(i + 1, len(entries))
    return path
