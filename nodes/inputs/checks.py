"""Checks run at validation time, before anything is queued or loaded: a wrong or missing file is reported on the
node, naming the input and saying what to do, and nothing else runs. Each returns True or the message."""
from __future__ import annotations

import os
import zipfile

from ...nexus_core.errors import NexusError
from ...nexus_core.files.safetensors_check import read_header
from ...nexus_core.settings.bounds import check_bounded_text, check_prompt_count
from ...nexus_core.settings.names import check_listed
from ...nexus_core.settings.validate import check_finite
from . import paths

MODEL_PAGE = "https://huggingface.co/modelscope/Nexus-GenV2"


def refusal(check, *args):
    """True, or the message of the NexusError that `check(*args)` raised (validate_inputs' way to refuse)."""
    try:
        check(*args)
    except NexusError as e:
        return str(e)
    return True


def ar_folder(folder_paths, model: str):
    if model is None:  # linked from another node: checked at execution, when it arrives
        return True
    listed = paths.ar_models(folder_paths)
    if not listed and isinstance(model, str) and model.startswith("("):
        return (f"model: no Nexus-Gen model folder found. Put the Nexus-GenV2 folder (config.json, the safetensors "
                f"shards, tokenizer files; from {MODEL_PAGE}) in ComfyUI/models/nexus_gen, then refresh (R)")
    bad = refusal(check_listed, model, listed, "model", "Nexus-Gen models")
    if bad is not True:
        return bad
    from ...nexus_core.ar.checkpoint import inspect_ar_folder
    try:
        inspect_ar_folder(paths.resolve_model_folder(folder_paths, model, listed))  # config + shard headers only
    except (NexusError, FileNotFoundError) as e:
        return f"model: {e}"
    return True


def decoder_file(folder_paths, decoder: str, gguf: bool = False):
    if decoder is None:  # linked from another node: checked at execution, when it arrives
        return True
    listed = paths.decoder_files(folder_paths, gguf=gguf)
    if not listed and isinstance(decoder, str) and decoder.startswith("("):
        return (f"decoder: no Nexus-Gen decoder found. Put generation_decoder.bin / edit_decoder.bin (from "
                f"{MODEL_PAGE}) in ComfyUI/models/nexus_gen/Nexus-GenV2, then refresh (R)")
    if isinstance(decoder, str) and decoder.lower().endswith(".gguf") and not gguf \
            and decoder in paths.decoder_files(folder_paths, gguf=True):
        return ("decoder: a GGUF holds a quantized DiT for a GGUF loader: load it with Unet Loader (GGUF) + "
                "Nexus-Gen Projector Loader + Nexus-Gen Model Patch")
    bad = refusal(check_listed, decoder, listed, "decoder", "decoder files")
    if bad is not True:
        return bad
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
    if name.endswith(".gguf"):  # listed only where a GGUF is taken (the projector loader)
        with open(path, "rb") as f:
            if f.read(4) != b"GGUF":
                return f"decoder: {path} is not a GGUF file"
    return True


_DECODERS_SEEN: dict = {}


def _decoder_problem(path: str) -> str | None:
    """What is wrong with a decoder file's keys and shapes (read from the mapped file, no tensor data), or None;
    remembered per file version, as validation runs for every queued prompt."""
    from ...nexus_core.decoder import read_decoder

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
    if name is None:  # linked from another node: checked at execution, when it arrives
        return True
    bad = refusal(check_listed, name, folder_paths.get_filename_list("text_encoders"), input_name,
                  "text encoder files")
    if bad is not True:
        return bad
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


def require(result) -> None:
    """At execution: raise the refusal a validation check gave (for values linked from other nodes, which reach
    validation as None and are seen only when they arrive)."""
    if result is not True:
        raise NexusError(result)


def text(value, name: str, required: str | None = None):
    """A text widget: valid UTF-8, within the character bound; `required` is the message for empty text."""
    if value is None:
        return True
    if required and isinstance(value, str) and not value.strip():
        return f"{name}: {required}"
    return refusal(check_bounded_text, value, name)


def prompts(value, one_per_line, name: str = "prompt"):
    """The prompt widget: text as above, and with one_per_line at most MAX_BATCH_PROMPTS prompts."""
    res = text(value, name, "it is empty; describe the image to generate")
    if res is not True or value is None or not one_per_line:
        return res
    from ...nexus_core.embeddings.conditioning import split_prompts
    return refusal(check_prompt_count, len(split_prompts(value, True)), name)


def number(value, name: str, bounds: dict):
    """A FLOAT widget the node validates itself: the host's min/max check no longer runs for it, and NaN passes
    min/max anyway (every comparison with NaN is false)."""
    if value is None:
        return True
    return refusal(check_finite, value, name, bounds.get("min"), bounds.get("max"))
