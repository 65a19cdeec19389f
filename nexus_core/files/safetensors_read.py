"""Reading a safetensors file one tensor at a time into memory of our own (plain reads, no memory map).

A memory-mapped tensor keeps its whole file mapped while any view of it lives, and every page read stays in the
process's resident set until the mapping goes: a loader that converts as it reads would hold the file and the
conversion at once. Reading each tensor into a fresh buffer holds exactly what is kept, and the file's pages
are the kernel's cache, which it can drop.
"""
from __future__ import annotations

import ctypes
import math
import os
import sys
from pathlib import Path
from typing import Iterator

import torch

from ..errors import NexusError
from .safetensors_check import read_header

DTYPES = {"F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
          "I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8, "U8": torch.uint8,
          "BOOL": torch.bool, "F8_E4M3": torch.float8_e4m3fn, "F8_E5M2": torch.float8_e5m2}


def prefer_huge_pages(t: torch.Tensor) -> None:
    """Ask Linux to back a large fresh tensor with 2 MB pages: the first write to each 4 KB page is a fault
    (zeroing included), which doubled the cost of filling an 8.9 GB fp8 model (measured: 30 -> 18 ms a block).
    Harmless where refused or not Linux."""
    n = t.numel() * t.element_size()
    if n < 64 << 20 or not sys.platform.startswith("linux"):
        return
    page = 2 << 20
    start = (t.data_ptr() + page - 1) // page * page
    end = (t.data_ptr() + n) // page * page
    try:
        ctypes.CDLL(None, use_errno=True).madvise(ctypes.c_void_p(start), ctypes.c_size_t(end - start), 14)
    except (OSError, AttributeError):  # 14 = MADV_HUGEPAGE
        pass


CHUNK = 64 << 20  # bytes per read call: whole-tensor reads of a GB were half as fast here


class StoredTensor:
    """A tensor still in its file: read it whole, or a block of rows (what a row-wise conversion needs), or, from
    a file iterated with mapped=True, as a view of the file's private memory map (no copy; its pages are read when
    first used, and the kernel may drop and re-read them)."""

    def __init__(self, f, path: Path, name: str, offset: int, shape: tuple[int, ...], dtype: torch.dtype,
                 mapping=None):
        self._f, self.path, self.name, self.offset, self.shape, self.dtype = f, path, name, offset, shape, dtype
        self._mapping = mapping

    def mapped(self) -> torch.Tensor | None:
        """The tensor as a view of the file's map, or None (not mapped, or not aligned to its element size:
        then read it)."""
        if self._mapping is None or self.offset % self.dtype.itemsize:
            return None
        t = torch.empty(0, dtype=self.dtype)
        return t.set_(self._mapping(), self.offset // self.dtype.itemsize, self.shape)

    @property
    def row_bytes(self) -> int:
        return math.prod(self.shape[1:]) * self.dtype.itemsize

    def read_rows(self, i: int, j: int, out: torch.Tensor | None = None) -> torch.Tensor:
        """Rows i..j-1; into `out` (a buffer of at least that many rows, reused by the caller) when given."""
        t = out[: j - i] if out is not None else torch.empty((j - i, *self.shape[1:]), dtype=self.dtype)
        self._read_into(t, self.offset + i * self.row_bytes)
        return t

    def read(self) -> torch.Tensor:
        t = torch.empty(self.shape, dtype=self.dtype)
        prefer_huge_pages(t)
        self._read_into(t, self.offset)
        return t

    def _read_into(self, t: torch.Tensor, at: int) -> None:
        n = t.numel() * t.element_size()
        if not n:
            return
        view = memoryview(t.view(-1).view(torch.uint8).numpy())
        self._f.seek(at)
        got = 0
        while got < n:  # in chunks; readinto may also return short reads on some file systems
            more = self._f.readinto(view[got:got + CHUNK])
            if not more:
                raise NexusError(f"{self.path} ended inside tensor {self.name}: the file is truncated")
            got += more


def iter_stored(path, mapped: bool = False) -> Iterator[StoredTensor]:
    """The tensors of `path` in file order, not yet read (the header is checked first: truncation, dtypes, sizes).
    Valid while the iteration runs. mapped=True: each can also be had as a view of one private (copy-on-write) map
    of the file, made when first asked for (`StoredTensor.mapped()`)."""
    path = Path(path)
    header = read_header(path)
    storage: list = []

    def mapping():
        if not storage:
            storage.append(torch.UntypedStorage.from_file(str(path), shared=False, nbytes=path.stat().st_size))
        return storage[0]

    with open(path, "rb", buffering=0) as f:
        start = 8 + int.from_bytes(f.read(8), "little")
        entries = sorted(((k, v) for k, v in header.items() if k != "__metadata__"),
                         key=lambda kv: kv[1]["data_offsets"][0])
        for name, info in entries:  # dtypes and sizes were checked with the header
            a, _ = info["data_offsets"]
            shape, dtype = tuple(info["shape"]), DTYPES[info["dtype"]]
            yield StoredTensor(f, path, name, start + a, shape, dtype, mapping if mapped else None)


def iter_tensors(path) -> Iterator[tuple[str, torch.Tensor]]:
    """(name, tensor) in file order, each read into memory of its own when its turn comes."""
    for stored in iter_stored(path):
        yield stored.name, stored.read()


def drop_cached_pages(path) -> None:
    """Tell the kernel the file's pages need not stay cached (read once). Linux only; harmless elsewhere."""
    if not hasattr(os, "posix_fadvise"):
        return
    try:
        fd = os.open(path, os.O_RDONLY)
        try:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)
    except OSError:
        pass
