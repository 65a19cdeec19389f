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


class Host:
    """One ComfyUI process over `base` (which holds paths.yaml, input, output, user); start() waits until it
    answers, stop() ends it. Start it again on the same port to restart it."""

    def __init__(self, comfy_root: Path, base: Path, port: int | None = None, extra_args=()):
        self.comfy_root, self.base, self.port = Path(comfy_root), Path(base), port or free_port()
        self.extra_args, self.proc, self.log = list(extra_args), None, self.base / "comfyui.log"
        self.url = f"http://127.0.0.1:{self.port}"

    def start(self, fail) -> None:
        """Starts the process and returns when /system_stats answers; calls fail(message) if it ends first."""
        import urllib.request

        b = self.base
        cmd = [os.environ.get("COMFYUI_PYTHON", sys.executable), "main.py", "--cpu", "--listen", "127.0.0.1",
               "--port", str(self.port), "--disable-auto-launch", "--extra-model-paths-config", str(b / "paths.yaml"),
               "--output-directory", str(b / "output"), "--input-directory", str(b / "input"),
               "--user-directory", str(b / "user"), "--database-url", "sqlite:///:memory:", *self.extra_args]
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join([str(HERE / "shim"), env.get("PYTHONPATH", "")])
        with open(self.log, "a") as fh:
            self.proc = subprocess.Popen(cmd, cwd=self.comfy_root, stdout=fh, stderr=subprocess.STDOUT, env=env)
        started = time.monotonic()
        while True:  # an event, not a clock: the server answers, or the process ends (a loaded machine is slow)
            if self.proc.poll() is not None:
                fail(f"ComfyUI ({self.url}) exited early:\n{self.log.read_text()[-4000:]}")
            try:
                urllib.request.urlopen(self.url + "/system_stats", timeout=60).read()
                break
            except OSError:
                if time.monotonic() - started > 1800:  # only so that a hung start cannot hang the suite
                    fail(f"ComfyUI ({self.url}) did not answer in 30 minutes:\n{self.log.read_text()[-4000:]}")
                time.sleep(0.5)
        self.started_in = time.monotonic() - started

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
