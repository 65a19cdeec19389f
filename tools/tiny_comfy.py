"""Start a real ComfyUI on tiny random models with this pack loaded (as tests/comfyui/conftest.py does), for
building the workflows (tools/build_workflows.py) and taking the screenshots (tools/screenshot_workflows.js).

    COMFYUI_PATH=~/ComfyUI COMFYUI_PYTHON=~/ComfyUI/venv/bin/python [COMFYUI_GGUF=~/ComfyUI-GGUF] \\
        [COMFYUI_DISTRIBUTED=~/ComfyUI-Distributed] python tools/tiny_comfy.py --dir /tmp/nexus_comfy --port 8291

Prints the URL when the server listens, then waits; Ctrl+C (or SIGTERM) stops the server.
"""
from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "comfyui"))
from host_launch import ENGINE_NAME, Host, copy_engine, copy_example, write_paths_yaml  # noqa: E402


def prepare(base: Path, comfy: Path) -> None:
    """models (tiny), custom_nodes (this pack, ComfyUI-GGUF and ComfyUI-Distributed if given), input/example.png,
    paths.yaml."""
    from workflow_format import write_stand_ins

    models, nodes_dir = base / "models", base / "custom_nodes"
    for d in ("custom_nodes", "output", "user", "input"):
        (base / d).mkdir(parents=True, exist_ok=True)
    if not (models / "nexus_gen").is_dir():
        subprocess.run([sys.executable, "-m", "nexus_core.cli", "make-tiny", str(models), "--comfyui"], check=True,
                       cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)})
    write_stand_ins(models, (REPO / "workflows").glob("*.json"))  # the mixing workflows' LoRA, Redux, SigLIP
    links = {"ComfyUI-Nexus-Gen": REPO}
    if os.environ.get("COMFYUI_GGUF"):
        links["ComfyUI-GGUF"] = Path(os.environ["COMFYUI_GGUF"])
    for name, target in links.items():
        link = nodes_dir / name
        if not link.exists():
            link.symlink_to(target, target_is_directory=True)
    engine = os.environ.get("COMFYUI_DISTRIBUTED")  # robertvoy/ComfyUI-Distributed, for the distributed workflow
    if engine and not (nodes_dir / ENGINE_NAME).exists():
        copy_engine(Path(engine), nodes_dir)
    if not (base / "input" / "example.png").exists():
        copy_example(comfy, base / "input" / "example.png")
    write_paths_yaml(base, models, nodes_dir)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dir", default="/tmp/nexus_tiny_comfy", help="working folder (models, input, output, user)")
    p.add_argument("--port", type=int, default=8291)
    p.add_argument("host_args", nargs="*", help="after --: more ComfyUI arguments, e.g. -- --front-end-root DIR "
                   "(another frontend: pip install --target DIR2 --no-deps comfyui-frontend-package==1.49.6, "
                   "then DIR = DIR2/comfyui_frontend_package/static)")
    a = p.parse_args(argv)
    comfy = Path(os.environ["COMFYUI_PATH"])
    base = Path(a.dir).resolve()
    prepare(base, comfy)
    host = Host(comfy, base, a.port, a.host_args)
    # only end the server here: the main thread is waiting for it, and reaps it
    signal.signal(signal.SIGTERM, lambda *_: host.proc is not None and host.proc.terminate())

    def fail(message):
        print(message, file=sys.stderr)
        raise SystemExit(1)
    try:
        host.start(fail)
        print(host.url, "log:", host.log, flush=True)
        return host.proc.wait()
    except KeyboardInterrupt:
        return 0
    finally:
        host.stop()


if __name__ == "__main__":
    sys.exit(main())
