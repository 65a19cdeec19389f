"""Image span cost: one forward (ours) vs the reference's faithful 81-step loop, on the KV cache.

Prints a table: forwards and wall time of prefill + span for each model size. Run:
    python benchmarks/ar_image_span.py [--device cpu|cuda] [--repeats 5]
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

from nexus_core.ar import DecodeOptions, decode, generation_request, load_ar
from nexus_core.synthetic.ar import TINY_TEXT, TINY_VISION, write_tiny_ar

SIZES = {
    "tiny (hidden 64, 2 layers)": (TINY_TEXT, TINY_VISION),
    "wide (hidden 1024, 4 layers)": (dict(hidden_size=1024, num_hidden_layers=4, num_attention_heads=8,
                                          num_key_value_heads=2, intermediate_size=2816,
                                          mrope_section=[16, 24, 24]), TINY_VISION),
}


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def measure(ar, ids, span: str, repeats: int):
    # max_new_tokens=83: the first token is forced to <|vision_start|>, so the run is prefill + the span.
    opts = DecodeOptions(want_image=True, max_new_tokens=ar.n_image_tokens + 2, span=span, stop_after_image=True)
    decode(ar, ids, opts=opts)  # warm-up
    times = []
    for _ in range(repeats):
        _sync(ar.device)
        t = time.perf_counter()
        out = decode(ar, ids, opts=opts)
        _sync(ar.device)
        times.append(time.perf_counter() - t)
    prefill = []
    for _ in range(repeats):
        _sync(ar.device)
        t = time.perf_counter()
        decode(ar, ids, opts=DecodeOptions(max_new_tokens=1))
        _sync(ar.device)
        prefill.append(time.perf_counter() - t)
    return out, statistics.median(times), statistics.median(prefill)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--device", default="cpu")
    p.add_argument("--dtype", default="auto")
    p.add_argument("--repeats", type=int, default=5)
    a = p.parse_args(argv)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, (text, vision) in SIZES.items():
            folder = write_tiny_ar(Path(tmp) / name.split()[0], seed=0, text=text, vision=vision)
            ar = load_ar(folder, a.device, a.dtype)
            req = generation_request("A red fox sitting in the snow at sunset.")
            ids, _ = ar.formatter.encode(req.messages)
            results = {span: measure(ar, ids, span, a.repeats) for span in ("single", "stepwise")}
            (o1, t1, pre), (o2, t2, _) = results["single"], results["stepwise"]
            diff = (o1.image_embeddings - o2.image_embeddings).abs().max().item()
            rows.append((name, len(ids), o1.forwards, t1, o2.forwards, t2, pre, diff))
    print(f"\nImage span: one forward vs 81-step loop ({a.device}, {a.repeats} repeats, median; "
          "times include the prompt prefill)")
    hdr = ("model", "prompt", "fwd 1-pass", "ms 1-pass", "fwd loop", "ms loop", "ms prefill", "span speed-up",
           "max|diff|")
    print("| " + " | ".join(hdr) + " |")
    print("|" + "---|" * len(hdr))
    for name, n, f1, t1, f2, t2, pre, diff in rows:
        speed = (t2 - pre) / max(t1 - pre, 1e-9)
        print(f"| {name} | {n} | {f1} | {t1 * 1e3:.1f} | {f2} | {t2 * 1e3:.1f} | {pre * 1e3:.1f} | "
              f"{speed:.1f}x | {diff:.1e} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
