"""The AR's output head in fp8 at the real size (152,064 x 3,584), one generated token's logits: seconds and the
memory a forward takes above what the model keeps, with the weight cast whole (before 2026-12-04) and a block of
output rows at a time (now), side by side in one process. Random weights; no files needed.

    python3 benchmarks/head_transient.py [--rows 152064] [--width 3584] [--repeat 5]

Peak memory is the kernel's high-water mark (VmHWM), reset before each forward (needs to own the process; where
that is refused, a 5 ms sampler of RSS is used instead and said so).
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))
from process_memory import Sampler, reset_hwm, status_kb  # noqa: E402

MB = 1 << 20


def head(rows: int, width: int):
    """A ScaledFp8Linear of the output head's shape, filled a block of rows at a time from N(0, 0.02)."""
    import torch

    from nexus_core.memory.fp8 import ScaledFp8Linear

    layer = ScaledFp8Linear.shell(width, rows, False)
    g = torch.Generator().manual_seed(0)

    class Rows:  # what take_weight reads from: a "tensor in a file" made on the fly, block by block
        shape, dtype = (rows, width), torch.bfloat16

        def read_rows(self, i, j, out=None):
            t = torch.randn(j - i, width, generator=g, dtype=torch.float32).mul_(0.02).to(torch.bfloat16)
            if out is not None:
                out[: j - i].copy_(t)
                return out[: j - i]
            return t
    layer.take_weight(Rows(), torch.float8_e4m3fn, torch.bfloat16)
    return layer


def one(layer, x, blocked: bool) -> tuple[float, float]:
    """(seconds, peak MB above the RSS before the forward) of one forward."""
    from nexus_core.memory import fp8

    fp8.CAST_WHOLE_UP_TO = (256 << 20) if blocked else 1 << 62
    before = status_kb()["VmRSS"]
    exact = reset_hwm()
    t = time.perf_counter()
    with Sampler(every=0.005) as s:
        layer(x)
    seconds = time.perf_counter() - t
    peak = status_kb()["VmHWM"] if exact else s.peak["VmRSS"]
    return seconds, (peak - before) / 1024, exact


def main(argv=None) -> int:
    import torch

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rows", type=int, default=152_064)
    p.add_argument("--width", type=int, default=3_584)
    p.add_argument("--repeat", type=int, default=5)
    a = p.parse_args(argv)
    torch.set_num_threads(os.cpu_count() or 1)
    layer = head(a.rows, a.width)
    kept = (layer.weight.numel() + layer.weight_scale.numel() * 4) / MB
    x = torch.randn(1, a.width, dtype=torch.bfloat16)
    res = {False: [], True: []}
    exact = True
    for _ in range(a.repeat):  # alternated, so a drift of the machine hits both alike
        for blocked in (False, True):
            s, mb, e = one(layer, x, blocked)
            exact &= e
            res[blocked].append((s, mb))
    print(f"machine: {platform.node()}, {os.cpu_count()} cores, torch {torch.__version__}, CPU; head {a.rows} x "
          f"{a.width} fp8_e4m3fn ({kept:.0f} MB kept), bf16 compute, one token; {a.repeat} runs each, alternated; "
          f"peak from {'VmHWM (reset before each)' if exact else 'a 5 ms RSS sampler'}\n")
    print("| cast | median s | median MB above the RSS before the forward | worst MB |")
    print("|---|---|---|---|")
    for blocked, label in ((False, "whole (before)"), (True, "64 MB row blocks (now)")):
        s = [r[0] for r in res[blocked]]
        m = [r[1] for r in res[blocked]]
        print(f"| {label} | {statistics.median(s):.3f} | {statistics.median(m):.0f} | {max(m):.0f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
