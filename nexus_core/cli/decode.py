"""The plumbing the AR and image commands share: loading the AR the way the options ask, the sampling overrides,
predicting embeddings, and decoding them into images and latents files."""
from __future__ import annotations

import sys
import time


def sampling_of(ar, a):
    do = None if a.do_sample is None else a.do_sample == "true"
    return ar.sampling.override(do_sample=do, temperature=a.temperature, top_k=a.top_k, top_p=a.top_p,
                                repetition_penalty=a.repetition_penalty)


def load_model(a):
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
    fp8_options(ar, a)
    print(f"loaded {a.model} (Nexus-Gen V{ar.version}, {ar.dtype}, {ar.device}) in {time.perf_counter() - t:.1f}s",
          file=sys.stderr)
    return ar


def fp8_options(ar, a) -> None:
    """--fp8-table and --fp8-matmul, for an AR whose Linears are in fp8 (asked or stored so)."""
    import torch

    from ..memory import fp8_matmul
    from ..memory.fp8 import ScaledFp8Linear, store_embeddings_fp8

    stored = {m.weight.dtype for m in ar.model.modules() if isinstance(m, ScaledFp8Linear) and m.weight is not None}
    if not stored:
        if a.fp8_table or a.fp8_matmul:
            print("--fp8-table and --fp8-matmul need an fp8 AR (--ar-dtype fp8_e4m3fn): ignored", file=sys.stderr)
        return
    if a.fp8_table:
        store_embeddings_fp8(ar.model, next(iter(stored)), ar.dtype)
    if a.fp8_matmul:
        fp8_matmul.MATMUL_DEVICES.add("cuda")
        if not (ar.device.type == "cuda" and fp8_matmul.device_can(ar.device) and torch.float8_e4m3fn in stored):
            print("--fp8-matmul: this device has no fp8 matrix multiply (or the AR is not e4m3): casting instead",
                  file=sys.stderr)


def run_decode(a, kind, embeds, reference=None, texts=(), ar=None, timings=None):
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
        dec = load_decoder(path, ar.checkpoint.config if ar is not None else ar_config(a.model), dtype, "cpu",
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


def ar_config(model_dir):
    from ..ar.checkpoint import inspect_ar_folder
    return inspect_ar_folder(model_dir).config


def embed_then_decode(a, kind, make_requests, reference=None):
    """Load the AR, predict the embeddings of `make_requests(ar)`, then decode them with the `kind` decoder."""
    from ..ar import predict
    from ..pipeline import Timings

    t = Timings()
    with t.stage("load AR"):
        ar = load_model(a)
    with t.stage("AR embeddings"):
        kw = {} if a.mode == "fast" else dict(max_new_tokens=a.max_new_tokens)
        res = predict(ar, make_requests(ar), a.mode, **kw)
        ref = reference(ar) if reference is not None else None
    print(f"AR reply: {res.texts[0]}", file=sys.stderr)
    run_decode(a, kind, res.embeddings, ref, res.texts, ar, t)
