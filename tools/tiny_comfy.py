"""Start a real ComfyUI on tiny random models with this pack loaded (as tests/comfyui/conftest.py does), for
building the workflows (tools/build_workflows.py) and taking the screenshots (tools/screenshot_workflows.js).

    COMFYUI_PATH=~/ComfyUI COMFYUI_PYTHON=~/ComfyUI/venv/bin/python [COMFYUI_GGUF=~/ComfyUI-GGUF] \
        [COMFYUI_DISTRIBUTED=~/ComfyUI-Distributed] python tools/tiny_comfy.py --dir /tmp/nexus_comfy --port 8291

Prints the URL when the server answers, then waits; Ctrl+C (or SIGTERM) stops the server.
"""
from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def prepare(base: Path, comfy: Path) -> Path:
    """models (tiny), custom_nodes (this pack, ComfyUI-GGUF and ComfyUI-Distributed if given), input/example.png;
    returns the paths yaml."""
    models, nodes_dir = base / "models", base / "custom_nodes"
    for d in ("custom_nodes", "output", "user", "input"):
        (base / d).mkdir(parents=True, exist_ok=True)
    if not (models / "nexus_gen").is_dir():
        subprocess.run([sys.executable, "-m", "nexus_core.cli", "make-tiny", str(models), "--comfyui"], check=True,
                       cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)})
    sys.path.insert(0, str(REPO / "tests" / "comfyui"))
    from host_launch import ENGINE_NAME, copy_engine
    from workflow_format import write_stand_ins
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
    example = base / "input" / "example.png"
    if not example.exists():
        if (comfy / "input" / "example.png").exists():
            shutil.copy(comfy / "input" / "example.png", example)
        else:
            from PIL import Image, ImageDraw
            img = Image.new("RGB", (768, 512), (230, 230, 220))
            ImageDraw.Draw(img).ellipse((200, 100, 560, 460), fill=(200, 60, 40))
            img.save(example)
    yaml = base / "paths.yaml"
    yaml.write_text("nexus_tiny:\n"
                    f"    base_path: {models}\n"
                    "    nexus_gen: nexus_gen\n    text_encoders: text_encoders\n    vae: vae\n"
                    "    diffusion_models: diffusion_models\n    loras: loras\n    style_models: style_models\n"
                    "    clip_vision: clip_vision\n"
                    f"    custom_nodes: {nodes_dir}\n")
    return yaml


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
    yaml = prepare(base, comfy)
    cmd = [os.environ.get("COMFYUI_PYTHON", sys.executable), "main.py", "--cpu", "--listen", "127.0.0.1",
           "--port", str(a.port), "--disable-auto-launch", "--extra-model-paths-config", str(yaml),
           "--output-directory", str(base / "output"), "--input-directory", str(base / "input"),
           "--user-directory", str(base / "user"), "--database-url", "sqlite:///:memory:", *a.host_args]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO / "tests" / "comfyui" / "shim"),
                                                         os.environ.get("PYTHONPATH", "")])}
    log = open(base / "comfyui.log", "w")
    proc = subprocess.Popen(cmd, cwd=comfy, stdout=log, stderr=subprocess.STDOUT, env=env)
    signal.signal(signal.SIGTERM, lambda *_: proc.terminate())
    url = f"http://127.0.0.1:{a.port}"
    try:
        for _ in range(480):
            if proc.poll() is not None:
                print((base / "comfyui.log").read_text()[-3000:], file=sys.stderr)
                return 1
            try:
                urllib.request.urlopen(url + "/system_stats", timeout=5).read()
                break
            except OSError:
                time.sleep(0.5)
        print(url, "log:", base / "comfyui.log", flush=True)
        return proc.wait()
    except KeyboardInterrupt:
        return 0
    finally:
        if proc.poll() is None:
            proc.terminate()
            proc.wait(20)


if __name__ == "__main__":
    sys.exit(main())
