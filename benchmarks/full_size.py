"""The real sizes on this machine: load, convert and first-use costs of full-size random models, measured.

Each measurement runs in a fresh Python process (so its RAM baseline is its own) with the files' pages dropped from
the page cache first (cold, as after a reboot; `echo 3 > /proc/sys/vm/drop_caches` where allowed, else
posix_fadvise per file). Peak RSS is the kernel's high-water mark (VmHWM) of that process, reported above its
baseline after imports; RssAnon (memory only this process holds) and RssFile (pages of memory-mapped files,
which the kernel can drop and re-read) are sampled every 20 ms.

    nexus-gen make-full-size /big/fs                         # 65 GB (see --ar-layers etc. for less)
    python3 benchmarks/full_size.py --models /big/fs [--only read,ar,decoder,convert] [--forward] --json out.json
    python3 benchmarks/full_size.py --models /big/fs --only comfy --comfyui ~/ComfyUI --comfyui-python PY ...

Rows:
  read            the floor: reading every file of the AR folder once, in 64 MiB chunks
  ar <mode>       load_ar on the CPU, bf16 compute: default (bf16 weights), fp8 streamed (tensor by tensor), fp8
                  convert-after-load (the route before streaming); --forward adds one 'fast' embedding forward
  single          nexus-gen convert of the AR folder into one fp8 file, then reading and loading that file
  decoder cli     load_decoder (the CLI's diffusers DiT) from the .bin, bf16
  convert <x>     nexus-gen convert of the generation decoder: comfyui safetensors bf16 (what ComfyUI's loader
                  did on first use until Dec 2026), GGUF Q4_0 / Q8_0
  comfy ...       a real ComfyUI: the decoder loader node's first and second use; the text -> image workflow
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from process_memory import GB, REPO, Sampler, drop_caches, reset_hwm, status_kb  # noqa: E402


def tensor_bytes(module) -> int:
    """Bytes of a module's parameters and buffers (shared storages once)."""
    seen, total = set(), 0
    for t in list(module.parameters()) + list(module.buffers()):
        if t is None or t.device.type == "meta":
            continue
        key = t.untyped_storage().data_ptr()
        if key not in seen:
            seen.add(key)
            total += t.untyped_storage().nbytes()
    return total


# --- the child: one measurement --------------------------------------------------------------------------------------

def child(kind: str, args: dict) -> dict:
    import torch  # noqa: F401  (the baseline includes torch and transformers, as in a real run)
    import transformers  # noqa: F401

    torch.set_num_threads(os.cpu_count() or 1)
    base = status_kb()
    hwm_reset = reset_hwm()
    out: dict = {"baseline_gb": base["VmRSS"] * 1024 / GB, "hwm_reset": hwm_reset}
    t0 = time.perf_counter()
    with Sampler() as s:
        keep = _work(kind, args, out)
        out["seconds"] = time.perf_counter() - t0
    after = status_kb()
    out.update(peak_gb=after["VmHWM"] * 1024 / GB, peak_above_baseline_gb=(after["VmHWM"] - base["VmRSS"]) * 1024 / GB,
               rss_after_gb=after["VmRSS"] * 1024 / GB, anon_after_gb=after["RssAnon"] * 1024 / GB,
               peak_anon_gb=s.peak["RssAnon"] * 1024 / GB, peak_file_gb=s.peak["RssFile"] * 1024 / GB)
    if args.get("forward") and kind == "ar":
        from nexus_core.ar import generation_request, predict
        t = time.perf_counter()
        anon_before = status_kb()["RssAnon"]
        with Sampler() as s:
            predict(keep, [generation_request("a red fox sitting in the snow at sunset", "en")], mode="fast")
        after = status_kb()
        out.update(forward_seconds=time.perf_counter() - t, rss_after_forward_gb=after["VmRSS"] * 1024 / GB,
                   forward_anon_above_load_gb=(s.peak["RssAnon"] - anon_before) * 1024 / GB,
                   anon_after_forward_gb=after["RssAnon"] * 1024 / GB, peak_after_forward_gb=after["VmHWM"] * 1024 / GB)
    del keep
    return out


def _work(kind: str, a: dict, out: dict):
    if kind == "read":
        buf = bytearray(64 << 20)
        total = 0
        for p in a["files"]:
            with open(p, "rb", buffering=0) as f:
                while n := f.readinto(buf):
                    total += n
        out["bytes"] = total
        return None
    if kind == "ar":
        from nexus_core.ar import load_ar
        from nexus_core.loading import streamed
        from nexus_core.memory import fp8
        streamed.MAP_PREQUANTIZED = a.get("map_file", True)  # False: the one file read into memory (before)
        if a.get("whole_cast"):  # every fp8 Linear cast whole for each call (before the row blocks)
            fp8.CAST_WHOLE_UP_TO = 1 << 62
        ar = load_ar(a["folder"], "cpu", "bfloat16", weight_dtype=a["weight_dtype"], stream=a.get("stream", True))
        out["weights_gb"] = tensor_bytes(ar.model) / GB
        return ar
    if kind == "decoder-cli":
        import torch

        from nexus_core.decoder import load_decoder
        dec = load_decoder(a["path"], None, dtype=torch.bfloat16)
        out["weights_gb"] = (tensor_bytes(dec.dit) + tensor_bytes(dec.projector)) / GB
        return dec
    if kind == "convert":
        from nexus_core.decoder.convert import convert_decoder
        p = convert_decoder(a["path"], a["out"], a["layout"], a["dtype"])
        out["bytes_written"] = p.stat().st_size
        return None
    if kind == "convert-ar":
        from nexus_core.ar import load_ar
        from nexus_core.ar.model import save_ar_file
        ar = load_ar(a["folder"], "cpu", "bfloat16", weight_dtype="fp8_e4m3fn")
        p = save_ar_file(ar, a["out"], overwrite=True)
        out["bytes_written"] = p.stat().st_size
        return None
    raise SystemExit(f"unknown measurement {kind}")


