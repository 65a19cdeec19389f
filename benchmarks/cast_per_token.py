"""What ComfyUI's cast layers move per generated token for the AR's two 1.1 GB layers, the input embedding table and
the output head (152,064 x 3,584, bf16), when the host streams them (a card too small to keep the AR): each call
fetches its layer's weight through comfy.ops.cast_bias_weight, which on a GPU copies it into VRAM for that call.
Whole layers (before) against the row blocks ARHandle.wrap makes (64 MB each), side by side in one process, in a
real ComfyUI's Python, random weights, no files.

    COMFYUI_PYTHON benchmarks/cast_per_token.py --comfyui ~/ComfyUI [--rows 152064] [--width 3584] [--prompt 300]

On a CPU the host's cast of a bf16 weight to the CPU copies nothing, so the bytes are counted where they pass (the
weight each cast hands back): on a GPU each is a copy into VRAM that lives while its layer runs. Seconds are this
CPU's and say only that the lookup's extra work (finding the blocks) is small.
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
MB = 1 << 20


def build(rows: int, width: int, split: bool):
    import torch

    from nexus_pack.nexus_core.memory.row_blocks import split_large_layers
    from nexus_pack.nodes.host.cast_ops import cast_on_demand

    g = torch.Generator().manual_seed(0)
    table = torch.nn.Embedding(rows, width, dtype=torch.bfloat16, _freeze=True)
    head = torch.nn.Linear(width, rows, bias=False, dtype=torch.bfloat16)
    with torch.no_grad():
        for i in range(0, rows, 8192):  # N(0, 0.02) a slice at a time: no float32 copy of a whole layer
            j = min(i + 8192, rows)
            table.weight[i:j] = (torch.randn(j - i, width, generator=g) * 0.02).to(torch.bfloat16)
            head.weight[i:j] = (torch.randn(j - i, width, generator=g) * 0.02).to(torch.bfloat16)
    root = torch.nn.ModuleDict({"embed_tokens": table, "lm_head": head})
    if split:
        split_large_layers(root, torch.bfloat16)
    cast_on_demand(root)
    for m in root.modules():
        if hasattr(m, "comfy_cast_weights"):
            m.comfy_cast_weights = True  # as the host's patcher marks a layer it streams
    return root


def measured(root, ids, hidden, casts, repeat):
    """Per call kind: (largest single cast MB, total MB cast, median seconds)."""
    out = {}
    for kind, call in (("one token's lookup", lambda: root["embed_tokens"](ids[:1])),
                       (f"a {len(ids)}-token prompt's lookup", lambda: root["embed_tokens"](ids)),
                       ("one token's logits", lambda: root["lm_head"](hidden))):
        seconds = []
        for _ in range(repeat):
            casts.clear()
            t = time.perf_counter()
            call()
            seconds.append(time.perf_counter() - t)
        out[kind] = (max(casts) / MB, sum(casts) / MB, statistics.median(seconds), len(casts))
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--comfyui", required=True, help="a ComfyUI folder (run this with its Python)")
    p.add_argument("--rows", type=int, default=152_064)
    p.add_argument("--width", type=int, default=3_584)
    p.add_argument("--prompt", type=int, default=300, help="tokens in the prompt whose lookup is measured")
    p.add_argument("--repeat", type=int, default=5)
    a = p.parse_args(argv)
    sys.path.insert(0, str(REPO / "tests" / "comfyui"))
    from host_probe import import_pack
    import_pack(a.comfyui, str(REPO))
    import comfy.ops
    import torch

    casts: list[int] = []
    real = comfy.ops.cast_bias_weight

    def counting(s, *args, **kwargs):
        got = real(s, *args, **kwargs)
        casts.append(got[0].numel() * got[0].element_size())
        return got
    comfy.ops.cast_bias_weight = counting
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(0, a.rows, (a.prompt,), generator=g)  # spread over the vocabulary, as a real prompt's are
    hidden = torch.randn(1, a.width, generator=g).to(torch.bfloat16)
    res = {}
    for split in (False, True):
        root = build(a.rows, a.width, split)
        res[split] = measured(root, ids, hidden, casts, a.repeat)
        del root
    try:
        import comfyui_version
        host = comfyui_version.__version__
    except ImportError:
        host = "?"
    print(f"machine: {platform.node()}, {os.cpu_count()} cores, torch {torch.__version__}, CPU; ComfyUI {host}; "
          f"table and head {a.rows} x {a.width} bf16, both streamed (comfy_cast_weights); median of {a.repeat}\n")
    print("| call | layers | casts | largest cast MB (VRAM held while it runs, on a GPU) | MB cast in all | s |")
    print("|---|---|---|---|---|---|")
    for kind in res[False]:
        for split, label in ((False, "whole (before)"), (True, "64 MB row blocks (now)")):
            big, total, s, n = res[split][kind]
            print(f"| {kind} | {label} | {n} | {big:.0f} | {total:.0f} | {s:.3f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
