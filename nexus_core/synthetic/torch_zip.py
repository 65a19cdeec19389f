"""Write a torch zip checkpoint (what `torch.save` of a dict of tensors makes) one tensor at a time.

`torch.save` needs every tensor in memory at once: 24 GB for a full-size decoder. The format is a zip with
`data.pkl` (the pickled dict, whose tensors point at storages by key) and one record `data/<key>` per storage. So
the pickle is written first from shapes alone, with the same opcodes torch.save emits, and each storage record is
then written when its tensor has been made, through torch's own zip writer (alignment, CRC, end records).
"""
from __future__ import annotations

import collections
import io
import math
import pickle
from pathlib import Path
from typing import Callable, Iterable

import torch


class _Storage:
    """Stands for a tensor's storage in the pickle: torch.save names it ('storage', type, key, location, numel)."""

    def __init__(self, key: str, dtype: torch.dtype, numel: int):
        self.key, self.dtype, self.numel = key, dtype, numel


class _Tensor:
    """Pickles like a contiguous CPU tensor of `shape` whose data is record data/<key>."""

    def __init__(self, storage: _Storage, shape: tuple[int, ...]):
        self.storage, self.shape = storage, tuple(shape)

    def __reduce_ex__(self, protocol):
        stride, step = [], 1
        for size in reversed(self.shape):
            stride.insert(0, step)
            step *= size
        return (torch._utils._rebuild_tensor_v2,
                (self.storage, 0, self.shape, tuple(stride), False, collections.OrderedDict()))


# The legacy storage classes torch.save names in its pickles (torch/storage.py's _dtype_to_storage_type_map).
_STORAGE_TYPES = {torch.float32: "FloatStorage", torch.float64: "DoubleStorage", torch.float16: "HalfStorage",
                  torch.bfloat16: "BFloat16Storage", torch.int64: "LongStorage", torch.int32: "IntStorage",
                  torch.int16: "ShortStorage", torch.int8: "CharStorage", torch.uint8: "ByteStorage",
                  torch.bool: "BoolStorage"}


class _Pickler(pickle.Pickler):
    def persistent_id(self, obj):
        if isinstance(obj, _Storage):
            return ("storage", getattr(torch, _STORAGE_TYPES[obj.dtype]), obj.key, "cpu", obj.numel)
        return None


def write_torch_zip(path, entries: Iterable[tuple[str, tuple[int, ...], torch.dtype]],
                    make: Callable[[str], torch.Tensor], on_tensor: Callable[[int, int], None] | None = None) -> Path:
    """Write `{name: tensor}` in `entries`' order to `path` as torch.save would, making each tensor with
    `make(name)` only when its record is written. Not atomic: write to a temp name and rename (an error leaves a
    file that ends early)."""
    entries = list(entries)
    unknown = {dtype for _, _, dtype in entries} - set(_STORAGE_TYPES)
    if unknown:
        raise ValueError(f"write_torch_zip writes the legacy storage types only, not {sorted(map(str, unknown))}")
    storages = [_Storage(str(i), dtype, math.prod(shape)) for i, (_, shape, dtype) in enumerate(entries)]
    state = collections.OrderedDict((name, _Tensor(st, shape)) for (name, shape, _), st in zip(entries, storages))
    buf = io.BytesIO()
    _Pickler(buf, protocol=2).dump(state)  # torch.save's default protocol
    with open(path, "wb") as f:  # the buffer overload takes any file name; torch's own needs ASCII
        writer = torch._C.PyTorchFileWriter(f)
        try:
            data = buf.getvalue()
            writer.write_record("data.pkl", data, len(data))
            writer.write_record(".format_version", "1", 1)
            writer.write_record(".storage_alignment", "64", 2)
            writer.write_record("byteorder", "little", 6)
            for i, ((name, shape, dtype), st) in enumerate(zip(entries, storages)):
                t = make(name)
                if tuple(t.shape) != tuple(shape) or t.dtype != dtype:
                    raise ValueError(f"{name}: made {tuple(t.shape)} {t.dtype}, expected {tuple(shape)} {dtype}")
                t = t.detach().to("cpu").contiguous()
                writer.write_record(f"data/{st.key}", t.untyped_storage(), t.numel() * t.element_size())
                del t
                if on_tensor is not None:
                    on_tensor(i + 1, len(entries))
        finally:  # as torch.save does: a writer left unfinished aborts the process when it is destroyed
            writer.write_end_of_file()
            del writer
    return Path(path)
