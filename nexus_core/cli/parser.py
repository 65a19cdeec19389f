"""How the `nexus-gen` command line is read: the parser of every command, its options and their help, and the
value types argparse itself cannot read well (ASCII-only whole numbers, negative values joined to their option).

Building the parser imports no torch: `--help` and `--version` answer at once."""
from __future__ import annotations

import argparse
import re

from .. import __version__
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
        p.add_argument("--fp8-table", action="store_true",
                       help="with an fp8 --ar-dtype, also the input embedding table (1.1 -> 0.55 GB) with per-row "
                            "scales; off by default: it moves the predicted embeddings a little further (README, "
                            "fp8 AR fidelity)")
        p.add_argument("--fp8-matmul", action="store_true",
                       help="with an fp8 --ar-dtype on a card with fp8 tensor cores (compute capability 8.9+: Ada, "
                            "Hopper), multiply in fp8 (torch._scaled_mm, per-token input scales) instead of casting "
                            "the weights; elsewhere ignored")
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


def ascii_int(text: str) -> int:
    """A whole number written in ASCII digits (Python's int() also reads other scripts' digits, e.g. '١٢')."""
    if not re.fullmatch(r"[+-]?[0-9]+", text.strip()):
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number in ASCII digits")
    return int(text)


_NUMBER_LIKE = re.compile(r"^-(\.?[0-9]|inf|nan)", re.I)


def negative_values_joined(argv) -> list:
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


def build_parser() -> argparse.ArgumentParser:
    from .commands import (cmd_convert, cmd_convert_lora, cmd_demo, cmd_edit, cmd_embeds, cmd_encode, cmd_generate,
                           cmd_make_full_size, cmd_make_tiny, cmd_understand, cmd_variation)

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
