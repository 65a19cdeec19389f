"""Decoders as GGUF: the DiT quantized for ComfyUI-GGUF's `UnetLoaderGGUF`, the projector beside it, in one file.

The DiT's tensors carry the `model.diffusion_model.` prefix (BFL/ComfyUI names), so GGUF loaders keep exactly
those and ignore the rest; the projector's tensors keep their `adapter.` / `embedding_merger.` names in BF16/F32,
so Nexus-Gen's projector loader finds them in the same file. Written with the `gguf` package (optional extra):
large 2-D weights in the chosen type (Q8_0 by default), biases, norms and small tensors in F32, as GGUF loaders
expect. Streamed: tensor infos first (sizes are computable from shapes), then one tensor at a time.

This module owns the file format only: convert.py plans the tensors from a decoder .bin and calls write_gguf.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ..errors import NexusCancelled, NexusError
from ..settings.defaults import GGUF_TYPES  # torch-free, for the CLI's --help

DIT_PREFIX = "model.diffusion_model."
SMALL = 1024  # tensors with at most this many values stay F32 (GGUF loaders' convention)


def _gguf():
    try:
        import gguf
    except ImportError:
        raise NexusError("Writing or reading GGUF files needs the 'gguf' package: pip install gguf "
                         "(ComfyUI-GGUF installs it too)") from None
    return gguf


def _qtype(name: str, shape, qtype: str, gguf):
    """The GGML type one tensor is stored in."""
    n = int(np.prod(shape)) if len(shape) else 1
    if len(shape) < 2 or n <= SMALL:
        return gguf.GGMLQuantizationType.F32
    t = getattr(gguf.GGMLQuantizationType, qtype)
    block = gguf.GGML_QUANT_SIZES[t][0]
    if shape[-1] % block:  # rows must split into whole blocks; fall back to a 16-bit type
        return gguf.GGMLQuantizationType.F16
    return t


def _encode(arr: np.ndarray, t, gguf) -> np.ndarray:
    if t == gguf.GGMLQuantizationType.F32:
        return arr.astype(np.float32)
    if t == gguf.GGMLQuantizationType.F16:
        return arr.astype(np.float16)
    return gguf.quants.quantize(arr.astype(np.float32), t)


def _nbytes(shape, t, gguf) -> tuple[tuple[int, ...], np.dtype, int]:
    """(stored numpy shape, numpy dtype, bytes) of a tensor of `shape` stored as `t`, without its data."""
    if t == gguf.GGMLQuantizationType.F32:
        return tuple(shape), np.dtype(np.float32), int(np.prod(shape)) * 4
    if t == gguf.GGMLQuantizationType.F16:
        return tuple(shape), np.dtype(np.float16), int(np.prod(shape)) * 2
    block, size = gguf.GGML_QUANT_SIZES[t]
    byte_shape = (*shape[:-1], shape[-1] // block * size)
    return byte_shape, np.dtype(np.uint8), int(np.prod(byte_shape))


def write_gguf(plan, out: Path, kind: str, qtype: str, metadata: dict, on_tensor=None, should_stop=None,
               done_with=None):
    """`plan`: [(ComfyUI name or projector name, source tensor, slicer, dtype)] from the converter; projector
    entries are recognised by their adapter./embedding_merger. names. Writes `out` (the caller renames).
    `done_with(tensor)` is called once a source tensor is written (the converter drops its file pages)."""
    gguf = _gguf()
    if qtype not in GGUF_TYPES:
        raise NexusError(f"Unknown GGUF type {qtype!r}: use one of {', '.join(GGUF_TYPES)}")
    writer = gguf.GGUFWriter(str(out), "flux")
    writer.add_quantization_version(gguf.GGML_QUANT_VERSION)
    for k, v in metadata.items():
        writer.add_string(f"nexus_gen.{k}", str(v))
    entries = []
    for name, t, sl, _ in plan:
        shape = list((sl(t) if sl else t).shape)
        projector = name.startswith(("adapter.", "embedding_merger."))
        if projector:
            gt = gguf.GGMLQuantizationType.F32 if len(shape) < 2 else gguf.GGMLQuantizationType.BF16
            full = name
        else:
            gt = _qtype(name, shape, qtype, gguf)
            full = DIT_PREFIX + name
        byte_shape, np_dtype, nbytes = _nbytes(shape, gt, gguf)
        writer.add_tensor_info(full, byte_shape, np_dtype, nbytes, raw_dtype=gt if np_dtype == np.uint8 else None)
        entries.append((t, sl, gt))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_ti_data_to_file()
    try:
        for i, (t, sl, gt) in enumerate(entries):
            if should_stop is not None and should_stop():
                raise NexusCancelled("conversion cancelled")
            arr = (sl(t) if sl else t).float().numpy()
            writer.write_tensor_data(_encode(arr, gt, gguf))
            del arr
            if done_with is not None:
                done_with(t)
            if on_tensor is not None:
                on_tensor(i + 1, len(entries))
    finally:
        writer.close()


def read_gguf(path: Path, dit: bool = True) -> tuple[dict[str, torch.Tensor], dict]:
    """A decoder GGUF's tensors as float32 torch tensors (the DiT dequantized, or skipped with dit=False; names
    without the DiT prefix) and its nexus_gen.* metadata."""
    gguf = _gguf()
    try:
        reader = gguf.GGUFReader(str(path))
    except (ValueError, OSError, IndexError) as e:
        raise NexusError(f"{path} is not a readable GGUF file ({str(e)[:200]})") from None
    meta = {}
    for key, field in reader.fields.items():
        if key.startswith("nexus_gen."):
            meta[key[len("nexus_gen."):]] = str(bytes(field.parts[field.data[-1]]), encoding="utf-8")
    state = {}
    for tensor in reader.tensors:
        name = tensor.name
        is_dit = name.startswith(DIT_PREFIX)
        if is_dit and not dit:
            continue
        shape = tuple(int(v) for v in reversed(tensor.shape))
        values = gguf.quants.dequantize(tensor.data, tensor.tensor_type)
        state[name[len(DIT_PREFIX):] if is_dit else name] = torch.from_numpy(
            np.array(values, dtype=np.float32)).reshape(shape)
    return state, meta

