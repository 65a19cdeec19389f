"""Start one real ComfyUI (COMFYUI_PATH) headless on 127.0.0.1 over a folder of its own (models through a paths yaml,
custom_nodes, input, output, user), and wait until it answers: shared by the one-server fixture (conftest.py) and
the ComfyUI-Distributed cluster (distributed_cluster.py)."""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
MODEL_FOLDERS = ("nexus_gen", "text_encoders", "vae", "diffusion_models", "loras", "controlnet", "style_models",
                 "clip_vision")


ENGINE_NAME = "ComfyUI-Distributed"


def copy_engine(engine: Path, nodes_dir: Path) -> Path:
    """A private copy of ComfyUI-Distributed (COMFYUI_DISTRIBUTED) in `nodes_dir`: the engine writes its config,
    gpu_config.json, into its own folder, so each process gets its own and the checkout stays untouched."""
    import shutil

    dest = nodes_dir / ENGINE_NAME
    shutil.copytree(engine, dest, ignore=shutil.ignore_patterns(".git", "gpu_config.json", "__pycache__",
                                                                "node_modules"))
    return dest


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def write_paths_yaml(base: Path, models: Path, nodes_dir: Path) -> Path:
    yaml = base / "paths.yaml"
    yaml.write_text("nexus_test:\n" f"    base_path: {models}\n"
                    + "".join(f"    {name}: {name}\n" for name in MODEL_FOLDERS)
                    + f"    custom_nodes: {nodes_dir}\n")
    return yaml


READY = b"To see the GUI go to:"  # ComfyUI logs this once its server listens (0.3.64, 0.8 and 0.33 alike)


def copy_example(comfy_root: Path, path: Path) -> None:
    """The host's input/example.png, or a drawn stand-in where a deployment deleted it (the 0.33 fork)."""
    import shutil

    if (Path(comfy_root) / "input" / "example.png").exists():
        shutil.copy(Path(comfy_root) / "input" / "example.png", path)
        return
    from PIL import Image, ImageDraw
    img = Image.new("RGB", (768, 512), (230, 230, 220))
    ImageDraw.Draw(img).ellipse((200, 100, 560, 460), fill=(200, 60, 40))
    img.save(path)


class Host:
    """One ComfyUI process over `base` (which holds paths.yaml, input, output, user); start() waits until it
    listens, stop() ends it. Start it again on the same port to restart it. Its output goes to base/comfyui.log."""

    def __init__(self, comfy_root: Path, base: Path, port: int | None = None, extra_args=()):
        self.comfy_root, self.base, self.port = Path(comfy_root), Path(base), port or free_port()
        self.extra_args, self.proc, self.log = list(extra_args), None, self.base / "comfyui.log"
        self.url = f"http://127.0.0.1:{self.port}"

    def start(self, fail) -> None:
        """Starts the process and returns once it logs that it listens; calls fail(message) if it ends first.
        Waits for that line (an event: a loaded machine may take minutes), not for a time."""
        import threading

        b = self.base
        cmd = [os.environ.get("COMFYUI_PYTHON", sys.executable), "main.py", "--cpu", "--listen", "127.0.0.1",
               "--port", str(self.port), "--disable-auto-launch", "--extra-model-paths-config", str(b / "paths.yaml"),
               "--output-directory", str(b / "output"), "--input-directory", str(b / "input"),
               "--user-directory", str(b / "user"), "--database-url", "sqlite:///:memory:", *self.extra_args]
        env = dict(os.environ, PYTHONUNBUFFERED="1")  # its log lines reach us as they are written
        env["PYTHONPATH"] = os.pathsep.join([str(HERE / "shim"), env.get("PYTHONPATH", "")])
        started = time.monotonic()
        self.proc = subprocess.Popen(cmd, cwd=self.comfy_root, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     env=env)
        ready = threading.Event()

        def copy_output(out, log):  # for the process's whole life: a full pipe would stop it
            with open(log, "ab") as fh:
                for line in out:
                    fh.write(line)
                    fh.flush()
                    if READY in line:
                        ready.set()
            ready.set()  # the process ended

        threading.Thread(target=copy_output, args=(self.proc.stdout, self.log), daemon=True).start()
        ready.wait()
        if self.proc.poll() is not None:
            fail(f"ComfyUI ({self.url}) exited early:\n{self.log.read_text()[-4000:]}")
        self.started_in = time.monotonic() - started

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)  # a grace period before the kill, not a check
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
