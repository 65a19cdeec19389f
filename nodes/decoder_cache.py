"""A .bin decoder is converted once to a ComfyUI-layout safetensors file, then loaded memory-mapped."""
from __future__ import annotations

import logging
import os

from safetensors import safe_open

from ..nexus_core.decoder.convert import convert_decoder

log = logging.getLogger("nexus_gen")


def _stamp(path: str) -> str:
    st = os.stat(path)
    return f"{st.st_size}:{int(st.st_mtime)}"


def _fresh(cache: str, stamp: str) -> bool:
    if not os.path.isfile(cache):
        return False
    try:
        with safe_open(cache, framework="pt") as f:
            return (f.metadata() or {}).get("source_stamp") == stamp
    except Exception:  # a damaged cache is simply rebuilt
        return False


def cached_comfyui_file(path: str, folder_paths) -> str:
    """The safetensors to load for `path`: itself, or its converted cache (made atomically when missing/stale):
    next to the .bin when that folder is writable, else in models/nexus_gen/converted/."""
    if not path.endswith(".bin"):
        return path
    name = os.path.splitext(os.path.basename(path))[0] + ".comfyui.safetensors"
    stamp = _stamp(path)
    candidates = [os.path.join(os.path.dirname(path), name),
                  os.path.join(folder_paths.models_dir, "nexus_gen", "converted", name)]
    for cache in candidates:
        if _fresh(cache, stamp):
            return cache
    for cache in candidates:
        folder = os.path.dirname(cache)
        try:
            os.makedirs(folder, exist_ok=True)
            if not os.access(folder, os.W_OK):
                continue
        except OSError:
            continue
        log.info("Nexus-Gen: converting %s once to %s", path, cache)
        import comfy.utils
        bar = comfy.utils.ProgressBar(1)
        convert_decoder(path, cache, "comfyui", "bf16", on_tensor=lambda i, n: bar.update_absolute(i, n),
                        extra_metadata={"source_stamp": stamp}, overwrite=True)  # a stale cache of ours
        return cache
    raise OSError(f"No writable place for the converted copy of {path}")
