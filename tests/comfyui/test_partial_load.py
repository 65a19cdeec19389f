"""The AR on ComfyUI's cast-on-demand ops: loaded partially on a small memory budget (most layers left streamed),
it computes exactly what the plain AR computes, with 16/32-bit and with fp8 weights, and with its output head and
input table split into row blocks. Runs in ComfyUI's Python."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.comfyui
HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]


def test_partial_load_equals_full_load(comfy_root, tiny_root, tmp_path):
    out = tmp_path / "probe.json"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(HERE / "shim"), os.environ.get("PYTHONPATH", "")]))
    r = subprocess.run([os.environ.get("COMFYUI_PYTHON", sys.executable), str(HERE / "partial_load_probe.py"),
                        str(comfy_root), str(REPO), str(tiny_root / "Nexus-GenV2"), str(out)],
                       cwd=comfy_root, env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    res = json.loads(out.read_text())
    for weights in ("default", "fp8", "blocks"):
        got = res[weights]
        print(weights, got["max_abs_diff"], got["streamed_modules"], got["cast_classes"])
        assert got["streamed_modules"] >= 20, got  # the budget really left most layers to the cast path
        assert max(got["max_abs_diff"].values()) <= 1e-6, got
        assert got["same_ids"], got
        assert {"Embedding", "Conv3d"} <= set(got["cast_classes"]), got
        assert any(c.startswith("Cast") and c.endswith("RMSNorm") for c in got["cast_classes"]), got
    assert "ScaledFp8CastLinear" in res["fp8"]["cast_classes"]
    # the head and the input table split into blocks (as ARHandle.wrap does at the real widths): the host's patcher
    # streams blocks like any layer, and the outputs stay the plain AR's
    assert {"RowBlocks", "RowBlockEmbedding"} <= set(res["blocks"]["classes"]), res["blocks"]
    assert res["blocks"]["streamed_blocks"] >= 10, res["blocks"]
    assert res["flow_shift"]["max_shift_diff"] < 1e-6 and res["flow_shift"]["wrapper"], res["flow_shift"]
    assert res["rebound"] == "HostPatcher"  # the host's current patcher class, looked up when the model is made
    assert res["default"]["patcher"] == res["core_patcher"]
    assert res["fp8"]["model_size"] < 0.6 * res["default"]["model_size"]


def test_cast_layers_give_back_every_cast(comfy_root, tmp_path):
    """Our cast norm casts in the host's offloadable form and uncasts, also after a failing forward, on hosts that
    have uncast_bias_weight (0.3.68+); the legacy form only where there is nothing else (0.3.64)."""
    out = tmp_path / "pairs.json"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(HERE / "shim"), str(HERE), os.environ.get("PYTHONPATH", "")]))
    r = subprocess.run([os.environ.get("COMFYUI_PYTHON", sys.executable), str(HERE / "cast_pairs_probe.py"),
                        str(comfy_root), str(REPO), str(out)], cwd=comfy_root, env=env, capture_output=True, text=True,
                       timeout=600)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    got = json.loads(out.read_text())
    print(got)
    assert got["cast"] == 2 and got["failed_forwards"] == 1, got
    if got["host_has_uncast"]:
        assert got["offloadable"] == 2 and got["uncast"] == 2, got
    else:
        assert got["offloadable"] == 0 and got["uncast"] == 0, got
