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


def cmd_make_tiny(a):
    from .tiny import make_tiny

    paths = make_tiny(a.dir, seed=a.seed)
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

    s = sub.add_parser("make-tiny", help="write a tiny random Nexus-Gen model set (for tests and the demo)")
    s.add_argument("dir")
    s.add_argument("--seed", type=int, default=0)
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
