"""Validate safetensors files before loading, so truncated or foreign files get a clear message."""
from __future__ import annotations

import json
import math
import os
import struct
from pathlib import Path

from ..errors import NexusError


# The dtypes Nexus-Gen reads, with their sizes in bytes. Others (unsigned 16-64 bit ints, F8_E4M3FNUZ, ...) are
# refused by name here, before any tensor is read, rather than failing later in a loader that cannot map them.
ITEM_BYTES = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1, "U8": 1, "BOOL": 1,
              "F8_E4M3": 1, "F8_E5M2": 1}
MAX_HEADER_BYTES = 100_000_000  # the safetensors library's own limit


def read_header(path: str | os.PathLike) -> dict:
    """Return the safetensors header (tensor name -> info, plus '__metadata__'), after checking all of it: a JSON
    object; '__metadata__' an object of strings; each tensor a known dtype, a shape of whole numbers, and
    data_offsets that hold exactly its bytes; the tensors tiling the data section (no overlap, gap or tail) and
    the file long enough for them. Every reader goes through here, so a file damaged or written by another tool
    is refused naming the file and the tensor, before any tensor is read."""
    path = Path(path)
    if path.is_dir():
        raise NexusError(f"{path} is a folder; a safetensors file was expected here")
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
            if n > MAX_HEADER_BYTES:
                raise NexusError(f"{path} is not a safetensors file (a header of {n} bytes; at most "
                                 f"{MAX_HEADER_BYTES} are allowed)")
            header = json.loads(f.read(n))
    except PermissionError:
        raise NexusError(f"{path} cannot be read: permission denied") from None
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as e:
        raise NexusError(f"{path} is not a safetensors file (unreadable header: {e})") from None
    check_header(path, header, size - 8 - n)
    return header


def check_header(path, header, data_bytes: int) -> None:
    """Refuse a header whose structure or offsets are wrong (see read_header); `data_bytes`: the data section."""
    if not isinstance(header, dict):
        raise NexusError(f"{path} is not a safetensors file: its header is a JSON {type(header).__name__}, not an "
                         "object")
    meta = header.get("__metadata__")
    if meta is not None and not (isinstance(meta, dict)
                                 and all(isinstance(k, str) and isinstance(v, str) for k, v in meta.items())):
        raise NexusError(f"{path}: its __metadata__ must be an object of strings (the safetensors format); "
                         "the file was written by a tool that does not follow it")
    spans = []
    for name, info in header.items():
        if name == "__metadata__":
            continue
        where = f"{path}: tensor '{name}'"
        if not isinstance(info, dict):
            raise NexusError(f"{where} has no dtype, shape and data_offsets (the header is damaged)")
        dtype, shape, offsets = info.get("dtype"), info.get("shape"), info.get("data_offsets")
        if dtype not in ITEM_BYTES:
            raise NexusError(f"{where} has dtype {dtype!r}, which Nexus-Gen does not read "
                             f"({', '.join(ITEM_BYTES)})")
        if not isinstance(shape, list) or not all(_whole(d) for d in shape):
            raise NexusError(f"{where} has shape {shape!r}: not a list of whole numbers (the header is damaged)")
        if not (isinstance(offsets, list) and len(offsets) == 2 and all(_whole(o) for o in offsets)
                and offsets[0] <= offsets[1]):
            raise NexusError(f"{where} has data_offsets {offsets!r}: expected [begin, end] with 0 <= begin <= end "
                             "(the header is damaged)")
        need = math.prod(shape) * ITEM_BYTES[dtype]
        if offsets[1] - offsets[0] != need:
            raise NexusError(f"{where}: its data_offsets span {offsets[1] - offsets[0]} bytes, but a {dtype} tensor "
                             f"of shape {shape} takes {need} (the header is damaged)")
        spans.append((offsets[0], offsets[1], name))
    end = 0
    for begin, stop, name in sorted(spans):
        if begin < end:
            raise NexusError(f"{path}: tensor '{name}' overlaps the tensor stored before it (data_offsets "
                             f"[{begin}, {stop}]; the header is damaged)")
        if begin > end:
            raise NexusError(f"{path}: {begin - end} bytes before tensor '{name}' belong to no tensor (the header is "
                             "damaged)")
        end = stop
    if end > data_bytes:
        raise NexusError(
            f"{path} is truncated: its tensors need {end} bytes of data but the file holds {max(data_bytes, 0)}. "
            "Download or convert it again."
        )
    if end < data_bytes:
        raise NexusError(f"{path}: {data_bytes - end} bytes after the last tensor belong to no tensor (the file was "
                         "damaged, or appended to)")


def _whole(x) -> bool:
    return isinstance(x, int) and not isinstance(x, bool) and x >= 0


def tensor_names(path: str | os.PathLike) -> dict[str, dict]:
    return {k: v for k, v in read_header(path).items() if k != "__metadata__"}
