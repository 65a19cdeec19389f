"""A torchvision that cannot be imported (a CUDA build next to a CPU torch, as in a fresh ComfyUI environment here)
must not break model loading: it is hidden from transformers with one message naming it. A working one stays."""
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SCRIPT = ("import logging, sys; logging.basicConfig(level=logging.WARNING)\n"
          "import nexus_core.ar\n"
          "from transformers import Qwen2_5_VLForConditionalGeneration\n"
          "print('TV', sys.modules.get('torchvision'))\n")


def run(tmp_path, body: str, script: str = SCRIPT):
    fake = tmp_path / "site" / "torchvision"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text(body)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO), str(tmp_path / "site")]))
    return subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300)


def test_broken_torchvision_is_hidden_with_a_message(tmp_path):
    r = run(tmp_path, "raise RuntimeError('operator torchvision::nms does not exist')\n")
    assert r.returncode == 0, r.stderr[-2000:]
    assert "torchvision is installed but does not work with torch" in r.stderr
    assert "operator torchvision::nms does not exist" in r.stderr
    assert "TV None" in r.stdout


def test_working_torchvision_is_left_alone(tmp_path):
    r = run(tmp_path, "__version__ = '0.0.0+fake'\n",  # a stand-in: transformers itself needs a real one
            "import sys, nexus_core.loading.companions as c\nprint('TV', sys.modules.get('torchvision'), c.hide_broken_companions())\n")
    assert r.returncode == 0, r.stderr[-2000:]
    assert "does not work" not in r.stderr and "TV <module 'torchvision'" in r.stdout and "[]" in r.stdout


def test_too_late_once_transformers_is_imported_unless_forced(tmp_path):
    """After transformers is imported the host has decided: a broken torchvision is left as it is (it would only
    be hidden from code that already looked), unless force=True."""
    r = run(tmp_path, "raise RuntimeError('operator torchvision::nms does not exist')\n",
            "import sys, transformers, nexus_core.loading.companions as c\n"
            "print('LATE', c.hide_broken_companions())\nprint('FORCED', c.hide_broken_companions(force=True))\n")
    assert r.returncode == 0, r.stderr[-2000:]
    assert "LATE []" in r.stdout and "FORCED ['torchvision']" in r.stdout, r.stdout
