"""What the pack costs every queued prompt in a real ComfyUI: the time POST /prompt takes to answer (the host
validates the whole graph before it answers) and GET /object_info, in a host without the pack and in the same host
with it, side by side, over a crowded models folder (200 files in diffusion_models, 20 model folders, as
benchmarks/schema_cost.py makes them).

* a core-only graph (Load VAE -> Empty SD3 Latent -> VAE Decode -> Save Image), valid in both: what the pack adds to
  prompts that do not use it;
* the text-to-image workflow (workflows/nexus_gen_text_to_image.json): what validating our nodes costs.

Each prompt is sent when the previous one has finished; the graph is the same every time, so the host answers
from its cache and runs nothing: the figure is validation and queueing only.

    COMFYUI_PATH=~/ComfyUI COMFYUI_PYTHON=~/ComfyUI/venv/bin/python python3 benchmarks/prompt_validation.py
"""
from __future__ import annotations

import importlib.util
import json
import os
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "comfyui"))
from client import Client  # noqa: E402
from workflow_format import ui_to_api  # noqa: E402


def _module(path: Path, name: str):
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


CORE = {"1": {"class_type": "VAELoader", "inputs": {"vae_name": "ae.safetensors"}},
        "2": {"class_type": "EmptySD3LatentImage", "inputs": {"width": 64, "height": 64, "batch_size": 1}},
        "3": {"class_type": "VAEDecode", "inputs": {"samples": ["2", 0], "vae": ["1", 0]}},
        "4": {"class_type": "SaveImage", "inputs": {"images": ["3", 0], "filename_prefix": "bench/core"}}}


def start(comfy: Path, base: Path, yaml: Path, nodes_dir: Path, log: Path,
          extra_args: list[str] = ()) -> tuple[subprocess.Popen, Client]:
    port = _free_port()
    cmd = [os.environ.get("COMFYUI_PYTHON", sys.executable), "main.py", "--cpu", "--listen", "127.0.0.1",
           "--port", str(port), "--disable-auto-launch", "--extra-model-paths-config", str(yaml),
           "--output-directory", str(base / "output"), "--input-directory", str(base / "input"),
           "--user-directory", str(base / "user"), "--database-url", "sqlite:///:memory:", *extra_args]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO / "tests" / "comfyui" / "shim"),
                                                         os.environ.get("PYTHONPATH", "")])}
    yaml.write_text(yaml.read_text().replace("CUSTOM_NODES", str(nodes_dir)))
    with open(log, "w") as out:  # the child keeps its own descriptor
        proc = subprocess.Popen(cmd, cwd=comfy, stdout=out, stderr=subprocess.STDOUT, env=env)
    client = Client(f"http://127.0.0.1:{port}")
    while True:  # an event, not a clock: the server answers or the process ends
        if proc.poll() is not None:
            raise RuntimeError(log.read_text()[-3000:])
        try:
            client.get("/system_stats")
            return proc, client
        except OSError:
            time.sleep(0.5)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def post_times(client: Client, prompt: dict, n: int) -> list[float]:
    times = []
    for _ in range(n + 1):
        t = time.perf_counter()
        status, body = client.queue(prompt)
        times.append(time.perf_counter() - t)
        if status != 200:
            raise RuntimeError(f"/prompt refused the graph: {json.dumps(body)[:1500]}")
        client.wait(body["prompt_id"])
    return times[1:]  # the first one also runs the graph's loaders' first listing


def get_times(client: Client, path: str, n: int) -> list[float]:
    times = []
    for _ in range(n):
        t = time.perf_counter()
        client.get(path)
        times.append(time.perf_counter() - t)
    return times


def main(argv=None) -> int:
    schema_cost = _module(REPO / "benchmarks" / "schema_cost.py", "schema_cost")
    p = schema_cost.crowd_parser(__doc__)
    a = p.parse_args(argv)
    comfy = os.environ.get("COMFYUI_PATH")
    if not comfy:
        p.error("set COMFYUI_PATH (and COMFYUI_PYTHON to its Python)")
    comfy = Path(comfy)
    tiny = _module(REPO / "tools" / "tiny_comfy.py", "tiny_comfy")
    base = Path(tempfile.mkdtemp(prefix="nexus-prompt-"))
    try:
        yaml = tiny.prepare(base, comfy)
        schema_cost.crowd(base / "crowd", a.files, a.folders)
        text = yaml.read_text().replace(str(base / "custom_nodes"), "CUSTOM_NODES")
        text += (f"crowd:\n    base_path: {base / 'crowd'}\n    diffusion_models: diffusion_models\n"
                 "    nexus_gen: nexus_gen\n    LLM: LLM\n")
        empty = base / "no_custom_nodes"
        empty.mkdir()
        rows = {}
        for label, nodes_dir in (("host without the pack", empty), ("host with the pack", base / "custom_nodes")):
            yaml.write_text(text)
            proc, client = start(comfy, base, yaml, nodes_dir, base / f"{label[:6]}.log")
            try:
                info = client.get("/object_info")
                rows[(label, "core graph: POST /prompt")] = post_times(client, CORE, a.prompts)
                if "NexusGenARLoader" in info:
                    wf = json.loads((REPO / "workflows" / "nexus_gen_text_to_image.json").read_text())
                    ours = ui_to_api(wf, info)
                    for node in ours.values():  # small, so the one real run is short
                        node["inputs"].update({k: v for k, v in {"steps": 2, "width": 64, "height": 64,
                                                                 "max_new_tokens": 100}.items() if k in node["inputs"]})
                    rows[(label, "text-to-image workflow: POST /prompt")] = post_times(client, ours, a.prompts)
                rows[(label, "GET /object_info")] = get_times(client, "/object_info", a.prompts)
            finally:
                proc.terminate()
                proc.wait(30)
    finally:
        shutil.rmtree(base, ignore_errors=True)
    version = (comfy / "comfyui_version.py").read_text().split('"')[-2] if (comfy / "comfyui_version.py").exists() \
        else "?"
    print(f"machine: {platform.node()}, {os.cpu_count()} cores, Python {platform.python_version()}; "
          f"ComfyUI {version} ({comfy}), CPU")
    print(f"{a.files} files in diffusion_models, {a.folders} model folders; {a.prompts} requests each\n")
    print("| host | request | median ms | worst ms |")
    print("|---|---|---|---|")
    for (label, what), t in rows.items():
        print(f"| {label} | {what} | {statistics.median(t) * 1e3:.1f} | {max(t) * 1e3:.1f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