def run_child(kind: str, args: dict, files_to_drop=()) -> dict:
    how = drop_caches(files_to_drop)
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", kind, json.dumps(args)]
    p = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO)
    if p.returncode != 0:
        return {"error": (p.stderr or p.stdout).strip().splitlines()[-1:] or [f"exit {p.returncode}"],
                "cache": how}
    res = json.loads(p.stdout.strip().splitlines()[-1])
    res["cache"] = how
    return res


# --- the table -------------------------------------------------------------------------------------------------------

def folder_files(folder: Path) -> list[str]:
    return sorted(str(p) for p in folder.iterdir() if p.is_file())


def describe(models: Path) -> dict:
    ar = models / "Nexus-GenV2"
    out = {}
    if (ar / "config.json").is_file():
        cfg = json.loads((ar / "config.json").read_text())
        out["ar"] = {"text_layers": cfg["num_hidden_layers"], "vision_blocks": cfg["vision_config"].get("depth", 32),
                     "bytes": sum(Path(f).stat().st_size for f in folder_files(ar))}
    for kind, name in (("generation", "generation_decoder.bin"), ("editing", "edit_decoder.bin")):
        if (models / name).is_file():
            out[kind] = {"bytes": (models / name).stat().st_size}
    return out


def measure(models: Path, only: set[str], forward: bool, scratch: Path) -> list[dict]:
    rows = []
    ar = models / "Nexus-GenV2"
    gen = models / "generation_decoder.bin"
    if "read" in only and ar.is_dir():
        files = folder_files(ar)
        rows.append({"row": "read AR files (the floor)", **run_child("read", {"files": files}, files)})
    if ("ar" in only or "ar-fp8" in only) and ar.is_dir():  # ar-fp8: the streamed fp8 row alone
        for label, wd, stream in (("AR bf16 (transformers, memory-mapped)", "default", True),
                                  ("AR fp8_e4m3fn, streamed", "fp8_e4m3fn", True),
                                  ("AR fp8_e4m3fn, load then convert (before)", "fp8_e4m3fn", False)):
            if "ar" not in only and not (wd == "fp8_e4m3fn" and stream):
                continue
            args = {"folder": str(ar), "weight_dtype": wd, "stream": stream, "forward": forward}
            rows.append({"row": label, **run_child("ar", args, folder_files(ar))})
    single = models / "nexus_gen_ar-fp8_e4m3fn.safetensors"
    if "single" in only and ar.is_dir():
        rows.append({"row": "convert AR folder -> one fp8 file", **run_child(
            "convert-ar", {"folder": str(ar), "out": str(single)}, folder_files(ar))})
        if single.is_file():
            rows.append({"row": "read the one fp8 file (the floor)", **run_child("read", {"files": [str(single)]},
                                                                                [str(single)])})
            for label, extra in (("AR fp8_e4m3fn from the one file, read into memory (before)", {"map_file": False}),
                                 ("AR fp8_e4m3fn from the one file, kept in its memory map", {}),
                                 ("the same, every fp8 Linear cast whole per call (before row blocks)",
                                  {"whole_cast": True})):
                rows.append({"row": label, **run_child(
                    "ar", {"folder": str(single), "weight_dtype": "default", "forward": forward, **extra},
                    [str(single)])})
    if "decoder" in only and gen.is_file():
        rows.append({"row": "decoder, CLI route (diffusers DiT from the .bin)",
                     **run_child("decoder-cli", {"path": str(gen)}, [str(gen)])})
    if "convert" in only and gen.is_file():
        for layout, dtype, suffix in (("comfyui", "bf16", ".safetensors"), ("gguf", "Q4_0", ".gguf"),
                                      ("gguf", "Q8_0", ".gguf")):
            out = scratch / f"bench-{layout}-{dtype}{suffix}"
            rows.append({"row": f"convert generation decoder -> {layout} {dtype}",
                         **run_child("convert", {"path": str(gen), "out": str(out), "layout": layout, "dtype": dtype},
                                     [str(gen)])})
            out.unlink(missing_ok=True)
    return rows


