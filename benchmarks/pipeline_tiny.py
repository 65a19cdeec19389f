"""Per-stage times of generate and edit (both decoders) on the tiny model set, as a table.
    python benchmarks/pipeline_tiny.py [--steps 8] [--size 128] [--repeats 3]
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

from nexus_core.ar import editing_request, generation_request, load_ar, predict, reference_embeddings
from nexus_core.decoder import load_decoder
from nexus_core.pipeline import DecodeSettings, Timings, decode_embeddings, load_flux
from nexus_core.synthetic import make_tiny


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--steps", type=int, default=8)
    p.add_argument("--size", type=int, default=128)
    p.add_argument("--repeats", type=int, default=3)
    a = p.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        make_tiny(root)
        img = Image.fromarray(np.random.default_rng(0).integers(0, 255, (100, 150, 3), dtype=np.uint8))
        ar = load_ar(root / "Nexus-GenV2", "cpu")
        cfg = ar.checkpoint.config
        text, vae = load_flux(root / "FLUX.1-dev")
        decs = {k: load_decoder(root / "Nexus-GenV2" / f, cfg) for k, f in
                (("generation", "generation_decoder.bin"), ("editing", "edit_decoder.bin"))}
        tasks = {
            "generate (cfg 3)": ("generation", lambda: predict(ar, [generation_request("a red fox")], max_new_tokens=100),
                                 None, 3.0),
            "edit, editing decoder": ("editing", lambda: predict(ar, [editing_request(ar, img, "add sunglasses")],
                                                                 max_new_tokens=100), True, 1.0),
            "edit, generation decoder": ("generation", lambda: predict(ar, [editing_request(ar, img, "add sunglasses")],
                                                                       max_new_tokens=100), None, 1.0),
        }
        results = {}
        for name, (kind, embed, use_ref, cfg_scale) in tasks.items():
            runs = []
            for _ in range(a.repeats + 1):  # the first run warms up
                t = Timings()
                with t.stage("AR embeddings"):
                    emb = embed().embeddings
                ref = None
                if use_ref:
                    with t.stage("ViT reference"):
                        ref = reference_embeddings(ar, img).unsqueeze(0)
                decode_embeddings(decs[kind], text, vae, emb,
                                  DecodeSettings(a.size, a.size, a.steps, cfg_scale, "", 3.5, 1), ref, timings=t)
                runs.append(t.stages)
            runs = runs[1:]
            results[name] = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
    stages = list(dict.fromkeys(k for r in results.values() for k in r))
    print(f"\nTiny model set, CPU, {a.size}x{a.size}, {a.steps} steps, median of {a.repeats} (ms)")
    print("| task | " + " | ".join(stages) + " | total |")
    print("|---|" + "---|" * (len(stages) + 1))
    for name, r in results.items():
        cells = [f"{r[s] * 1e3:.1f}" if s in r else "-" for s in stages]
        print(f"| {name} | " + " | ".join(cells) + f" | {sum(r.values()) * 1e3:.1f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
