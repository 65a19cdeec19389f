"""`nexus-gen convert`: a decoder .bin -> .safetensors in the ComfyUI (BFL) or diffusers layout, streamed.

The .bin is memory-mapped (torch.load weights_only=True, mmap=True); the safetensors header is computed from
shapes first, then each tensor is mapped, cast and written, and the pages it was read from are released
(madvise), so peak memory stays a small fraction of the file. Output goes to a temp file that is renamed at the
end: an interrupted run leaves nothing half-written and a rerun simply starts over (removing the temp file of
a killed run). The output is never the source (by any path or link) and never replaces a file unasked.
"""
from __future__ import annotations

import ctypes
import json
import mmap
import shutil
import sys
from pathlib import Path
from typing import Callable

import torch

from ..errors import NexusCancelled, NexusError
from ..files.atomic import atomic_write
from ..settings.validate import check_output, same_file
from .checkpoint import EDITING, FORMAT, PROJECTOR_PREFIX, read_decoder
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


MERGER_CONFIG_KEYS = ("hidden_size", "num_attention_heads", "num_key_value_heads", "intermediate_size", "rms_norm_eps",
                      "rope_theta", "rope_scaling", "hidden_act", "attention_dropout", "max_position_embeddings")


def merger_config(src) -> str | None:
    """The AR config fields the editing decoder's merger is built from (its heads and RoPE are not in its weights),
    read from the config.json beside the source (the published layout), as JSON for the converted file's metadata:
    a converted file then needs no AR folder beside it. None where there is no such config."""
    cfg_path = Path(src).parent / "config.json"
    if not cfg_path.is_file():
        return None
    from ..files.json_file import read_json
    cfg = read_json(cfg_path, "the AR config beside the decoder")
    text = cfg.get("text_config") or cfg
    picked = {k: text.get(k, cfg.get(k)) for k in MERGER_CONFIG_KEYS if text.get(k, cfg.get(k)) is not None}
    return json.dumps(picked, sort_keys=True) if "hidden_size" in picked else None


def converted_metadata(dec, src, layout: str, dtype: str) -> dict[str, str]:
    """What every converted decoder records about itself; an editing one also its merger's AR config."""
    meta = {"format": FORMAT, "version": VERSION, "kind": dec.kind, "layout": layout, "dtype": dtype,
            "source": Path(src).name}
    ar_config = merger_config(src) if dec.kind == EDITING else None
    if ar_config:
        meta["ar_config"] = ar_config
    return meta


def check_suffix(out, layout: str) -> None:
    """A GGUF only under a .gguf name, and a .gguf name only for a GGUF: loaders pick their reader by the suffix."""
    gguf_name = Path(out).suffix.lower() == ".gguf"
    if layout == "gguf" and not gguf_name:
        raise NexusError(f"--layout gguf writes a GGUF file: give --out a .gguf name, not {Path(out).name}")
    if layout != "gguf" and gguf_name:
        raise NexusError(f"--layout {layout} writes safetensors: give --out a .safetensors name, not "
                         f"{Path(out).name} (for a GGUF, use --layout gguf)")


def check_target(src, out, overwrite: bool = False, layout: str | None = None) -> Path:
    """Refuse an output that is the source itself (same path, another path, a symbolic or hard link to it),
    a folder, a missing or unwritable folder, a suffix that does not match the layout, or (unless overwrite) an
    existing file."""
    out = Path(out)
    if layout is not None:
        check_suffix(out, layout)
    if same_file(src, out):
        raise NexusError(f"The output {out} is the source file {src} (or a link to it): converting would destroy "
                         "the source; choose another output name")
    return check_output(out, "output", overwrite=overwrite, overwrite_hint="ask to overwrite it (--overwrite)")


def convert_decoder(src, out, layout: str = "comfyui", dtype: str = "bf16",
                    on_tensor: Callable[[int, int], None] | None = None,
                    should_stop: Callable[[], bool] | None = None, extra_metadata: dict | None = None,
                    overwrite: bool = False) -> Path:
    """Convert `src` to `out`. An existing `out` is replaced only with overwrite=True, and only once the new
    file is complete."""
    if layout == "gguf":
        return _convert_gguf(src, out, dtype, on_tensor, should_stop, overwrite)
    if layout not in LAYOUTS:
        raise NexusError(f"Unknown layout {layout!r}: use one of {', '.join(LAYOUTS)}, gguf")
    if dtype not in STORAGE_DTYPES:
        raise NexusError(f"Unknown dtype {dtype!r} for the {layout} layout: use one of {', '.join(STORAGE_DTYPES)}")
    out = check_target(src, out, overwrite, layout)
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
    meta = converted_metadata(dec, src, layout, dtype)
    if layout == "diffusers":
        shapes = {k: torch.empty(v["shape"], device="meta") for k, v in header.items()}
        meta["config"] = json.dumps(config_from_state(shapes))
    meta.update({k: str(v) for k, v in (extra_metadata or {}).items()})
    header["__metadata__"] = meta
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)
    free = shutil.disk_usage(out.parent).free
    if 8 + len(raw) + offset > free:
        raise NexusError(f"Not enough disk space for {out}: it needs {(8 + len(raw) + offset) / 2**30:.2f} GiB, "
                         f"{free / 2**30:.2f} GiB are free in {out.parent}")
    with atomic_write(out, overwrite) as tmp, open(tmp, "wb") as f:
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
    return out


def convert_to_gguf(src, out, qtype: str = "Q8_0", on_tensor=None, should_stop=None, overwrite=False) -> Path:
    """A decoder .bin -> one GGUF, written atomically (convert_decoder with layout 'gguf')."""
    return convert_decoder(src, out, "gguf", qtype, on_tensor, should_stop, overwrite=overwrite)


def _convert_gguf(src, out, qtype, on_tensor, should_stop, overwrite) -> Path:
    """One GGUF: the DiT quantized for GGUF loaders (ComfyUI-GGUF) and the projector beside it (gguf_file.py)."""
    from .gguf_file import GGUF_TYPES, write_gguf  # imports the optional gguf package only when asked

    if qtype not in GGUF_TYPES:
        raise NexusError(f"Unknown GGUF type {qtype!r}: use one of {', '.join(GGUF_TYPES)}")
    out = check_target(src, out, overwrite, "gguf")
    dec = read_decoder(src)
    plan = _plan(dec, "comfyui", torch.bfloat16)
    meta = converted_metadata(dec, src, "comfyui", qtype)
    with atomic_write(out, overwrite) as tmp:
        write_gguf(plan, tmp, dec.kind, qtype, meta, on_tensor=on_tensor, should_stop=should_stop,
                   done_with=_release)
    return out
