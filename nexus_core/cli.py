"""`nexus-gen` command line: thin argument parsing over nexus_core."""
from __future__ import annotations

import argparse
import sys
import time

from .errors import NexusCancelled, NexusError


def _common(p: argparse.ArgumentParser, model: bool = True):
    if model:
        p.add_argument("--model", required=True, help="Nexus-GenV2 folder (config.json, safetensors shards, tokenizer)")
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:1 ... (default: cuda if available)")
    p.add_argument("--dtype", default="auto", help="float32 | bfloat16 | float16 (default: fp32 on CPU, bf16 on GPU)")


def _sampling_args(p):
    p.add_argument("--max-new-tokens", type=int, default=1024)
    p.add_argument("--seed", type=int, default=None, help="seed for sampling (only used when sampling)")
    p.add_argument("--do-sample", choices=["true", "false"], default=None, help="override generation_config.json")
    p.add_argument("--temperature", type=float, default=None)
    p.add_argument("--top-k", type=int, default=None)
    p.add_argument("--top-p", type=float, default=None)
    p.add_argument("--repetition-penalty", type=float, default=None)


def _sampling(ar, a):
    do = None if a.do_sample is None else a.do_sample == "true"
    return ar.sampling.override(do_sample=do, temperature=a.temperature, top_k=a.top_k, top_p=a.top_p,
                                repetition_penalty=a.repetition_penalty)


def _load(a):
    from .ar import load_ar

    t = time.perf_counter()
    ar = load_ar(a.model, a.device, a.dtype)
    print(f"loaded {a.model} (Nexus-Gen V{ar.version}, {ar.dtype}, {ar.device}) in {time.perf_counter() - t:.1f}s",
          file=sys.stderr)
    return ar


def cmd_understand(a):
    from .ar import understand

    ar = _load(a)

    def stream(tok, ids):
        if a.stream:
            print(ar.tokenizer.decode([tok], skip_special_tokens=True), end="", flush=True, file=sys.stderr)

    text = understand(ar, a.question, a.image, max_new_tokens=a.max_new_tokens, sampling=_sampling(ar, a),
                      seed=a.seed, on_token=stream)
    if a.stream:
        print(file=sys.stderr)
    print(text)


def cmd_encode(a):
    from .ar import encode_image
    from .embeddings_file import save_embeddings

    ar = _load(a)
    emb = encode_image(ar, a.image, a.tokens, a.resize)
    save_embeddings(a.out, {"vit_embeddings": emb.unsqueeze(0)}, kind="vit", tokens=str(a.tokens),
                    resize=a.resize, source=str(a.image))
    print(f"wrote {a.out}: vit_embeddings {tuple(emb.unsqueeze(0).shape)}")


def cmd_embeds(a):
    from .ar import editing_request, generation_request, predict
    from .embeddings_file import save_embeddings

    if (a.prompt is None) == (a.image is None):
        raise NexusError("Give either --prompt (generation) or --image with --instruction (editing)")
    ar = _load(a)
    if a.prompt is not None:
        reqs = [generation_request(p, a.language) for p in a.prompt]
        kind = "generation"
    else:
        if not a.instruction:
            raise NexusError("--image needs --instruction")
        reqs = [editing_request(ar, a.image, a.instruction, a.language)]
        kind = "editing"
    kw = {} if a.mode == "fast" else dict(max_new_tokens=a.max_new_tokens, sampling=_sampling(ar, a), seed=a.seed)
    t = time.perf_counter()
    res = predict(ar, reqs, a.mode, **kw)
    dt = time.perf_counter() - t
    tensors = {"image_embeddings": res.embeddings}
    if kind == "editing":
        from .ar import reference_embeddings
        tensors["ref_embeddings"] = reference_embeddings(ar, a.image).unsqueeze(0)
    save_embeddings(a.out, tensors, kind=kind, mode=a.mode, text=res.texts,
                    prompts=a.prompt if a.prompt else [a.instruction])
    for t_ in res.texts:
        print(t_)
    print(f"wrote {a.out}: image_embeddings {tuple(res.embeddings.shape)} in {dt:.2f}s ({res.forwards} forwards)",
          file=sys.stderr)


def _ar_embed_args(p, language: str):
    p.add_argument("--language", choices=["en", "zh", "auto"], default=language)
    p.add_argument("--mode", choices=["reference", "fast"], default="reference",
                   help="reference = the model writes its reply; fast = fixed training reply, one forward")
    p.add_argument("--max-new-tokens", type=int, default=1024)


