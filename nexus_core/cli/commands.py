"""What each `nexus-gen` command does, once its options have been read (parser.py) and checked (checks.py):
thin calls into nexus_core. Heavy imports happen inside each command."""
from __future__ import annotations

import sys
import time
from pathlib import Path

from ..settings.defaults import EDITING, GENERATION
from . import decode


def cmd_understand(a):
    from ..ar import understand
    from .text_stream import TextStream, for_terminal

    ar = decode.load_model(a)
    stream = None
    if a.stream:  # the answer goes to stdout once, as it is written, whole characters only
        stream = TextStream(lambda ids: ar.tokenizer.decode(ids, skip_special_tokens=True),
                            lambda s: print(for_terminal(s), end="", flush=True))
    text = understand(ar, a.question, a.image, max_new_tokens=a.max_new_tokens, sampling=decode.sampling_of(ar, a),
                      seed=a.seed, on_token=(lambda tok, ids: stream.update(ids)) if stream else None)
    if stream:
        stream.finish(text)
        print()
    else:
        print(for_terminal(text))


def cmd_encode(a):
    from ..ar import encode_image
    from ..embeddings.file import save_embeddings

    ar = decode.load_model(a)
    emb = encode_image(ar, a.image, a.tokens, a.resize)
    save_embeddings(a.out, {"vit_embeddings": emb.unsqueeze(0)}, kind="vit", tokens=str(a.tokens),
                    resize=a.resize, source=str(a.image))
    print(f"wrote {a.out}: vit_embeddings {tuple(emb.unsqueeze(0).shape)}")


def cmd_embeds(a):
    from ..ar import editing_request, generation_request, predict
    from ..embeddings.file import save_embeddings

    ar = decode.load_model(a)
    if a.prompt is not None:
        reqs = [generation_request(p, a.language) for p in a.prompt]
        kind = "generation"
    else:
        reqs = [editing_request(ar, a.image, a.instruction, a.language)]
        kind = "editing"
    kw = {} if a.mode == "fast" else dict(max_new_tokens=a.max_new_tokens, sampling=decode.sampling_of(ar, a), seed=a.seed)
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


def cmd_generate(a):
    from ..ar import generation_request

    decode.embed_then_decode(a, GENERATION, lambda ar: [generation_request(p, a.language) for p in a.prompt])


def cmd_edit(a):
    from ..ar import editing_request, reference_embeddings

    ref = (lambda ar: reference_embeddings(ar, a.image).unsqueeze(0)) if a.decoder_kind == EDITING else None
    decode.embed_then_decode(a, a.decoder_kind, lambda ar: [editing_request(ar, a.image, a.instruction, a.language)], ref)


def cmd_variation(a):
    from ..ar import encode_image
    from ..pipeline import Timings

    t = Timings()
    with t.stage("load AR"):
        ar = decode.load_model(a)
    with t.stage("ViT embeddings"):
        emb = encode_image(ar, a.image, 81, a.resize).unsqueeze(0)
    decode.run_decode(a, GENERATION, emb, None, (), ar, t)


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
