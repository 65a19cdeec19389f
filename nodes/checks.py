"""Checks run at validation time, before anything is queued or loaded: a wrong or missing file is reported on the
node, naming the input and saying what to do, and nothing else runs. Each returns True or the message."""
from __future__ import annotations

import os
import zipfile

from ..nexus_core.errors import NexusError
from ..nexus_core.files.safetensors_check import read_header
from . import paths

MODEL_PAGE = "https://huggingface.co/modelscope/Nexus-GenV2"


def ar_folder(folder_paths, model: str):
    if model.startswith("("):
        return (f"model: no Nexus-Gen model folder found. Put the Nexus-GenV2 folder (config.json, the safetensors "
                f"shards, tokenizer files; from {MODEL_PAGE}) in ComfyUI/models/nexus_gen, then refresh (R)")
    from ..nexus_core.ar.checkpoint import inspect_ar_folder
    try:
        inspect_ar_folder(paths.resolve_model_folder(folder_paths, model))  # config + shard headers only
    except (NexusError, FileNotFoundError) as e:
        return f"model: {e}"
    return True


def decoder_file(folder_paths, decoder: str, gguf: bool = False):
    if decoder.startswith("("):
        return (f"decoder: no Nexus-Gen decoder found. Put generation_decoder.bin / edit_decoder.bin (from "
                f"{MODEL_PAGE}) in ComfyUI/models/nexus_gen/Nexus-GenV2, then refresh (R)")
    try:
        path = paths.resolve_decoder(folder_paths, decoder)
    except FileNotFoundError as e:
        return f"decoder: {e}"
    name = path.lower()
    if name.endswith(".bin") and not zipfile.is_zipfile(path):
        return f"decoder: {path} is not a torch checkpoint, or it is truncated: download it again"
    if name.endswith((".bin", ".safetensors", ".sft")):
        problem = _decoder_problem(path)
        if problem:
            return f"decoder: {problem}"
        return True
    if name.endswith(".gguf"):
        if not gguf:
            return ("decoder: a GGUF holds a quantized DiT for a GGUF loader: load it with Unet Loader (GGUF) + "
                    "Nexus-Gen Projector Loader + Nexus-Gen Model Patch")
        with open(path, "rb") as f:
            if f.read(4) != b"GGUF":
                return f"decoder: {path} is not a GGUF file"
    return True


_DECODERS_SEEN: dict = {}


def _decoder_problem(path: str) -> str | None:
    """What is wrong with a decoder file's keys and shapes (read from the mapped file, no tensor data), or None;
    remembered per file version, as validation runs for every queued prompt."""
    from ..nexus_core.decoder import read_decoder

    st = os.stat(path)
    key = (path, st.st_size, st.st_mtime_ns)
    if key not in _DECODERS_SEEN:
        try:
            read_decoder(path)
            _DECODERS_SEEN[key] = None
        except NexusError as e:
            _DECODERS_SEEN[key] = str(e)
    return _DECODERS_SEEN[key]


def text_encoder_file(folder_paths, name: str, input_name: str):
    path = folder_paths.get_full_path("text_encoders", name)
    if path is None:
        return (f"{input_name}: {name} is not in ComfyUI/models/text_encoders (FLUX's text encoders: "
                "https://huggingface.co/comfyanonymous/flux_text_encoders)")
    if path.lower().endswith((".safetensors", ".sft")):
        try:
            read_header(path)
        except NexusError as e:
            return f"{input_name}: {e}"
    elif not os.path.isfile(path):
        return f"{input_name}: {path} is not a file"
    return True


def first(*results):
    """The first failed check's message, or True."""
    for r in results:
        if r is not True:
            return r
    return True
