"""`nexus-gen` command line: thin argument parsing over nexus_core.

Importing this module and building the parser import no torch: `--help` and `--version` answer at once, and
every setting is checked (cli/checks.py) before anything heavy is imported or loaded.
"""
from __future__ import annotations

import argparse
import contextlib
import os
import re
import signal
from pathlib import Path
import sys
import threading
import time

from .. import __version__
from ..errors import NexusCancelled, NexusError
from ..settings.defaults import DEFAULTS, EDITING, GENERATION, GGUF_TYPES, OFFLOAD_MODES
from ..settings.validate import MAX_SIDE


class _Parser(argparse.ArgumentParser):
    """Takes `-inf`, `-nan` and `-1e5` as values (argparse's own test knows only plain negative numbers and would
    answer `--repetition-penalty -inf` with "expected one argument"); the checks then say what is wrong."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._negative_number_matcher = re.compile(
            r"^-(\d+\.?\d*(e[-+]?\d+)?|\.\d+(e[-+]?\d+)?|inf|infinity|nan)$", re.IGNORECASE)


class _Help(argparse.HelpFormatter):
    """Every option's help line ends with its default (unless it has none worth showing)."""

    def _get_help_string(self, action):
        text = action.help or ""
        default = action.default
        if ("%(default)" not in text and action.option_strings and default not in (None, False, "")
                and default is not argparse.SUPPRESS):
            text += " (default: %(default)s)"
        return text


def _common(p: argparse.ArgumentParser, model: bool = True):
    if model:
        p.add_argument("--model", required=True, help="Nexus-GenV2 folder (config.json, safetensors shards, tokenizer)")
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:N, mps or xpu; auto = cuda if available, "
                                                    "else cpu")
    p.add_argument("--dtype", default="auto", help="float32 | bfloat16 | float16; auto = float32 on CPU, "
                                                   "bfloat16 on GPU")
    if model:
        p.add_argument("--ar-dtype", choices=["default", "fp8_e4m3fn", "fp8_e5m2"], default="default",
                       help="storage of the AR's Linear weights: fp8_e4m3fn halves it (16.6 -> 8.9 GB) with per-row "
                            "scales, computing in --dtype")
        p.add_argument("--offload", choices=list(OFFLOAD_MODES), default="model",
                       help="GPU memory: none = everything stays on the device; model = stage by stage (peak = the "
                            "largest stage); sequential = layer by layer from CPU memory (for cards smaller than "
                            "one stage; slow)")


def _sampling_args(p):
    p.add_argument("--max-new-tokens", type=int, default=1024, help="reply budget in tokens")
    p.add_argument("--seed", type=int, default=None,
                   help="seed for sampling, 0 .. 2**64-1 (only used when sampling; default: random)")
    p.add_argument("--do-sample", choices=["true", "false"], default=None,
                   help="sample or pick the most likely token (default: from generation_config.json)")
    p.add_argument("--temperature", type=float, default=None, help="> 0 (default: from generation_config.json)")
    p.add_argument("--top-k", type=int, default=None, help=">= 0, 0 = off (default: from generation_config.json)")
    p.add_argument("--top-p", type=float, default=None, help="in (0, 1] (default: from generation_config.json)")
    p.add_argument("--repetition-penalty", type=float, default=None,
                   help="> 0, 1 = off (default: from generation_config.json)")


def _sampling(ar, a):
    do = None if a.do_sample is None else a.do_sample == "true"
    return ar.sampling.override(do_sample=do, temperature=a.temperature, top_k=a.top_k, top_p=a.top_p,
                                repetition_penalty=a.repetition_penalty)


def _load(a):
    from ..ar import load_ar

    t = time.perf_counter()
    if a.offload == "sequential":  # weights stay in CPU memory; each layer is copied in when it runs
        from ..memory.devices import pick_device
        from ..memory.offload import stream_layers

        device = pick_device(a.device)
        ar = load_ar(a.model, "cpu", a.dtype if a.dtype != "auto" or device.type == "cpu" else "bfloat16",
                     weight_dtype=a.ar_dtype)
        if device.type != "cpu":
            stream_layers(ar.model, device)
            ar.device = device
    else:
        ar = load_ar(a.model, a.device, a.dtype, weight_dtype=a.ar_dtype)
    print(f"loaded {a.model} (Nexus-Gen V{ar.version}, {ar.dtype}, {ar.device}) in {time.perf_counter() - t:.1f}s",
          file=sys.stderr)
    return ar


