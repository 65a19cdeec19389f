"""ComfyUI-Distributed (robertvoy/ComfyUI-Distributed, COMFYUI_DISTRIBUTED): a master and two workers, each a real
ComfyUI in its own process on this machine (distributed_cluster.py), queued through the engine's own API with the
example client. Each process's image must be, bit for bit, the one a single ComfyUI makes with that process's seed
(the master's seed, worker k's seed + k); the editing workflow's input image must reach the workers; a text-only
workflow runs on the master alone; a worker that is down is skipped and one restarted takes part again; a prompt
refused anywhere runs nowhere. The AR samples for real in this cluster, so its seed shows in each image."""
import io
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from workflow_format import shrink

REPO = Path(__file__).resolve().parents[2]
API = REPO / "workflows" / "api"
pytestmark = pytest.mark.comfyui
SMALL = dict(steps=2, width=64, height=64, tokens=90)
sys.path.insert(0, str(REPO / "tools"))
try:
    from api_client import prepared  # noqa: E402 - the README's example client sets the seeds
finally:
    sys.path.remove(str(REPO / "tools"))
RUNS = []  # (workflow, workers, images, equal to a single host, seconds, one image alone): printed for the notes


@pytest.fixture(scope="module")
def cluster(comfy_root, tmp_path_factory):
    engine = os.environ.get("COMFYUI_DISTRIBUTED")
    if not engine:
        pytest.skip("COMFYUI_DISTRIBUTED is not set: point it at a checkout of robertvoy/ComfyUI-Distributed")
    if not (Path(engine) / "nodes" / "collector.py").is_file():
        pytest.skip(f"COMFYUI_DISTRIBUTED={engine} is not a ComfyUI-Distributed checkout (no nodes/collector.py)")
    from distributed_cluster import Cluster
    from host_launch import copy_example

    base = tmp_path_factory.mktemp("cluster")
    example = base / "example.png"
    copy_example(comfy_root, example)
    c = Cluster(comfy_root, Path(engine), base, 2, example)
    try:
        c.start(pytest.fail)
        yield c
    finally:
        c.stop()
        for row in RUNS:
            print("distributed run:", row)


def load(name: str) -> dict:
    return shrink(json.loads((API / f"{name}.json").read_text()), **SMALL)


def distributed(prompt: dict) -> dict:
    """A base workflow made distributed the way the engine's README says: a Distributed Seed feeding every seed, a
    Distributed Collector between VAE Decode and Save Image (what nexus_gen_distributed.json does to text to
    image)."""
    top = max(int(k) for k in prompt)
    seed_id, collect_id = str(top + 1), str(top + 2)
    first = next(n["inputs"]["noise_seed"] for n in prompt.values() if "noise_seed" in n["inputs"])
    prompt[seed_id] = {"class_type": "DistributedSeed", "inputs": {"seed": first}}
    for node in prompt.values():
        for name in ("seed", "noise_seed"):
            if isinstance(node["inputs"].get(name), int) and node["class_type"] != "DistributedSeed":
                node["inputs"][name] = [seed_id, 0]
    save = next(n for n in prompt.values() if n["class_type"] == "SaveImage")
    prompt[collect_id] = {"class_type": "DistributedCollector", "inputs": {"images": save["inputs"]["images"],
                                                                           "load_balance": False}}
    save["inputs"]["images"] = [collect_id, 0]
    return prompt


def with_seed(prompt: dict, seed: int) -> dict:
    """A copy of the prompt with every seed set, as the example client sets them."""
    return prepared(json.loads(json.dumps(prompt)), None, seed)


def run_client(cluster, prompt: dict, out: Path, workers: str | None, *args):
    path = out.with_suffix(".json")
    path.write_text(json.dumps(prompt))
    cmd = [os.environ.get("COMFYUI_PYTHON", sys.executable), str(REPO / "tools" / "api_client.py"), str(path),
           "--server", cluster.master.url, "--out", str(out), *args]
    if workers is not None:
        cmd += ["--workers", workers]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=1800)


def pixels(data) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data) if isinstance(data, bytes) else data))


def single_host(cluster, prompt: dict, seed: int) -> np.ndarray:
    """The image the plain (not distributed) workflow gives with `seed`, queued on one ComfyUI directly."""
    client = cluster.client(cluster.master)
    entry = client.run(with_seed(prompt, seed))
    assert entry["status"]["status_str"] == "success", entry["status"]
    ref = next(img for o in entry["outputs"].values() for img in o.get("images", []))
    return pixels(client.image(ref))


def run_distributed(cluster, tmp_path, name: str, base: dict, seed: int, workers: str, expect: int):
    """Runs distributed(base) with `seed` through the example client; checks `expect` images, all different, each
    equal to the single-host image of its seed (master: seed, worker k: seed + k)."""
    started = time.monotonic()
    got = run_client(cluster, with_seed(distributed(json.loads(json.dumps(base))), seed), tmp_path / name, workers)
    seconds = time.monotonic() - started
    assert got.returncode == 0, got.stderr[-3000:] + cluster.master.log.read_text()[-3000:]
    images = [pixels(p) for p in sorted((tmp_path / name).glob("*.png"))]
    assert len(images) == expect, (got.stdout, got.stderr[-2000:])
    for i, a in enumerate(images):
        for b in images[i + 1:]:
            assert not np.array_equal(a, b), "two processes made the same image: the seeds were not varied"
    started = time.monotonic()
    equal = [np.array_equal(img, single_host(cluster, base, seed + k)) for k, img in enumerate(images)]
    alone = (time.monotonic() - started) / len(images)
    RUNS.append((name, workers, len(images), all(equal), round(seconds, 1), f"alone {alone:.1f} s per image"))
    assert all(equal), f"not the single host's image for seed + k, k = {[k for k, e in enumerate(equal) if not e]}"
    return images