def _decode_args(p, kind):
    from .pipeline import DEFAULTS
    d = DEFAULTS[kind]
    p.add_argument("--flux", required=True, help="FLUX.1-dev subset: text_encoder(_2)/, tokenizer(_2)/, ae.safetensors or vae/")
    p.add_argument("--decoder", default=None, help="decoder file (default: the one in --model)")
    p.add_argument("--width", type=int, default=d["width"], help="rounded up to a multiple of 16")
    p.add_argument("--height", type=int, default=d["height"], help="rounded up to a multiple of 16")
    p.add_argument("--steps", type=int, default=d["steps"])
    p.add_argument("--cfg", type=float, default=d["cfg"], help="CFG scale; != 1 runs the T5 negative branch")
    p.add_argument("--negative", default="", help="negative prompt (used when cfg != 1)")
    p.add_argument("--guidance", type=float, default=d["guidance"], help="FLUX embedded guidance")
    p.add_argument("--seed", type=int, default=d["seed"], help="noise seed (noise is drawn on the CPU in float32)")
    p.add_argument("--fp8", action="store_true", help="store the DiT in float8_e4m3fn, compute in --dtype")
    p.add_argument("--no-offload", action="store_true", help="keep every stage on the device")
    p.add_argument("--out", required=True, help="output PNG")
    p.add_argument("--save-latents", default=None, help="also write the final latents (safetensors)")


def _run_decode(a, kind, embeds, reference=None, texts=(), ar=None, timings=None):
    import torch

    from .decoder import load_decoder
    from .devices import pick_device, pick_dtype
    from .embeddings_file import save_embeddings
    from .pipeline import DecodeSettings, Timings, decode_embeddings, default_decoder_path, load_flux, save_png

    timings = timings or Timings()
    device = pick_device(a.device)
    dtype = pick_dtype(a.dtype, device)
    from pathlib import Path
    if not Path(a.out).parent.is_dir():  # fail before the heavy work
        from .errors import NexusError
        raise NexusError(f"Output folder does not exist: {Path(a.out).parent}")
    if ar is not None and device.type != "cpu" and not a.no_offload:
        ar.to("cpu")
        torch.cuda.empty_cache()
    path = a.decoder or default_decoder_path(a.model, kind)
    with timings.stage("load decoder"):
        dec = load_decoder(path, ar.checkpoint.config if ar is not None else _ar_config(a.model), dtype, "cpu",
                           torch.float8_e4m3fn if a.fp8 else None, expect=kind)
    with timings.stage("load FLUX parts"):
        text, vae = load_flux(a.flux, dtype, device)
    settings = DecodeSettings(a.width, a.height, a.steps, a.cfg, a.negative, a.guidance, a.seed)

    def step(i, n, x):
        print(f"\rstep {i + 1}/{n}", end="" if i + 1 < n else "\n", file=sys.stderr, flush=True)

    images, latents = decode_embeddings(dec, text, vae, embeds, settings, reference, device, not a.no_offload,
                                        on_step=step, timings=timings)
    meta = {"nexus-gen": kind, "seed": a.seed, "steps": a.steps, "cfg": a.cfg, "guidance": a.guidance}
    if texts:
        meta["reply"] = texts[0]
    for p in save_png(images, a.out, meta):
        print(f"wrote {p} ({images.shape[2]}x{images.shape[1]})")
    if a.save_latents:
        save_embeddings(a.save_latents, {"latents": latents}, kind="latents", seed=str(a.seed))
        print(f"wrote {a.save_latents}")
    for k, v in timings.stages.items():
        print(f"  {k:<20} {v:7.2f} s", file=sys.stderr)


def _ar_config(model_dir):
    import json
    from pathlib import Path
    p = Path(model_dir) / "config.json"
    return json.loads(p.read_text()) if p.is_file() else None


def _embed_then_decode(a, kind, make_requests, reference=None):
    """Load the AR, predict the embeddings of `make_requests(ar)`, then decode them with the `kind` decoder."""
    from .ar import predict
    from .pipeline import Timings

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
    from .ar import generation_request

    _embed_then_decode(a, "generation", lambda ar: [generation_request(p, a.language) for p in a.prompt])


def cmd_edit(a):
    from .ar import editing_request, reference_embeddings

    ref = (lambda ar: reference_embeddings(ar, a.image).unsqueeze(0)) if a.decoder_kind == "editing" else None
    _embed_then_decode(a, a.decoder_kind, lambda ar: [editing_request(ar, a.image, a.instruction, a.language)], ref)


def cmd_variation(a):
    from .ar import encode_image
    from .pipeline import Timings

    t = Timings()
    with t.stage("load AR"):
        ar = _load(a)
    with t.stage("ViT embeddings"):
        emb = encode_image(ar, a.image, 81, a.resize).unsqueeze(0)
    _run_decode(a, "generation", emb, None, (), ar, t)