def cmd_understand(a):
    from ..ar import understand
    from .text_stream import TextStream, for_terminal

    ar = _load(a)
    stream = None
    if a.stream:  # the answer goes to stdout once, as it is written, whole characters only
        stream = TextStream(lambda ids: ar.tokenizer.decode(ids, skip_special_tokens=True),
                            lambda s: print(for_terminal(s), end="", flush=True))
    text = understand(ar, a.question, a.image, max_new_tokens=a.max_new_tokens, sampling=_sampling(ar, a),
                      seed=a.seed, on_token=(lambda tok, ids: stream.update(ids)) if stream else None)
    if stream:
        stream.finish(text)
        print()
    else:
        print(for_terminal(text))


def cmd_encode(a):
    from ..ar import encode_image
    from ..embeddings.file import save_embeddings

    ar = _load(a)
    emb = encode_image(ar, a.image, a.tokens, a.resize)
    save_embeddings(a.out, {"vit_embeddings": emb.unsqueeze(0)}, kind="vit", tokens=str(a.tokens),
                    resize=a.resize, source=str(a.image))
    print(f"wrote {a.out}: vit_embeddings {tuple(emb.unsqueeze(0).shape)}")


def cmd_embeds(a):
    from ..ar import editing_request, generation_request, predict
    from ..embeddings.file import save_embeddings

    ar = _load(a)
    if a.prompt is not None:
        reqs = [generation_request(p, a.language) for p in a.prompt]
        kind = "generation"
    else:
        reqs = [editing_request(ar, a.image, a.instruction, a.language)]
        kind = "editing"
    kw = {} if a.mode == "fast" else dict(max_new_tokens=a.max_new_tokens, sampling=_sampling(ar, a), seed=a.seed)
    t = time.perf_counter()
    res = predict(ar, reqs, a.mode, **kw)
    dt = time.perf_counter() - t
    tensors = {"image_embeddings": res.embeddings}
    if kind == "editing":
        from ..ar import reference_embeddings
        tensors["ref_embeddings"] = reference_embeddings(ar, a.image).unsqueeze(0)
    save_embeddings(a.out, tensors, kind=kind, mode=a.mode, text=res.texts,
                    prompts=a.prompt if a.prompt else [a.instruction])
    for t_ in res.texts:
        print(t_)
    print(f"wrote {a.out}: image_embeddings {tuple(res.embeddings.shape)} in {dt:.2f}s ({res.forwards} forwards)",
          file=sys.stderr)


def _ar_embed_args(p, language: str):
    p.add_argument("--language", choices=["en", "zh", "auto"], default=language,
                   help="prompt template language; auto = from the text's script")
    p.add_argument("--mode", choices=["reference", "fast"], default="reference",
                   help="reference = the model writes its reply; fast = fixed training reply, one forward")
    p.add_argument("--max-new-tokens", type=int, default=1024,
                   help="reply budget in reference mode (must hold the 83-token image span)")


def _decode_args(p, kind):
    d = DEFAULTS[kind]
    p.add_argument("--flux", required=True, help="FLUX.1-dev subset: text_encoder(_2)/, tokenizer(_2)/, ae.safetensors or vae/")
    p.add_argument("--decoder", default=None, help="decoder file (default: the one in --model)")
    p.add_argument("--width", type=int, default=d["width"], help="image width, 16 .. --max-side, rounded up to a "
                                                                 "multiple of 16")
    p.add_argument("--height", type=int, default=d["height"], help="image height, 16 .. --max-side, rounded up to "
                                                                   "a multiple of 16")
    p.add_argument("--max-side", type=int, default=MAX_SIDE,
                   help="largest --width/--height accepted (memory and time grow with the area)")
    p.add_argument("--steps", type=int, default=d["steps"], help="sampling steps, 1 .. 10000")
    p.add_argument("--cfg", type=float, default=d["cfg"], help="CFG scale, 0 .. 100; != 1 runs the T5 negative branch")
    p.add_argument("--negative", default="", help="negative prompt (used when cfg != 1)")
    p.add_argument("--guidance", type=float, default=d["guidance"], help="FLUX embedded guidance, 0 .. 100")
    p.add_argument("--seed", type=int, default=d["seed"],
                   help="noise seed, 0 .. 2**64-1 (noise is drawn on the CPU in float32)")
    p.add_argument("--fp8", action="store_true", help="store the DiT in float8_e4m3fn, compute in --dtype")
    p.add_argument("--no-offload", dest="offload", action="store_const", const="none",
                   help="the same as --offload none")
    p.add_argument("--out", required=True, help="output image (.png; a batch writes NAME_0.png, NAME_1.png ...)")
    p.add_argument("--save-latents", default=None, help="also write the final latents (safetensors)")