def test_text_to_image_on_a_master_and_two_workers(cluster, tmp_path):
    """The shipped workflow (nexus_gen_distributed.json, API form) run through the engine; the base it is made
    from (text to image) run alone with each seed gives the same images."""
    shipped = load("nexus_gen_distributed")
    seed = 1234
    for node in shipped.values():
        if node["class_type"] == "DistributedSeed":
            node["inputs"]["seed"] = seed
    started = time.monotonic()
    got = run_client(cluster, shipped, tmp_path / "shipped", "1,2")
    seconds = time.monotonic() - started
    assert got.returncode == 0, got.stderr[-3000:]
    assert "sent to 2 of 2 workers" in got.stderr
    images = [pixels(p) for p in sorted((tmp_path / "shipped").glob("*.png"))]
    assert len(images) == 3
    base = load("nexus_gen_text_to_image")
    equal = [np.array_equal(img, single_host(cluster, base, seed + k)) for k, img in enumerate(images)]
    RUNS.append(("nexus_gen_distributed (shipped)", "1,2", len(images), all(equal), round(seconds, 1)))
    assert all(equal), equal
    assert len({img.tobytes() for img in images}) == 3


def test_editing_brings_its_image_to_the_workers(cluster, tmp_path):
    workers_input = [w.base / "input" for w in cluster.workers]
    assert not any((d / "example.png").exists() for d in workers_input)  # only the master has it
    run_distributed(cluster, tmp_path, "edit", load("nexus_gen_edit"), 77, "1,2", 3)
    for d in workers_input:  # the engine uploaded the master's file to each remote worker
        assert (d / "example.png").read_bytes() == (cluster.master.base / "input" / "example.png").read_bytes()


def test_a_text_only_workflow_runs_on_the_master_alone(cluster, tmp_path):
    """The collector gathers images (and audio): an understanding workflow has none, so the engine queues it on the
    master only. Its answer is the single host's."""
    prompt = with_seed(load("nexus_gen_understanding"), 5)
    got = run_client(cluster, prompt, tmp_path / "ask", "1,2")
    assert got.returncode == 0, got.stderr[-3000:]
    assert "sent to 0 of 2 workers" in got.stderr
    answer = got.stdout.strip()
    alone = cluster.client(cluster.master).run(json.loads(json.dumps(prompt)))
    texts = [t for o in alone["outputs"].values() for t in o.get("text", [])]
    assert answer and texts == [answer]
    for w in cluster.workers:
        hist = cluster.client(w).get("/history")
        assert not any(n["class_type"] == "NexusGenUnderstand" for e in hist.values()
                       for n in e["prompt"][2].values()), w.url  # an entry's prompt: [number, id, graph, ...]


def test_a_worker_down_is_skipped_and_takes_part_again_after_a_restart(cluster, tmp_path):
    base = load("nexus_gen_text_to_image")
    run_distributed(cluster, tmp_path, "before", base, 500, "1,2", 3)
    second = cluster.workers[1]
    second.stop()
    run_distributed(cluster, tmp_path, "one_down", base, 600, "1,2", 2)  # the engine pings it and skips it
    second.start(pytest.fail)  # a fresh process on the same port: nothing of the last one is needed
    run_distributed(cluster, tmp_path, "restarted", base, 700, "1,2", 3)


def test_a_prompt_refused_anywhere_runs_nowhere(cluster, tmp_path):
    bad = distributed(load("nexus_gen_text_to_image"))
    next(n for n in bad.values() if n["class_type"] == "NexusGenARLoader")["inputs"]["model"] = "../../outside/ar"
    before = [len(cluster.client(h).get("/history")) for h in (cluster.master, *cluster.workers)]
    got = run_client(cluster, bad, tmp_path / "bad", "1,2")
    assert got.returncode == 1 and "refused" in got.stderr and "'..' part" in got.stderr, got.stderr[-2000:]
    for host, n in zip((cluster.master, *cluster.workers), before):
        c = cluster.client(host)
        assert len(c.get("/history")) == n and c.get("/queue") == {"queue_running": [], "queue_pending": []}


def test_queued_plainly_the_distributed_workflow_runs_here_alone(cluster):
    """Queued with ComfyUI's own POST /prompt (the plain Queue with no worker ticked) the engine's nodes pass
    through: one image, the text-to-image workflow's for that seed."""
    shipped = with_seed(load("nexus_gen_distributed"), 321)
    entry = cluster.client(cluster.master).run(shipped)
    refs = [img for o in entry["outputs"].values() for img in o.get("images", [])]
    assert entry["status"]["status_str"] == "success" and len(refs) == 1
    alone = pixels(cluster.client(cluster.master).image(refs[0]))
    assert np.array_equal(alone, single_host(cluster, load("nexus_gen_text_to_image"), 321))
