"""A ComfyUI-Distributed cluster on this machine: a master and N workers, each a real ComfyUI (COMFYUI_PATH) in its
own process, port and folder (its own models, input, output, user), with this pack and a private copy of the engine
(COMFYUI_DISTRIBUTED, robertvoy/ComfyUI-Distributed: it writes its gpu_config.json into its own folder, so every
process gets its own). The workers are registered in the master's config as remote workers on 127.0.0.1: the
engine's local-worker launcher starts workers on CUDA devices, and remote workers are also the ones it syncs input
media to, which is what a second machine needs."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

from client import Client
from host_launch import ENGINE_NAME, Host, copy_engine, write_paths_yaml

REPO = Path(__file__).resolve().parents[2]
PACK_NAME = "ComfyUI-Nexus-Gen"
# The tiny AR's own generation config is effectively greedy (top_k 1, like the real one): the AR's seed would change
# nothing. The cluster's AR samples for real, so that its seed shows in every image.
HOT_SAMPLING = {"do_sample": True, "temperature": 1.5, "top_k": 0, "top_p": 1.0, "repetition_penalty": 1.0}


def make_models(models: Path) -> None:
    """The tiny model set every process gets a copy of, with an AR that samples."""
    from nexus_core.synthetic import make_tiny

    make_tiny(models, seed=0, comfyui=True)
    for gen in models.glob("nexus_gen/*/generation_config.json"):
        cfg = json.loads(gen.read_text())
        cfg.update(HOT_SAMPLING)
        gen.write_text(json.dumps(cfg, indent=2))


def prepare_host(base: Path, models: Path, engine: Path, example: Path | None) -> None:
    """base/{models (a copy), custom_nodes (this pack, a copy of the engine), input, output, user, paths.yaml}."""
    for d in ("custom_nodes", "input", "output", "user"):
        (base / d).mkdir(parents=True, exist_ok=True)
    shutil.copytree(models, base / "models")
    (base / "custom_nodes" / PACK_NAME).symlink_to(REPO, target_is_directory=True)
    copy_engine(engine, base / "custom_nodes")
    if example is not None:
        shutil.copy(example, base / "input" / example.name)
    write_paths_yaml(base, base / "models", base / "custom_nodes")


def write_master_config(master: Path, workers: list[Host]) -> None:
    """The engine's config on the master: the workers, remote on 127.0.0.1, enabled."""
    config = {"master": {"host": "127.0.0.1"},
              "workers": [{"id": str(i + 1), "name": f"worker {i + 1}", "host": "127.0.0.1", "port": w.port,
                           "type": "remote", "enabled": True} for i, w in enumerate(workers)],
              # the master waits this long for a worker that is neither sending nor busy (a busy one is waited for)
              "settings": {"debug": True, "worker_timeout_seconds": 60}}
    (master / "custom_nodes" / ENGINE_NAME / "gpu_config.json").write_text(json.dumps(config, indent=2))


class Cluster:
    """master + workers (Host), their clients, and the worker ids the master's config gives them."""

    def __init__(self, comfy_root: Path, engine: Path, base: Path, n_workers: int, example: Path):
        models = base / "models_source"
        make_models(models)
        self.master = Host(comfy_root, base / "master")
        self.workers = [Host(comfy_root, base / f"worker{i + 1}") for i in range(n_workers)]
        prepare_host(self.master.base, models, engine, example)
        for w in self.workers:  # no input image: the engine must bring the master's
            prepare_host(w.base, models, engine, None)
        write_master_config(self.master.base, self.workers)
        self.worker_ids = [str(i + 1) for i in range(n_workers)]

    def start(self, fail) -> None:
        for host in (*self.workers, self.master):
            host.start(fail)

    def stop(self) -> None:
        for host in (self.master, *self.workers):
            host.stop()

    def client(self, host: Host) -> Client:
        return Client(host.url)

    def queue(self, prompt: dict, client: Client, worker_ids=None) -> tuple[int, dict]:
        """POST /distributed/queue on the master (the engine's API): the master's own prompt id back."""
        return client.post("/distributed/queue", {"prompt": prompt, "client_id": client.client_id,
                                                  "enabled_worker_ids": list(worker_ids or self.worker_ids)})
