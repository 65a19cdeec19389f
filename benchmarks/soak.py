"""A server's long life: many prompts on one real ComfyUI, cycling through every base workflow with fresh seeds,
recording the server process's RSS, anonymous memory, open file descriptors, threads and seconds per prompt.

The point is the server, not the pictures: tiny random models, small images, few steps. Each cycle queues every
base workflow once (English copies; the mixing workflows that need FLUX's real widths and the GGUF workflow when
ComfyUI-GGUF is absent are left out and named), so the queue swaps the generation decoder, the editing decoder and
the AR all the time. A prompt is queued when the previous one has ended (so seconds per prompt are the server's
own). Goal after the first cycle: RSS grows less than 2 %, descriptors and threads stay flat, time per prompt
stays flat.

    COMFYUI_PATH=~/ComfyUI COMFYUI_PYTHON=~/ComfyUI/venv/bin/python python3 benchmarks/soak.py --prompts 500
    ... --cache none | lru4 | classic | ram      (ComfyUI's cache modes; 'default' leaves the host's own)
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import random
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "comfyui"))
sys.path.insert(0, str(REPO / "benchmarks"))
from process_memory import status_kb  # noqa: E402
from prompt_validation import CORE, start  # noqa: E402  (the core-only control graph; a server on tiny models)
from workflow_format import shrink, ui_to_api  # noqa: E402

CACHE_ARGS = {"default": [], "none": ["--cache-none"], "lru4": ["--cache-lru", "4"], "classic": ["--cache-classic"],
              "ram": ["--cache-ram"]}
REAL_WIDTH_ONLY = ("nexus_gen_lora_hires", "nexus_gen_redux")
SEED_INPUTS = ("seed", "noise_seed")


def base_workflows(object_info: dict) -> tuple[dict[str, dict], list[str]]:
    """{stem: API prompt} of the base workflows this server can run, and the stems left out with the reason."""
    runs, left = {}, []
    for path in sorted((REPO / "workflows").glob("*.json")):
        if path.stem.endswith("_zh"):
            continue
        if path.stem in REAL_WIDTH_ONLY:
            left.append(f"{path.stem} (FLUX add-ons at FLUX's real widths)")
            continue
        wf = json.loads(path.read_text())
        missing = sorted({n["type"] for n in wf["nodes"] if n["type"] not in object_info
                          and n["type"] not in ("Note", "MarkdownNote")})
        if missing:
            left.append(f"{path.stem} (needs {', '.join(missing)})")
            continue
        runs[path.stem] = ui_to_api(wf, object_info)
    return runs, left


def proc_facts(pid: int) -> dict:
    """RSS and anonymous memory (MB), open descriptors and threads of the server process, from /proc."""
    kb = status_kb(pid)
    threads = next(int(line.split()[1]) for line in Path(f"/proc/{pid}/status").read_text().splitlines()
                   if line.startswith("Threads:"))
    return {"rss_mb": kb["VmRSS"] / 1024, "anon_mb": kb["RssAnon"] / 1024, "fds": len(os.listdir(f"/proc/{pid}/fd")),
            "threads": threads}


def with_seeds(prompt: dict, rng: random.Random) -> dict:
    prompt = json.loads(json.dumps(prompt))
    for node in prompt.values():
        for key in SEED_INPUTS:
            if isinstance(node["inputs"].get(key), int):
                node["inputs"][key] = rng.randrange(2**32)
    return prompt


def soak(client, pid: int, runs: dict[str, dict], n_prompts: int, seed: int, steps: int, size: int,
         tokens: int, keep_history: bool = False) -> list[dict]:
    rng = random.Random(seed)
    small = {k: shrink(json.loads(json.dumps(p)), steps=steps, width=size, height=size, tokens=tokens)
             for k, p in runs.items()}
    names = list(small)
    rows = []
    for i in range(n_prompts):
        name = names[i % len(names)]
        t = time.perf_counter()
        code, body = client.queue(with_seeds(small[name], rng))
        if code != 200:
            raise RuntimeError(f"/prompt refused {name}: {json.dumps(body)[:1500]}")
        entry = client.wait(body["prompt_id"])
        seconds = time.perf_counter() - t
        if not keep_history:  # the host keeps up to 10,000 entries (prompt + outputs) in memory: not the pack's
            client.post("/history", {"delete": [body["prompt_id"]]})
        status = entry["status"]["status_str"]
        stamps = {m[0]: m[1].get("timestamp") for m in entry["status"].get("messages", [])}
        ran = (stamps.get("execution_success") or stamps.get("execution_error") or 0) - \
            (stamps.get("execution_start") or 0)
        # the server's own time for the prompt (its event timestamps, ms); the round trip includes the client's
        # polling of /history
        rows.append({"i": i, "cycle": i // len(names), "workflow": name, "status": status,
                     "seconds": ran / 1000 if ran > 0 else seconds, "round_trip": seconds, **proc_facts(pid)})
        if status != "success":
            msgs = {m[0]: m[1] for m in entry["status"].get("messages", [])}
            rows[-1]["error"] = json.dumps(msgs.get("execution_error", {}))[:600]
        print(f"{i + 1}/{n_prompts} {name}: {status} {seconds:.2f} s, RSS {rows[-1]['rss_mb']:.0f} MB",
              file=sys.stderr, flush=True)
    return rows


def summary(rows: list[dict], per_cycle: int) -> dict:
    after = [r for r in rows if r["cycle"] >= 1]
    first_end = rows[per_cycle - 1]  # the server after the first cycle: every model loaded once
    last = rows[-1]
    cycles = max(r["cycle"] for r in rows) + 1
    by_cycle = [[r for r in rows if r["cycle"] == c] for c in range(cycles)]
    early = [sum(r["seconds"] for r in c) for c in by_cycle[1:4] if len(c) == per_cycle]
    late = [sum(r["seconds"] for r in c) for c in by_cycle[-3:] if len(c) == per_cycle]
    return {
        "prompts": len(rows), "failed": sum(r["status"] != "success" for r in rows), "cycles": cycles,
        "rss_after_first_cycle_mb": first_end["rss_mb"], "rss_last_mb": last["rss_mb"],
        "rss_growth_pct": 100 * (last["rss_mb"] / first_end["rss_mb"] - 1),
        "rss_max_after_first_cycle_mb": max(r["rss_mb"] for r in after) if after else None,
        "anon_after_first_cycle_mb": first_end["anon_mb"], "anon_last_mb": last["anon_mb"],
        "fds_range": [min(r["fds"] for r in after), max(r["fds"] for r in after)] if after else None,
        "threads_range": [min(r["threads"] for r in after), max(r["threads"] for r in after)] if after else None,
        "cycle_seconds_early": statistics.median(early) if early else None,
        "cycle_seconds_late": statistics.median(late) if late else None,
        "median_seconds_per_prompt": statistics.median(r["seconds"] for r in rows),
        "rss_trend_mb_per_100": _trend([statistics.median(r["rss_mb"] for r in c) for c in by_cycle[1:]],
                                       100 / per_cycle),
    }


def _trend(values: list[float], scale: float) -> float | None:
    """Least-squares slope of `values` against their index, times `scale` (per 100 prompts)."""
    n = len(values)
    if n < 2:
        return None
    mx, my = (n - 1) / 2, sum(values) / n
    return scale * sum((i - mx) * (v - my) for i, v in enumerate(values)) / sum((i - mx) ** 2 for i in range(n))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--prompts", type=int, default=500, help="prompts in all (default 500)")
    p.add_argument("--cache", choices=sorted(CACHE_ARGS), default="default",
                   help="ComfyUI's cache mode: default (the host's own), none, lru4, classic, ram")
    p.add_argument("--steps", type=int, default=2, help="sampling steps per image (default 2)")
    p.add_argument("--size", type=int, default=64, help="image side in pixels (default 64)")
    p.add_argument("--tokens", type=int, default=90, help="AR reply budget (default 90; the image span is 83)")
    p.add_argument("--seed", type=int, default=0, help="seeds the per-prompt seeds (default 0)")
    p.add_argument("--keep-history", action="store_true",
                   help="leave each prompt in the server's history (by default each is deleted once read: the host "
                        "keeps up to 10,000 in memory, a growth that is the host's, not the pack's)")
    p.add_argument("--workflows", help="comma-separated stems to cycle through instead of every base workflow; "
                                       "'core' is a control graph of ComfyUI's own nodes only (Load VAE -> Empty SD3 "
                                       "Latent -> VAE Decode -> Save Image)")
    p.add_argument("--json", help="also write the rows and the summary to this file")
    a = p.parse_args(argv)
    comfy = os.environ.get("COMFYUI_PATH")
    if not comfy:
        p.error("set COMFYUI_PATH (and COMFYUI_PYTHON to its Python)")
    comfy = Path(comfy)
    sys.path.insert(0, str(REPO / "tools"))
    import tiny_comfy as tiny
    base = Path(tempfile.mkdtemp(prefix="nexus-soak-"))
    try:
        yaml = tiny.prepare(base, comfy)
        yaml.write_text(yaml.read_text().replace(str(base / "custom_nodes"), "CUSTOM_NODES"))
        proc, client = start(comfy, base, yaml, base / "custom_nodes", base / "comfyui.log",
                             extra_args=CACHE_ARGS[a.cache])
        try:
            runs, left = base_workflows(client.get("/object_info"))
            if a.workflows:
                wanted = a.workflows.split(",")
                core = {"core": json.loads(json.dumps(CORE))} if "core" in wanted else {}
                runs = {**{k: v for k, v in runs.items() if k in wanted}, **core}
                left = [f"{k} (not asked for)" for k in sorted(set(runs) ^ set(wanted)) if k not in runs] + left
            t0 = time.perf_counter()
            rows = soak(client, proc.pid, runs, a.prompts, a.seed, a.steps, a.size, a.tokens, a.keep_history)
            wall = time.perf_counter() - t0
        finally:
            proc.terminate()
            proc.wait(30)
        log_tail = (base / "comfyui.log").read_text()[-2000:]
    finally:
        shutil.rmtree(base, ignore_errors=True)
    s = summary(rows, len(runs))
    version = (comfy / "comfyui_version.py").read_text().split('"')[-2] if (comfy / "comfyui_version.py").exists() \
        else "?"
    print(f"machine: {platform.node()}, {os.cpu_count()} cores, Python {platform.python_version()}; "
          f"ComfyUI {version}, CPU, cache mode {a.cache} {' '.join(CACHE_ARGS[a.cache])}")
    print(f"{s['prompts']} prompts in {wall / 60:.1f} min over {s['cycles']} cycles of {len(runs)} workflows "
          f"({', '.join(runs)}); {a.size}x{a.size} px, {a.steps} steps; left out: {'; '.join(left) or 'none'}\n")
    print("| measure | after cycle 1 | last | goal |")
    print("|---|---|---|---|")
    print(f"| RSS MB | {s['rss_after_first_cycle_mb']:.0f} | {s['rss_last_mb']:.0f} "
          f"({s['rss_growth_pct']:+.2f} %; max {s['rss_max_after_first_cycle_mb']:.0f}) | < +2 % |")
    print(f"| RSS trend, MB per 100 prompts (cycle medians after cycle 1) | | {s['rss_trend_mb_per_100']:+.2f} | ~0 |")
    print(f"| anonymous MB | {s['anon_after_first_cycle_mb']:.0f} | {s['anon_last_mb']:.0f} | flat |")
    print(f"| file descriptors (min-max after cycle 1) | {s['fds_range'][0]} | {s['fds_range'][1]} | flat |")
    print(f"| threads (min-max after cycle 1) | {s['threads_range'][0]} | {s['threads_range'][1]} | flat |")
    print(f"| seconds per cycle (median of cycles 2-4 / last 3) | {s['cycle_seconds_early']:.2f} | "
          f"{s['cycle_seconds_late']:.2f} | flat |")
    print(f"| failed prompts | | {s['failed']} | 0 |")
    if s["failed"]:
        print("\nfirst failure:", next(r for r in rows if r["status"] != "success").get("error"))
        print("log tail:", log_tail)
    if a.json:
        Path(a.json).write_text(json.dumps({"summary": s, "rows": rows, "cache": a.cache, "workflows": list(runs),
                                            "left_out": left}, indent=1))
    return 1 if s["failed"] else 0


if __name__ == "__main__":
    sys.exit(main())