def machine() -> str:
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    cpu = next((ln.split(":", 1)[1].strip() for ln in open("/proc/cpuinfo") if ln.startswith("model name")), "?")
    import torch
    return (f"{platform.node()}: {os.cpu_count()} cores ({cpu}), {mem:.0f} GiB RAM, Linux {platform.release()}, "
            f"Python {platform.python_version()}, torch {torch.__version__}")


def comfy_table(rows: list[dict]) -> str:
    lines = ["| what | s | server RSS before GB | server peak GB | peak anon GB | peak file-backed GB | disk written GB "
             "| per stage (s) |", "|" + "---|" * 8]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['row']} | failed: {str(r['error'])[:300]} | | | | | | |")
            continue
        stages = ", ".join(f"{k} {v}" for k, v in r.get("stages", {}).items())
        lines.append(f"| {r['row']} | {r.get('seconds', 0):.1f} | {r['server_rss_before_gb']:.2f} | "
                     f"{r['server_peak_gb']:.2f} | {r['server_peak_anon_gb']:.2f} | {r['server_peak_file_gb']:.2f} | "
                     f"{r.get('disk_written_gb', 0):.2f} | {stages} |")
    return "\n".join(lines)


def table(rows: list[dict]) -> str:
    comfy = [r for r in rows if "server_peak_gb" in r or r.get("host")]
    rows = [r for r in rows if r not in comfy]
    if comfy:
        return table(rows) + "\n\n" + comfy_table(comfy) if rows else comfy_table(comfy)
    head = ("| what | s | peak RSS above baseline GB | peak anon GB | peak file-backed GB | RSS after GB | "
            "weights kept GB | notes |")
    lines = [head, "|" + "---|" * 8]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['row']} | failed: {r['error']} | | | | | | |")
            continue
        notes = []
        if "bytes" in r:
            notes.append(f"{r['bytes'] / GB:.1f} GB at {r['bytes'] / GB / r['seconds']:.2f} GB/s")
        if "bytes_written" in r:
            notes.append(f"wrote {r['bytes_written'] / GB:.1f} GB")
        if "forward_seconds" in r:
            notes.append(f"1 forward {r['forward_seconds']:.0f} s (load + forward {r['seconds'] + r['forward_seconds']:.0f}"
                         f" s), then RSS {r['rss_after_forward_gb']:.1f} GB (anon {r['anon_after_forward_gb']:.1f}); "
                         f"the forward's own memory at its peak {r.get('forward_anon_above_load_gb', 0):.2f} GB")
        if not r.get("hwm_reset", True):
            notes.append("peak includes start-up (VmHWM not resettable)")
        lines.append(f"| {r['row']} | {r['seconds']:.1f} | {r['peak_above_baseline_gb']:.2f} | {r['peak_anon_gb']:.2f} "
                     f"| {r['peak_file_gb']:.2f} | {r['rss_after_gb']:.2f} | {r.get('weights_gb', 0):.2f} | "
                     f"{'; '.join(notes)} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models", type=Path, help="folder written by nexus-gen make-full-size")
    p.add_argument("--only", default="read,ar,single,decoder,convert",
                   help="comma-separated rows: read, ar, single, decoder, convert, comfy")
    p.add_argument("--forward", action="store_true", help="also time one embedding forward after each AR load")
    p.add_argument("--scratch", type=Path, help="where conversions write (default: --models)")
    p.add_argument("--json", type=Path, help="write the rows and the machine here")
    p.add_argument("--comfyui", type=Path, help="a ComfyUI checkout (for --only comfy)")
    p.add_argument("--comfyui-python", default=None, help="ComfyUI's Python (default: this one)")
    p.add_argument("--comfyui-gguf", type=Path, default=None,
                   help="city96's ComfyUI-GGUF checkout: adds the GGUF Q4_0 text -> image row")
    p.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if a.child:
        print(json.dumps(child(a.child[0], json.loads(a.child[1]))))
        return 0
    if a.models is None:
        p.error("--models is required")
    only = set(a.only.split(","))
    rows = measure(a.models, only, a.forward, a.scratch or a.models)
    comfy_parts = {x.split("-", 1)[1] for x in only if x.startswith("comfy-")} or \
        ({"decoder", "ar", "t2i"} if "comfy" in only else set())  # comfy-decoder, comfy-ar, comfy-t2i
    if comfy_parts:
        from full_size_comfy import measure_comfy  # the real-host rows live beside this script
        gen = a.models / "generation_decoder.bin"
        if gen.is_file() and "decoder" in comfy_parts:  # the floor the Decoder Loader is compared with, same run
            rows.append({"row": "read generation_decoder.bin (the floor)",
                         **run_child("read", {"files": [str(gen)]}, [str(gen)])})
        rows += measure_comfy(a.models, a.comfyui, a.comfyui_python, a.comfyui_gguf, comfy_parts)
    info = {"machine": machine(), "date": time.strftime("%Y-%m-%d"), "models": describe(a.models), "rows": rows}
    print(f"machine: {info['machine']}\nmodels: {json.dumps(info['models'])}\n")
    print(table(rows))
    if a.json:
        a.json.write_text(json.dumps(info, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
