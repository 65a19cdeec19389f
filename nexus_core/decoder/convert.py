"""`nexus-gen convert`: a decoder .bin -> .safetensors in the ComfyUI (BFL) or diffusers layout, streamed.

The .bin is memory-mapped (torch.load weights_only=True, mmap=True); the safetensors header is computed from
shapes first, then each tensor is mapped, cast and written, and the pages it was read from are released
(madvise), so peak memory stays a small fraction of the file. Output goes to a temp file that is renamed at the
end: an interrupted run leaves nothing half-written and a rerun simply starts over.
"""
from __future__ import annotations

import ctypes
import json
import mmap
import os
import sys
from pathlib import Path
from typing import Callable

import torch

from ..errors import NexusCancelled, NexusError
from .checkpoint import FORMAT, PROJECTOR_PREFIX, read_decoder
from .keymap import LAYOUTS, map_key

STORAGE_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32,
                  "fp8_e4m3fn": torch.float8_e4m3fn, "fp8_e5m2": torch.float8_e5m2}
_ST_DTYPE = {torch.bfloat16: "BF16", torch.float16: "F16", torch.float32: "F32",
             torch.float8_e4m3fn: "F8_E4M3", torch.float8_e5m2: "F8_E5M2"}
VERSION = "1"


def _release(t: torch.Tensor):
    """Drop the file-backed pages behind a memory-mapped tensor (Linux); harmless elsewhere."""
    if not sys.platform.startswith("linux") or t.device.type != "cpu":
        return
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        page = mmap.PAGESIZE
        start = t.untyped_storage().data_ptr()
        end = start + t.untyped_storage().nbytes()
        aligned = start - start % page
        libc.madvise(ctypes.c_void_p(aligned), ctypes.c_size_t(end - aligned), 4)  # MADV_DONTNEED
    except (OSError, AttributeError, RuntimeError):
        pass


def _plan(dec, layout: str, dtype: torch.dtype):
    """[(out name, source tensor, slicer, out dtype)] in file order, without touching tensor data."""
    if dec.layout != "diffsynth":
        raise NexusError(f"{dec.path} is already converted ({dec.layout} layout); convert the original .bin")
    hidden = dec.dit["x_embedder.weight"].shape[0]
    plan = []
    for name, t in dec.dit.items():
        for new, sl in map_key(name, hidden, layout):
            # 1-D tensors (biases, norm scales) stay in 16-bit when storing fp8: tiny, and precision matters there.
            out_dtype = dtype if (t.dim() > 1 or dtype.itemsize > 1) else torch.bfloat16
            plan.append((new, t, sl, out_dtype))
    prefix = PROJECTOR_PREFIX[dec.kind]
    pdtype = dtype if dtype.itemsize > 1 else torch.bfloat16  # the projector is small: keep it 16-bit
    for name, t in dec.projector.items():
        plan.append((prefix + name, t, None, pdtype))
    return plan


def convert_decoder(src, out, layout: str = "comfyui", dtype: str = "bf16",
                    on_tensor: Callable[[int, int], None] | None = None,
                    should_stop: Callable[[], bool] | None = None, extra_metadata: dict | None = None) -> Path:
    if layout not in LAYOUTS:
        raise NexusError(f"Unknown layout {layout!r}: use one of {', '.join(LAYOUTS)}")
    if dtype not in STORAGE_DTYPES:
        raise NexusError(f"Unknown dtype {dtype!r}: use one of {', '.join(STORAGE_DTYPES)}")
    out = Path(out)
    if not out.parent.is_dir():
        raise NexusError(f"Output folder does not exist: {out.parent}")
    dec = read_decoder(src)
    plan = _plan(dec, layout, STORAGE_DTYPES[dtype])
    header, offset = {}, 0
    for name, t, sl, odt in plan:
        shape = list((sl(t) if sl else t).shape)  # slicing a mapped tensor is a view: no data is read
        n = odt.itemsize
        for s in shape:
            n *= s
        header[name] = {"dtype": _ST_DTYPE[odt], "shape": shape, "data_offsets": [offset, offset + n]}
        offset += n
    from .dit import config_from_state  # diffusers-style config, recorded for tools that want it
    meta = {"format": FORMAT, "version": VERSION, "kind": dec.kind, "layout": layout, "dtype": dtype,
            "source": Path(src).name}
    if layout == "diffusers":
        shapes = {k: torch.empty(v["shape"], device="meta") for k, v in header.items()}
        meta["config"] = json.dumps(config_from_state(shapes))
    meta.update({k: str(v) for k, v in (extra_metadata or {}).items()})
    header["__metadata__"] = meta
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)
    tmp = out.with_name(f".{out.name}.{os.getpid()}.partial")
    try:
        with open(tmp, "wb") as f:
            f.write(len(raw).to_bytes(8, "little"))
            f.write(raw)
            for i, (name, t, sl, odt) in enumerate(plan):
                if should_stop is not None and should_stop():
                    raise NexusCancelled("conversion cancelled")
                piece = (sl(t) if sl else t).to(odt).contiguous()
                f.write(memoryview(piece.view(torch.uint8).numpy()))
                del piece
                _release(t)
                if on_tensor is not None:
                    on_tensor(i + 1, len(plan))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, out)
    finally:
        if tmp.exists():
            tmp.unlink()
    return out
