"""The API route (a real ComfyUI, COMFYUI_PATH): workflows/api/ holds each base workflow in the API format, the same
graph as its UI file (made from the same spec, so they cannot drift), and tools/api_client.py, the README's
example client, runs one with a prompt and a seed from its command line and saves what the same prompt gives."""
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from workflow_format import shrink, ui_to_api

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.comfyui


def test_each_api_file_is_its_ui_workflow(object_info):
    ui_files = sorted(p for p in (REPO / "workflows").glob("*.json") if not p.stem.endswith("_zh"))
    api_files = sorted((REPO / "workflows" / "api").glob("*.json"))
    assert [p.stem for p in api_files] == [p.stem for p in ui_files]
    if "DistributedSeed" not in object_info:  # its nodes' inputs come from the engine (COMFYUI_DISTRIBUTED)
        ui_files, api_files = ([p for p in files if p.stem != "nexus_gen_distributed"] for files in (ui_files, api_files))
    def graph(prompt):  # titles (_meta) are display names, which differ between host versions: not the graph
        return {k: {f: v for f, v in n.items() if f != "_meta"} for k, n in prompt.items()}
    for ui, api in zip(ui_files, api_files):
        assert graph(json.loads(api.read_text())) == graph(ui_to_api(json.loads(ui.read_text()), object_info)), \
            api.name


def run_client(client, workflow: Path, out: Path, *args):
    return subprocess.run([os.environ.get("COMFYUI_PYTHON", sys.executable), str(REPO / "tools" / "api_client.py"),
                           str(workflow), "--server", client.base, "--out", str(out), *args],
                          capture_output=True, text=True, timeout=1200)


def test_the_example_client_runs_a_workflow_with_its_prompt_and_seed(comfy_server, tmp_path):
    client, _, _ = comfy_server
    sys.path.insert(0, str(REPO / "tools"))
    try:
        from api_client import prepared
    finally:
        sys.path.remove(str(REPO / "tools"))
    small = shrink(json.loads((REPO / "workflows" / "api" / "nexus_gen_text_to_image.json").read_text()),
                   steps=2, width=64, height=64, tokens=90)
    path = tmp_path / "t2i.json"
    path.write_text(json.dumps(small))
    got = run_client(client, path, tmp_path / "out", "--prompt", "a lighthouse at dusk", "--seed", "123")
    assert got.returncode == 0, got.stderr[-2000:]
    saved = sorted((tmp_path / "out").glob("*.png"))
    assert len(saved) == 1 and "saved" in got.stdout
    # the same graph with the same prompt and seed, queued directly, gives the same picture
    direct = prepared(json.loads(json.dumps(small)), "a lighthouse at dusk", 123)
    entry = client.run(direct)
    ref = next(img for o in entry["outputs"].values() for img in o.get("images", []))
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(client.image(ref)))), np.asarray(Image.open(saved[0])))
    # a prompt the server refuses: exit 1 with the server's reason
    bad = run_client(client, path, tmp_path / "out2", "--prompt", "   ")
    assert bad.returncode == 1 and "prompt: it is empty" in bad.stderr, bad.stderr[-2000:]