def _run_decode(a, kind, embeds, reference=None, texts=(), ar=None, timings=None):
    import torch

    from ..decoder import load_decoder
    from ..memory.devices import pick_device, pick_dtype
    from ..embeddings.file import save_embeddings
    from ..pipeline import (DecodeSettings, Timings, decode_embeddings, default_decoder_path, latents_metadata,
                           load_flux, save_png)

    timings = timings or Timings()
    device = pick_device(a.device)
    dtype = pick_dtype(a.dtype, device)
    settings = DecodeSettings(a.width, a.height, a.steps, a.cfg, a.negative, a.guidance, a.seed, a.max_side)
    if ar is not None and device.type != "cpu" and a.offload == "model":
        ar.to("cpu")
        torch.cuda.empty_cache()
    path = a.decoder or default_decoder_path(a.model, kind)
    with timings.stage("load decoder"):
        dec = load_decoder(path, ar.checkpoint.config if ar is not None else _ar_config(a.model), dtype, "cpu",
                           torch.float8_e4m3fn if a.fp8 else None, expect=kind)
    with timings.stage("load FLUX parts"):
        text, vae = load_flux(a.flux, dtype, device, a.offload)

    def step(i, n, x):
        print(f"\rstep {i + 1}/{n}", end="" if i + 1 < n else "\n", file=sys.stderr, flush=True)

    images, latents = decode_embeddings(dec, text, vae, embeds, settings, reference, device, a.offload,
                                        on_step=step, timings=timings)
    meta = {"nexus-gen": kind, "seed": a.seed, "steps": a.steps, "cfg": a.cfg, "guidance": a.guidance}
    if texts:
        meta["reply"] = texts[0]
    for p in save_png(images, a.out, meta):
        print(f"wrote {p} ({images.shape[2]}x{images.shape[1]})")
    if a.save_latents:
        prompts = getattr(a, "prompt", None) or [getattr(a, "instruction", None) or f"image {a.image}"]
        save_embeddings(a.save_latents, {"latents": latents},
                        **latents_metadata(latents, vae, kind, settings, prompts, list(texts)))
        print(f"wrote {a.save_latents}")
    for k, v in timings.stages.items():
        print(f"  {k:<20} {v:7.2f} s", file=sys.stderr)


def _ar_config(model_dir):
    from ..ar.checkpoint import inspect_ar_folder
    return inspect_ar_folder(model_dir).config


def _embed_then_decode(a, kind, make_requests, reference=None):
    """Load the AR, predict the embeddings of `make_requests(ar)`, then decode them with the `kind` decoder."""
    from ..ar import predict
    from ..pipeline import Timings

    t = Timings()
    with t.stage("load AR"):
        ar = _load(a)
    with t.stage("AR embeddings"):
        kw = {} if a.mode == "fast" else dict(max_new_tokens=a.max_new_tokens)
        res = predict(ar, make_requests(ar), a.mode, **kw)
        ref = reference(ar) if reference is not None else None
    print(f"AR reply: {res.texts[0]}", file=sys.stderr)
    _run_decode(a, kind, res.embeddings, ref, res.texts, ar, t)


def cmd_generate(a):
    from ..ar import generation_request

    _embed_then_decode(a, GENERATION, lambda ar: [generation_request(p, a.language) for p in a.prompt])


def cmd_edit(a):
    from ..ar import editing_request, reference_embeddings

    ref = (lambda ar: reference_embeddings(ar, a.image).unsqueeze(0)) if a.decoder_kind == EDITING else None
    _embed_then_decode(a, a.decoder_kind, lambda ar: [editing_request(ar, a.image, a.instruction, a.language)], ref)


def cmd_variation(a):
    from ..ar import encode_image
    from ..pipeline import Timings

    t = Timings()
    with t.stage("load AR"):
        ar = _load(a)
    with t.stage("ViT embeddings"):
        emb = encode_image(ar, a.image, 81, a.resize).unsqueeze(0)
    _run_decode(a, GENERATION, emb, None, (), ar, t)