def cmd_convert(a):
    from .decoder.convert import convert_decoder

    t = time.perf_counter()

    def progress(i, n):
        if i == n or i % 50 == 0:
            print(f"\r{i}/{n} tensors", end="" if i < n else "\n", file=sys.stderr, flush=True)

    out = convert_decoder(a.decoder, a.out, a.layout, a.dtype, on_tensor=progress)
    print(f"wrote {out} ({out.stat().st_size / 2**20:.1f} MiB, {a.layout} layout, {a.dtype}) "
          f"in {time.perf_counter() - t:.1f}s")


def cmd_make_tiny(a):
    from .tiny import make_tiny

    paths = make_tiny(a.dir, seed=a.seed, comfyui=a.comfyui)
    for k, v in paths.items():
        print(f"{k}: {v}")


def cmd_demo(a):
    from pathlib import Path

    from .demo import run_demo

    run_demo(Path(a.out), a.device, a.dtype)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="nexus-gen", description="Nexus-Gen V2: understanding, generation, editing")
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("understand", help="answer a question about an image (or a text-only question)")
    _common(s)
    s.add_argument("--image", default=None)
    s.add_argument("--question", default="", help="default with an image: a brief description")
    s.add_argument("--stream", action="store_true", help="print tokens to stderr as they are produced")
    _sampling_args(s)
    s.set_defaults(func=cmd_understand)

    s = sub.add_parser("encode", help="ViT embeddings of an image (81 or 324 tokens)")
    _common(s)
    s.add_argument("--image", required=True)
    s.add_argument("--tokens", type=int, default=81, help="81 (252x252) or 324 (504x504)")
    s.add_argument("--resize", choices=["squash", "crop"], default="squash",
                   help="squash = reference (bilinear, aspect ignored); crop = decoder training (short side + centre)")
    s.add_argument("--out", required=True)
    s.set_defaults(func=cmd_encode)

    s = sub.add_parser("embeds", help="predicted image embeddings for a prompt or an editing instruction")
    _common(s)
    s.add_argument("--prompt", action="append", default=None, help="repeat for a batch")
    s.add_argument("--language", choices=["en", "zh", "auto"], default="en")
    s.add_argument("--image", default=None)
    s.add_argument("--instruction", default=None)
    s.add_argument("--mode", choices=["reference", "fast"], default="reference")
    s.add_argument("--out", required=True)
    _sampling_args(s)
    s.set_defaults(func=cmd_embeds)

    s = sub.add_parser("generate", help="text -> image")
    _common(s)
    s.add_argument("--prompt", action="append", required=True, help="repeat for a batch")
    _ar_embed_args(s, "en")
    _decode_args(s, "generation")
    s.set_defaults(func=cmd_generate)

    s = sub.add_parser("edit", help="image + instruction -> image")
    _common(s)
    s.add_argument("--image", required=True)
    s.add_argument("--instruction", required=True)
    s.add_argument("--decoder-kind", choices=["editing", "generation"], default="editing",
                   help="generation = the generation decoder on the AR output only (large conceptual edits)")
    _ar_embed_args(s, "auto")
    _decode_args(s, "editing")
    s.set_defaults(func=cmd_edit)

    s = sub.add_parser("variation", help="image -> ViT embeddings -> generation decoder")
    _common(s)
    s.add_argument("--image", required=True)
    s.add_argument("--resize", choices=["crop", "squash"], default="crop",
                   help="crop = the decoder's training policy (default), squash = the reference's ViT resize")
    _decode_args(s, "generation")
    s.set_defaults(func=cmd_variation)

    s = sub.add_parser("convert", help="decoder .bin -> .safetensors (ComfyUI or diffusers layout), streamed")
    s.add_argument("decoder")
    s.add_argument("--out", required=True)
    s.add_argument("--layout", choices=["comfyui", "diffusers"], default="comfyui")
    s.add_argument("--dtype", choices=["bf16", "fp16", "fp32", "fp8_e4m3fn", "fp8_e5m2"], default="bf16")
    s.set_defaults(func=cmd_convert)

    s = sub.add_parser("make-tiny", help="write a tiny random Nexus-Gen model set (for tests and the demo)")
    s.add_argument("dir")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--comfyui", action="store_true",
                   help="write a ComfyUI models folder (nexus_gen/, text_encoders/, vae/ with a full-size random AE)")
    s.set_defaults(func=cmd_make_tiny)
    s = sub.add_parser("demo", help="make the tiny model set if needed and run every stage on it")
    s.add_argument("--out", default="nexus_demo", help="folder for the tiny models and the outputs")
    _common(s, model=False)
    s.set_defaults(func=cmd_demo)
    return p


def main(argv=None) -> int:
    a = build_parser().parse_args(argv)
    try:
        a.func(a)
    except NexusError as e:
        print(f"nexus-gen: error: {e}", file=sys.stderr)
        return 2
    except (NexusCancelled, KeyboardInterrupt):
        print("nexus-gen: cancelled", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
