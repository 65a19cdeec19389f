"""Every `nexus-gen` argument checked before any model loads: validate first, then work.

check_settings: values, texts, input and output paths; no torch, so a refusal takes a fraction of a second.
check_resources: device, dtype, the model folder, the decoder's kind, the image-span budget; imports torch and
reads file headers only. Messages name the flag.
"""
from __future__ import annotations

import os
import re
from pathlib import Path

from ..errors import NexusError
from ..settings.defaults import GENERATION, VIT_SIZES
from ..settings.validate import (check_cfg, check_folder_target, check_guidance, check_output, check_sampling,
                                 check_seed, check_size, check_steps, check_text, same_file)

FLAGS = {k: "--" + k.replace("_", "-") for k in ("temperature", "top_k", "top_p", "repetition_penalty",
                                                 "max_new_tokens")}
_IMAGE_OUT = ("generate", "edit", "variation")


def _decoder_kind(a) -> str | None:
    if a.command in ("generate", "variation"):
        return GENERATION
    return getattr(a, "decoder_kind", None)


def check_settings(a) -> None:
    """Pure checks of the parsed arguments `a` (argparse namespace)."""
    for attr in ("prompt", "question", "instruction", "negative"):
        values = getattr(a, attr, None)
        for text in values if isinstance(values, list) else [values]:
            check_text(text, "--" + attr)
    for text in getattr(a, "prompt", None) or []:
        if not text.strip():
            raise NexusError("--prompt is empty: describe the image to generate")
    if getattr(a, "instruction", None) is not None and not a.instruction.strip():
        raise NexusError("--instruction is empty: say what to change")
    if a.command == "understand" and a.image is None and not a.question.strip():
        raise NexusError("--question is empty (and no --image was given)")
    if hasattr(a, "width"):
        check_size(a.width, a.height, a.max_side, ("--width", "--height"), "--max-side")
        check_steps(a.steps, "--steps")
        check_cfg(a.cfg, "--cfg")
        check_guidance(a.guidance, "--guidance")
    if getattr(a, "seed", None) is not None:
        check_seed(a.seed, "--seed")
    check_sampling(*(getattr(a, k, None) for k in FLAGS), names=FLAGS)
    if a.command == "encode" and a.tokens not in VIT_SIZES:
        raise NexusError(f"tokens must be one of {sorted(VIT_SIZES)} (a square grid the decoders know), "
                         f"got {a.tokens}")
    if a.command == "embeds":
        if (a.prompt is None) == (a.image is None):
            raise NexusError("Give either --prompt (generation) or --image with --instruction (editing)")
        if a.image is not None and not a.instruction:
            raise NexusError("--image needs --instruction")
    _check_inputs(a)
    _check_outputs(a)


def _check_inputs(a) -> None:
    if getattr(a, "model", None) is not None and not Path(a.model).is_dir() and not Path(a.model).is_file():
        raise NexusError(f"Nexus-Gen model folder not found: {a.model} (expected a Nexus-GenV2 folder with "
                         "config.json, or a file made from one by `nexus-gen convert`)")
    if getattr(a, "image", None) is not None:
        from ..images.read import check_image_file
        check_image_file(a.image)
    if a.command == "convert" and Path(a.decoder).is_dir():
        if not (Path(a.decoder) / "config.json").is_file():
            raise NexusError(f"{a.decoder} is a folder without config.json: give the Nexus-GenV2 folder (to make one "
                             "fp8 file of its AR) or a decoder .bin")
    elif getattr(a, "decoder", None) is not None and not Path(a.decoder).is_file():
        raise NexusError(f"Decoder file not found: {a.decoder} (expected generation_decoder.bin, edit_decoder.bin "
                         "or a file made by `nexus-gen convert`)")
    if getattr(a, "flux", None) is not None:
        from ..flux.files import resolve_flux
        files = resolve_flux(a.flux)
        if a.cfg != 1.0 and files.t5 is None:
            raise NexusError(f"--cfg {a.cfg} needs the T5-XXL text encoder for the negative branch, but {a.flux} "
                             "has none; use --cfg 1 or add text_encoder_2/ + tokenizer_2/ (or a t5xxl file)")


def batch_outputs(out, n: int) -> list[Path]:
    """The files a batch of `n` images is written to: OUT itself for one, OUT_0, OUT_1 ... for more."""
    out = Path(out)
    return [out] if n == 1 else [out.with_name(f"{out.stem}_{i}{out.suffix}") for i in range(n)]