def cmd_convert(a):
    from ..decoder.convert import convert_decoder
    from ..files.atomic import remove_stale_temps

    t = time.perf_counter()
    for path, size in remove_stale_temps(a.out, folder=True):  # what killed runs left (SIGKILL, power loss)
        print(f"removed {path} ({size / 2**30:.2f} GiB), a temp file left by a run that was killed", file=sys.stderr)

    def progress(i, n):
        if i == n or i % 50 == 0:
            print(f"\r{i}/{n} tensors", end="" if i < n else "\n", file=sys.stderr, flush=True)

    if Path(a.decoder).is_dir():  # the AR folder -> one fp8 file (loaded tensor by tensor, then written)
        from ..ar import load_ar
        from ..ar.model import save_ar_file

        dtype = a.dtype or "fp8_e4m3fn"
        ar = load_ar(a.decoder, "cpu", "bfloat16", weight_dtype=dtype)
        out = save_ar_file(ar, a.out, overwrite=a.overwrite)
        print(f"wrote {out} ({out.stat().st_size / 2**30:.2f} GiB, the AR with {dtype} Linear weights, one file) "
              f"in {time.perf_counter() - t:.1f}s")
        return
    dtype = a.dtype or ("Q8_0" if a.layout == "gguf" else "bf16")
    out = convert_decoder(a.decoder, a.out, a.layout, dtype, on_tensor=progress, overwrite=a.overwrite)
    print(f"wrote {out} ({out.stat().st_size / 2**20:.1f} MiB, {a.layout} layout, {dtype}) "
          f"in {time.perf_counter() - t:.1f}s")


def cmd_convert_lora(a):
    from ..flux.lora_layouts import convert_lora_file

    out, pairs = convert_lora_file(a.lora, a.out, overwrite=a.overwrite)
    print(f"wrote {out} ({pairs} LoRA weight pairs in the ComfyUI layout; load it with any ComfyUI LoRA loader)")


def cmd_make_tiny(a):
    from ..synthetic import make_tiny

    paths = make_tiny(a.dir, seed=a.seed, comfyui=a.comfyui)
    for k, v in paths.items():
        print(f"{k}: {v}")


def ascii_int(text: str) -> int:
    """A whole number written in ASCII digits (Python's int() also reads other scripts' digits, e.g. '١٢')."""
    if not re.fullmatch(r"[+-]?[0-9]+", text.strip()):
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number in ASCII digits")
    return int(text)


def cmd_make_full_size(a):
    from ..synthetic.full_size import make_full_size, nbytes

    t = time.perf_counter()
    labels = {"ar": "AR", "generation": "generation decoder", "editing": "editing decoder"}

    def announce(plan, free):
        cfg, (nd, ns) = plan.ar_config, plan.dit_blocks
        depth = {"ar": f"{cfg['num_hidden_layers']} text layers, {cfg['vision_config'].get('depth', 32)} vision blocks",
                 "generation": f"{nd} double + {ns} single blocks", "editing": f"{nd} double + {ns} single blocks"}
        print(f"make-full-size: writing {plan.bytes_needed() / 1e9:.1f} GB into {a.dir} "
              f"({free / 1e9:.1f} GB free there)", file=sys.stderr)
        for part, spec in plan.specs.items():
            print(f"  {labels[part]}: {nbytes(spec) / 1e9:.2f} GB, {len(spec)} tensors ({depth[part]})", file=sys.stderr)

    def progress(name, i, n):
        if i == n or i % 25 == 0:
            print(f"\r  {name}: {i}/{n} tensors", end="" if i < n else "\n", file=sys.stderr, flush=True)

    blocks = tuple(int(v) for v in a.dit_blocks.split(","))
    paths = make_full_size(a.dir, a.parts.split(","), a.ar_layers, a.vision_layers, blocks, a.tokenizer, a.seed,
                           progress=progress, announce=announce)
    for k, v in paths.items():
        print(f"{k}: {v}")
    print(f"done in {time.perf_counter() - t:.0f}s", file=sys.stderr)


