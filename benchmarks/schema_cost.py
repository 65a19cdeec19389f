"""Per-prompt cost of our nodes' define_schema(): hosts call it several times for every queued prompt (0.38: about
3 + linked inputs per node), and our loaders list model files, reading their headers. Measured in a real ComfyUI's
Python with a crowded models folder: 200 files in diffusion_models (FLUX-like safetensors headers of 800 tensors,
sparse, plus .bin and .gguf names) and 20 AR folders; once with the pack's caches, once with them emptied before
every call (how every call behaved before Dec 2026), side by side.

    COMFYUI_PATH=~/ComfyUI ~/ComfyUI/venv/bin/python benchmarks/schema_cost.py [--prompts 20]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CALLS_PER_PROMPT = 3  # per node: validation, input data, execution (0.38's count for a node without links)


def crowd(models: Path, n_files: int, n_folders: int) -> None:
    dm = models / "diffusion_models"
    dm.mkdir(parents=True)
    header = {f"double_blocks.{i // 40}.t{i}.weight": {"dtype": "BF16", "shape": [3072, 3072],
                                                       "data_offsets": [0, 2]} for i in range(800)}
    raw = json.dumps(header).encode()
    raw += b" " * (-len(raw) % 8)
    for i in range(n_files):
        ext = (".safetensors", ".safetensors", ".safetensors", ".gguf", ".bin")[i % 5]
        path = dm / f"model_{i:03d}{ext}"
        with open(path, "wb") as f:
            f.write(len(raw).to_bytes(8, "little") + raw)
            f.truncate(8 + len(raw) + 2)
    for i in range(n_folders):
        folder = models / ("nexus_gen" if i % 2 else "LLM") / f"folder_{i:02d}"
        folder.mkdir(parents=True)
        (folder / "config.json").write_text(json.dumps({"model_type": "qwen2_5_vl" if i % 4 else "llama",
                                                        "vision_config": {}}))
        (folder / "model.safetensors").write_bytes(len(raw).to_bytes(8, "little") + raw)


def crowd_parser(doc: str) -> argparse.ArgumentParser:
    """The options of the per-prompt benchmarks: how many prompts, and how crowded the models folder is."""
    p = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    p.add_argument("--prompts", type=int, default=20)
    p.add_argument("--files", type=int, default=200, help="files in diffusion_models")
    p.add_argument("--folders", type=int, default=20, help="model folders (nexus_gen, LLM)")
    return p


def main(argv=None) -> int:
    p = crowd_parser(__doc__)
    a = p.parse_args(argv)
    comfy = os.environ.get("COMFYUI_PATH")
    if not comfy:
        p.error("set COMFYUI_PATH to a ComfyUI checkout and run with its Python")
    sys.path.insert(0, str(REPO / "tests" / "comfyui"))
    from host_probe import import_pack

    tmp = Path(tempfile.mkdtemp(prefix="nexus-schema-"))
    crowd(tmp / "models", a.files, a.folders)
    import_pack(comfy, str(REPO))
    import folder_paths
    folder_paths.add_model_folder_path("diffusion_models", str(tmp / "models" / "diffusion_models"), is_default=True)
    for name in ("nexus_gen", "LLM"):
        folder_paths.add_model_folder_path(name, str(tmp / "models" / name), is_default=True)
    from nexus_pack.nodes import memory, paths

    from nexus_pack.nodes import NexusGenExtension
    import asyncio
    classes = asyncio.run(NexusGenExtension().get_node_list())

    def one_prompt(cached: bool) -> float:
        t = time.perf_counter()
        for _ in range(CALLS_PER_PROMPT):
            for cls in classes:
                if not cached:  # every call as before Dec 2026: nothing remembered
                    paths._FILE_FACTS.clear()
                    paths._FOLDER_FACTS.clear()
                    paths._LISTS.clear()
                    memory._DEVICE_OPTIONS.clear()
                cls.define_schema()
        return time.perf_counter() - t

    rows = []
    for label, cached in (("without the caches (before)", False), ("with the caches", True)):
        first = one_prompt(cached)
        times = sorted(one_prompt(cached) for _ in range(a.prompts))
        rows.append((label, first, times[len(times) // 2], times[-1]))
    print(f"machine: {platform.node()}, {os.cpu_count()} cores, Python {platform.python_version()}; host {comfy}")
    print(f"{len(classes)} node classes x {CALLS_PER_PROMPT} define_schema() calls per prompt; {a.files} files in "
          f"diffusion_models, {a.folders} model folders\n")
    print("| | first prompt ms | per prompt ms (median) | per prompt ms (worst) |")
    print("|---|---|---|---|")
    for label, first, med, worst in rows:
        print(f"| {label} | {first * 1e3:.1f} | {med * 1e3:.1f} | {worst * 1e3:.1f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
