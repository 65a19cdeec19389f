"""Peak memory of `nexus-gen convert` (streamed) vs a naive load-everything conversion, side by side.

Builds a synthetic generation decoder at FLUX's real width (3072, a few blocks; a .bin of >= 1 GB), converts it
both ways, each in a fresh process, and prints file size, peak RSS, peak RSS / file size and time.
    python benchmarks/convert_memory.py [--double 1 --single 2] [--keep DIR]
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CHILD = r"""
import json, sys, time
import torch

def hwm_kb():  # VmHWM belongs to this address space (ru_maxrss would include the parent's peak at fork)
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1])

mode, src, out = sys.argv[1:4]
base = hwm_kb()
t = time.perf_counter()
if mode == "streamed":
    from nexus_core.decoder.convert import convert_decoder
    convert_decoder(src, out, "comfyui", "bf16")
else:  # naive: everything in memory, then one save
    from safetensors.torch import save_file
    from nexus_core.decoder.keymap import convert_state_dict
    sd = torch.load(src, map_location="cpu", weights_only=True)
    dit = {k[len("pipe.dit."):]: v for k, v in sd.items() if k.startswith("pipe.dit.")}
    conv = convert_state_dict(dit, "comfyui")
    conv.update({k: v for k, v in sd.items() if k.startswith("adapter.")})
    save_file({k: v.contiguous() for k, v in conv.items()}, out)
dt = time.perf_counter() - t
peak = hwm_kb()
print(json.dumps({"seconds": dt, "peak_kb": peak, "baseline_kb": base}))
"""


def make_decoder(path: Path, n_double: int, n_single: int):
    import torch

    from nexus_core.synthetic.decoders import tiny_dit_state

    g = torch.Generator().manual_seed(0)
    state = tiny_dit_state(g, hidden=3072, n_double=n_double, n_single=n_single, context=4096, pooled=768)
    for i, (o, n) in {0: (4096, 3584), 3: (4096, 4096)}.items():
        state[f"adapter.{i}.weight"] = torch.zeros(o, n, dtype=torch.bfloat16)
        state[f"adapter.{i}.bias"] = torch.zeros(o, dtype=torch.bfloat16)
    for i in (1, 4):
        state[f"adapter.{i}.weight"] = torch.ones(4096, dtype=torch.bfloat16)
        state[f"adapter.{i}.bias"] = torch.zeros(4096, dtype=torch.bfloat16)
    torch.save(state, path)


def run(mode: str, src: Path, out: Path) -> dict:
    r = subprocess.run([sys.executable, "-c", CHILD, mode, str(src), str(out)], capture_output=True, text=True,
                       check=True)
    return json.loads(r.stdout.strip().splitlines()[-1])


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--double", type=int, default=1)
    p.add_argument("--single", type=int, default=2)
    p.add_argument("--keep", default=None, help="work in this folder instead of a temp folder")
    p.add_argument("--make", default=None, help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if a.make:
        make_decoder(Path(a.make), a.double, a.single)
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(a.keep or tmp)
        work.mkdir(parents=True, exist_ok=True)
        src = work / "generation_decoder.bin"
        t = time.perf_counter()
        # in a child process, so this process stays small
        subprocess.run([sys.executable, __file__, "--make", str(src), "--double", str(a.double), "--single",
                        str(a.single)], check=True)
        size = src.stat().st_size
        print(f"synthetic decoder: width 3072, {a.double} double + {a.single} single blocks, "
              f"{size / 2**30:.2f} GiB .bin (made in {time.perf_counter() - t:.0f}s)")
        rows = []
        for mode in ("streamed", "naive"):
            out = work / f"{mode}.safetensors"
            r = run(mode, src, out)
            rows.append((mode, out.stat().st_size, r["peak_kb"] * 1024, (r["peak_kb"] - r["baseline_kb"]) * 1024,
                         r["seconds"]))
            out.unlink()
    print("\n| conversion | output | peak RSS | peak RSS / file | RSS added by converting (after imports) | time |")
    print("|---|---|---|---|---|---|")
    for mode, osize, peak, added, sec in rows:
        print(f"| {mode} | {osize / 2**30:.2f} GiB | {peak / 2**30:.2f} GiB | {peak / size:.2f} | "
              f"{added / 2**30:.2f} GiB | {sec:.1f} s |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