def cmd_demo(a):
    from pathlib import Path

    from .demo import run_demo

    run_demo(Path(a.out), a.device, a.dtype)


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="nexus-gen", description="Nexus-Gen V2: understanding, generation, editing",
                formatter_class=_Help)
    p.add_argument("--version", action="version", version=f"nexus-gen {__version__}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name, help):
        return sub.add_parser(name, help=help, description=help, formatter_class=_Help)

    s = command("understand", "answer a question about an image (or a text-only question)")
    _common(s)
    s.add_argument("--image", default=None, help="image file to ask about (optional)")
    s.add_argument("--question", default="", help="the question; with an image and no question: a brief description")
    s.add_argument("--stream", action="store_true", help="print the answer while it is written (to stdout, once)")
    _sampling_args(s)
    s.set_defaults(func=cmd_understand)

    s = command("encode", "ViT embeddings of an image (81 or 324 tokens)")
    _common(s)
    s.add_argument("--image", required=True, help="image file")
    s.add_argument("--tokens", type=int, default=81, help="81 (252x252) or 324 (504x504)")
    s.add_argument("--resize", choices=["squash", "crop"], default="squash",
                   help="squash = reference (bilinear, aspect ignored); crop = decoder training (short side + centre)")
    s.add_argument("--out", required=True, help="output .safetensors file")
    s.set_defaults(func=cmd_encode)

    s = command("embeds", "predicted image embeddings for a prompt or an editing instruction")
    _common(s)
    s.add_argument("--prompt", action="append", default=None, help="generation prompt; repeat for a batch")
    s.add_argument("--language", choices=["en", "zh", "auto"], default="en",
                   help="prompt template language; auto = from the text's script")
    s.add_argument("--image", default=None, help="image to edit (with --instruction)")
    s.add_argument("--instruction", default=None, help="editing instruction (with --image)")
    s.add_argument("--mode", choices=["reference", "fast"], default="reference",
                   help="reference = the model writes its reply; fast = fixed training reply, one forward")
    s.add_argument("--out", required=True, help="output .safetensors file")
    _sampling_args(s)
    s.set_defaults(func=cmd_embeds)

    s = command("generate", "text -> image")
    _common(s)
    s.add_argument("--prompt", action="append", required=True, help="what to draw; repeat for a batch")
    _ar_embed_args(s, "en")
    _decode_args(s, GENERATION)
    s.set_defaults(func=cmd_generate)

    s = command("edit", "image + instruction -> image")
    _common(s)
    s.add_argument("--image", required=True, help="image to edit")
    s.add_argument("--instruction", required=True, help="what to change")
    s.add_argument("--decoder-kind", choices=[EDITING, GENERATION], default=EDITING,
                   help="generation = the generation decoder on the AR output only (large conceptual edits)")
    _ar_embed_args(s, "auto")
    _decode_args(s, EDITING)
    s.set_defaults(func=cmd_edit)

    s = command("variation", "image -> ViT embeddings -> generation decoder")
    _common(s)
    s.add_argument("--image", required=True, help="image to vary")
    s.add_argument("--resize", choices=["crop", "squash"], default="crop",
                   help="crop = the decoder's training policy, squash = the reference's ViT resize")
    _decode_args(s, GENERATION)
    s.set_defaults(func=cmd_variation)

    s = command("convert", "decoder .bin -> .safetensors (ComfyUI or diffusers layout) or GGUF, streamed; or the AR "
                           "folder -> one fp8 .safetensors file (half the disk, loads in about half the time)")
    s.add_argument("decoder", metavar="SOURCE",
                   help="the original decoder file (generation_decoder.bin or edit_decoder.bin), or the Nexus-GenV2 "
                        "folder (its AR as one file with fp8_e4m3fn or fp8_e5m2 Linear weights)")
    s.add_argument("--out", required=True, help="output .safetensors (or .gguf) file; never the source, never an "
                                                "existing file unless --overwrite")
    s.add_argument("--layout", choices=["comfyui", "diffusers", "gguf"], default="comfyui",
                   help="comfyui = ComfyUI's diffusion-model loader reads it; diffusers = FluxTransformer2DModel keys; "
                        "gguf = quantized DiT for ComfyUI-GGUF's Unet Loader (GGUF) + the projector, one file "
                        "(needs the gguf package)")
    s.add_argument("--dtype", choices=["bf16", "fp16", "fp32", "fp8_e4m3fn", "fp8_e5m2", *GGUF_TYPES], default=None,
                   help="storage of the weights (default bf16; Q8_0 for gguf). fp8 keeps biases, norms and the "
                        "projector in bf16; GGUF types (Q8_0, Q5_0, Q4_0, BF16, F16) are for --layout gguf")
    s.add_argument("--overwrite", action="store_true",
                   help="replace an existing --out (only once the new file is complete)")
    s.set_defaults(func=cmd_convert)

    s = command("convert-lora", "rewrite an XLabs FLUX LoRA (double_blocks.N.processor.qkv_lora1...) in the ComfyUI "
                                "layout: ComfyUI's LoRA loaders skip every XLabs key, this copy they apply")
    s.add_argument("lora", metavar="LORA", help="the XLabs LoRA .safetensors file (left as it is)")
    s.add_argument("--out", required=True, help="the new .safetensors file, e.g. in ComfyUI's models/loras; "
                                                "never the source, never an existing file unless --overwrite")
    s.add_argument("--overwrite", action="store_true", help="replace an existing --out (only once the new file is "
                                                            "complete)")
    s.set_defaults(func=cmd_convert_lora)

    s = command("make-tiny", "write a tiny random Nexus-Gen model set (for tests and the demo)")
    s.add_argument("dir", help="folder to write into (created if missing)")
    s.add_argument("--seed", type=int, default=0, help="random seed of the weights")
    s.add_argument("--comfyui", action="store_true",
                   help="write a ComfyUI models folder (nexus_gen/, text_encoders/, vae/ with a full-size random AE)")
    s.set_defaults(func=cmd_make_tiny)

    s = command("make-full-size", "write random models at the real sizes in the published layouts (for measuring RAM, "
                                  "disk and load times without the real weights)")
    s.add_argument("dir", help="folder to write into: DIR/Nexus-GenV2/, DIR/generation_decoder.bin, "
                               "DIR/edit_decoder.bin (created if missing; existing files are never replaced)")
    s.add_argument("--parts", default="ar,generation,editing", help="which of ar,generation,editing to write")
    s.add_argument("--ar-layers", type=ascii_int, default=28, help="text decoder layers (the real model has 28)")
    s.add_argument("--vision-layers", type=ascii_int, default=32, help="vision tower blocks (the real model has 32)")
    s.add_argument("--dit-blocks", default="19,38", help="double,single FLUX blocks of each decoder (the real: 19,38)")
    s.add_argument("--tokenizer", default=None,
                   help="a folder with a Qwen2 tokenizer to copy (the real vocabulary, e.g. ComfyUI's "
                        "comfy/text_encoders/qwen25_tokenizer); default: a tiny tokenizer")
    s.add_argument("--seed", type=int, default=0, help="random seed of the weights")
    s.set_defaults(func=cmd_make_full_size)

    s = command("demo", "make the tiny model set if needed and run every stage on it")
    s.add_argument("--out", default="nexus_demo", help="folder for the tiny models and the outputs")
    _common(s, model=False)
    s.set_defaults(func=cmd_demo)
    return p


class _Stopped(BaseException):
    """SIGTERM or SIGHUP: unwinds like Ctrl-C, so temp files are removed on the way out."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum


@contextlib.contextmanager
def _note_interrupts():
    """Remember a Ctrl-C even when a library turns the KeyboardInterrupt into another error (transformers'
    lazy imports re-raise it as ModuleNotFoundError); turn SIGTERM and SIGHUP into an unwinding stop."""
    from . import _cancel_at_start_up

    seen = {"sigint": False, "stopped": None}
    if threading.current_thread() is not threading.main_thread():
        yield seen  # embedded: signals are the host's
        return
    # Ctrl-C is ours unless someone else handles it, or it is ignored (`cmd &` in a script starts the command
    # with SIGINT ignored); SIGTERM and SIGHUP are handled either way, so a stop still removes temp files and locks
    own_sigint = signal.getsignal(signal.SIGINT) in (signal.default_int_handler, _cancel_at_start_up)

    def handler(signum, frame):
        seen["sigint"] = True
        if _importing(frame):  # CPython may swallow it there ("Exception ignored in ... _get_module_lock"); nothing
            print("\nnexus-gen: cancelled", file=sys.stderr, flush=True)  # of ours is half-written mid-import
            os._exit(130)
        raise KeyboardInterrupt

    def stop(signum, frame):
        seen["stopped"] = signum  # remembered too: a library may turn the exception into one of its own
        raise _Stopped(signum)

    stops = [getattr(signal, n) for n in ("SIGTERM", "SIGHUP") if hasattr(signal, n)]
    before = {s: signal.getsignal(s) for s in stops}
    sigint_before = signal.getsignal(signal.SIGINT)
    if own_sigint:
        signal.signal(signal.SIGINT, handler)
    for s in stops:
        if before[s] in (signal.SIG_DFL, None):
            signal.signal(s, stop)
    try:
        yield seen
    finally:
        if own_sigint:
            signal.signal(signal.SIGINT, signal.default_int_handler if sigint_before is _cancel_at_start_up
                          else sigint_before)
        for s, h in before.items():
            signal.signal(s, h if h is not None else signal.SIG_DFL)


_NUMBER_LIKE = re.compile(r"^-(\.?[0-9]|inf|nan)", re.I)


def _negative_values_joined(argv) -> list:
    """`--cfg -1e3` as `--cfg=-1e3`: argparse takes a value that starts with '-' and is not a plain negative number
    (an exponent, inf, a typo like -0x10) for an option and says only "expected one argument"; joined, the option's
    own check names what is wrong with the value."""
    out = []
    for tok in map(str, argv):
        if out and _NUMBER_LIKE.match(tok) and not any(c.isspace() for c in tok) and out[-1].startswith("--") \
                and "=" not in out[-1]:
            out[-1] = f"{out[-1]}={tok}"
        else:
            out.append(tok)
    return out


def _importing(frame) -> bool:
    """Whether the interrupted code runs inside Python's import machinery."""
    while frame is not None:
        if frame.f_code.co_filename.startswith("<frozen importlib"):
            return True
        frame = frame.f_back
    return False


def _usable_streams() -> str | None:
    """Output that cannot go where it should degrades: a closed stdout is replaced by the null device (said on
    stderr), and characters a narrow encoding (PYTHONIOENCODING=ascii) cannot show are written as escapes."""
    said = None
    if sys.stdout is None:
        sys.stdout = open(os.devnull, "w")
        said = "standard output is closed: what this command prints is not shown"
    if sys.stderr is None:
        sys.stderr = open(os.devnull, "w")
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(AttributeError, ValueError, OSError):
            stream.reconfigure(errors="backslashreplace")
    return said


def main(argv=None) -> int:
    note = _usable_streams()
    if note:
        print(f"nexus-gen: {note}", file=sys.stderr)
    try:
        os.getcwd()
    except OSError:  # (libraries fail later with their own, less readable words: oneMKL aborts the process)
        print("nexus-gen: error: the current folder no longer exists (it was deleted or moved); cd to an existing "
              "folder and run again", file=sys.stderr)
        return 2
    with _note_interrupts() as seen:
        try:
            from .checks import check_resources, check_settings

            a = build_parser().parse_args(_negative_values_joined(sys.argv[1:] if argv is None else argv))
            check_settings(a)  # no torch yet: a bad value is refused at once
            check_resources(a)  # device, dtype, model files: still before any model loads
            a.func(a)
            sys.stdout.flush()  # a reader that went away shows here, not as a message at interpreter exit
        except NexusError as e:
            print(f"nexus-gen: error: {e}", file=sys.stderr)
            return 2
        except (NexusCancelled, KeyboardInterrupt):
            print("\nnexus-gen: cancelled", file=sys.stderr)
            return 130
        except _Stopped as e:
            name = signal.Signals(e.signum).name
            print(f"\nnexus-gen: stopped by {name}; nothing was left half-written", file=sys.stderr)
            return 128 + e.signum
        except BrokenPipeError:  # the reader went away (`| head`): stop quietly, as other tools do
            with contextlib.suppress(OSError):
                os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            return 141
        except Exception as e:
            if seen["stopped"] is not None:  # a stop that a library (torch's zip writer) turned into its own error
                name = signal.Signals(seen["stopped"]).name
                print(f"\nnexus-gen: stopped by {name}; nothing was left half-written", file=sys.stderr)
                return 128 + seen["stopped"]
            if seen["sigint"]:
                print("\nnexus-gen: cancelled", file=sys.stderr)
                return 130
            if isinstance(e, OSError):  # a full disk, a vanished folder: the system's own words, in one line
                print(f"nexus-gen: error: {e}", file=sys.stderr)
                return 1
            raise
    return 0