def _check_outputs(a) -> None:
    sources = [getattr(a, k, None) for k in ("image", "decoder")]
    if a.command in ("encode", "embeds"):
        check_output(a.out, "--out", sources=sources)
    elif a.command in _IMAGE_OUT:
        n = len(a.prompt) if a.command == "generate" and a.prompt else 1
        for out in batch_outputs(a.out, n):  # every file of a batch, before the first is written
            check_output(out, "--out", image=True, sources=sources)
        if a.save_latents is not None:
            if same_file(a.save_latents, a.out):
                raise NexusError("--save-latents and --out name the same file; give the latents their own name")
            check_output(a.save_latents, "--save-latents", sources=sources)
    elif a.command == "convert":  # the source exists: _check_inputs saw to it
        from ..decoder.convert import check_suffix
        if Path(a.decoder).is_dir():
            if a.dtype not in (None, "fp8_e4m3fn", "fp8_e5m2"):
                raise NexusError(f"--dtype {a.dtype}: the AR folder converts to one file with fp8_e4m3fn or fp8_e5m2 "
                                 "Linear weights (the folder itself is its 16-bit form)")
            if a.layout != "comfyui":
                raise NexusError("--layout is for decoders: the AR folder converts to one .safetensors file")
            if Path(a.out).suffix.lower() != ".safetensors":
                raise NexusError(f"the AR converts to one safetensors file: give --out a .safetensors name, not "
                                 f"{Path(a.out).name}")
        else:
            check_suffix(a.out, a.layout)
        for read in files_read(a.decoder):  # with or without --overwrite, through links and hard links
            if same_file(read, a.out):
                what = "the source file" if Path(read) == Path(a.decoder) else f"{read}, a file the conversion reads,"
                raise NexusError(f"--out {a.out} is {what} (or a link to it): converting would destroy it; "
                                 "choose another output name")
        check_output(a.out, "--out", overwrite=a.overwrite, overwrite_hint="pass --overwrite to replace it")
    elif a.command == "make-tiny":
        check_folder_target(a.dir, "make-tiny folder")
    elif a.command == "make-full-size":
        _check_full_size(a)
    elif a.command == "demo":
        check_folder_target(a.out, "--out")


def files_read(source) -> list[Path]:
    """Every file a conversion of `source` reads: all files of a folder (shards, index, config, tokenizer), or the
    file and the AR config.json beside it (an editing decoder's merger reads it)."""
    source = Path(source)
    if source.is_dir():
        return [source] + [Path(cur) / f for cur, _, files in os.walk(source) for f in files]
    return [source, source.parent / "config.json"]


def _check_full_size(a) -> None:
    from ..settings.defaults import FULL_SIZE_PARTS

    check_folder_target(a.dir, "make-full-size folder")
    parts = a.parts.split(",")
    if not parts or not set(parts) <= set(FULL_SIZE_PARTS) or len(set(parts)) != len(parts):
        raise NexusError(f"--parts takes a comma-separated subset of {','.join(FULL_SIZE_PARTS)}, got {a.parts!r}")
    blocks = a.dit_blocks.split(",")
    if len(blocks) != 2 or not all(re.fullmatch(r"[0-9]+", b.strip()) for b in blocks) or int(blocks[0]) < 1:
        raise NexusError(f"--dit-blocks takes DOUBLE,SINGLE block counts (the real decoders: 19,38; at least one "
                         f"double block), got {a.dit_blocks!r}")
    for flag, v in (("--ar-layers", a.ar_layers), ("--vision-layers", a.vision_layers)):
        if v < 1:
            raise NexusError(f"{flag} must be at least 1, got {v}")
    if a.tokenizer is not None and not Path(a.tokenizer).is_dir():
        raise NexusError(f"--tokenizer {a.tokenizer} is not a folder (expected one with vocab.json and merges.txt)")
    root = Path(a.dir)
    targets = {"ar": root / "Nexus-GenV2", "generation": root / "generation_decoder.bin",
               "editing": root / "edit_decoder.bin"}
    existing = [str(targets[p]) for p in parts if targets[p].exists()]
    if existing:
        raise NexusError(f"{', '.join(existing)} already exist{'s' if len(existing) == 1 else ''}: make-full-size "
                         "never replaces files; remove them or choose another folder")


def check_resources(a) -> None:
    """Device, dtype and model files, before anything is loaded."""
    if not hasattr(a, "device"):
        return
    from ..memory.devices import pick_device, pick_dtype
    pick_dtype(a.dtype, pick_device(a.device))
    if getattr(a, "model", None) is None:
        return
    from ..ar.checkpoint import PREFILL_TABLE, inspect_ar_folder
    ckpt = inspect_ar_folder(a.model)
    if a.command in ("embeds", "generate", "edit") and a.mode == "reference":
        span = _image_span(ckpt, PREFILL_TABLE)
        if a.max_new_tokens < span:
            raise NexusError(f"--max-new-tokens {a.max_new_tokens} cannot hold an image ({span} tokens: "
                             "vision_start, the image slots, vision_end)")
    kind = _decoder_kind(a)
    if kind is not None:
        from ..decoder import read_decoder
        from ..pipeline import default_decoder_path
        path = a.decoder or default_decoder_path(a.model, kind)
        found = read_decoder(path).kind
        if found != kind:
            raise NexusError(f"{path} is the {found} decoder, but this task needs the {kind} decoder "
                             f"({'generation_decoder.bin' if kind == GENERATION else 'edit_decoder.bin'})")


def _image_span(ckpt, table_name: str) -> int:
    """Tokens of one image span: the prefill table's rows (81 on V1 folders) + vision_start + vision_end."""
    from ..files.safetensors_check import read_header
    shard = ckpt.nexus_tensors.get(table_name)
    rows = read_header(shard)[table_name]["shape"][0] if shard is not None else 81
    return rows + 2
