"""nexus_core.settings.validate: every setting is range-checked with a message naming it, before any model work."""
import math
import os
import subprocess
import sys

import pytest

from nexus_core.settings import validate as v
from nexus_core.errors import NexusError

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.parametrize("w,h,ok", [(16, 16, True), (4096, 4096, True), (15, 512, False), (512, 0, False),
                                    (4097, 512, False), (512, -16, False), (100000, 512, False)])
def test_size_bounds(w, h, ok):
    if ok:
        assert v.check_size(w, h) == (w, h)
    else:
        with pytest.raises(NexusError, match="width must be|height must be"):
            v.check_size(w, h)


def test_size_override_and_names():
    assert v.check_size(8192, 64, max_side=8192) == (8192, 64)
    with pytest.raises(NexusError, match=r"--width must be at most 4096, got 5000 \(raise --max-side"):
        v.check_size(5000, 64, names=("--width", "--height"), override="--max-side")
    for bad in (512.0, "512", True, None):
        with pytest.raises(NexusError, match="width must be a whole number"):
            v.check_size(bad, 512)


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
@pytest.mark.parametrize("check,name", [(v.check_cfg, "cfg"), (v.check_guidance, "guidance")])
def test_non_finite_refused(check, name, value):
    with pytest.raises(NexusError, match=f"{name} must be a finite number"):
        check(value)


def test_scale_bounds():
    assert v.check_cfg(0) == 0.0 and v.check_cfg(100) == 100.0 and v.check_guidance(3.5) == 3.5
    for bad in (-0.5, 100.5):
        with pytest.raises(NexusError, match=r"cfg must be in \[0, 100\]"):
            v.check_cfg(bad)


def test_steps():
    assert v.check_steps(1) == 1 and v.check_steps(10000) == 10000
    with pytest.raises(NexusError, match="steps must be at least 1, got 0"):
        v.check_steps(0)
    with pytest.raises(NexusError, match="steps must be at most 10000, got 10001"):
        v.check_steps(10001)


def test_seed_range_is_comfyuis_and_torch_takes_all_of_it():
    import torch
    for seed in (0, 2**63, 2**64 - 1):
        assert v.check_seed(seed) == seed
        torch.Generator().manual_seed(seed)  # the oracle: whatever we accept, torch accepts
    for bad in (-1, 2**64, 2**70):
        with pytest.raises(NexusError, match=r"seed must be at (least 0|most 18446744073709551615), got"):
            v.check_seed(bad)
    with pytest.raises(ValueError):  # and the bound is real: torch itself refuses the next value
        torch.Generator().manual_seed(2**64)


@pytest.mark.parametrize("kw,msg", [
    (dict(top_p=0.0), r"top_p must be in \(0, 1\], got 0"),
    (dict(top_p=1.5), r"top_p must be in \(0, 1\], got 1.5"),
    (dict(top_p=math.nan), "top_p must be a finite number"),
    (dict(temperature=0.0), "temperature must be greater than 0, got 0"),
    (dict(temperature=math.inf), "temperature must be a finite number"),
    (dict(top_k=-1), "top_k must be at least 0, got -1"),
    (dict(top_k=2.5), "top_k must be a whole number"),
    (dict(repetition_penalty=0), r"repetition_penalty must be in \[0.001, 1000\], got 0"),
    (dict(max_new_tokens=0), "max_new_tokens must be at least 1, got 0"),
])
def test_sampling_messages_name_the_setting(kw, msg):
    with pytest.raises(NexusError, match=msg):
        v.check_sampling(**kw)


def test_sampling_names_for_cli_flags_and_valid_values():
    v.check_sampling(temperature=0.01, top_k=0, top_p=1.0, repetition_penalty=1.05, max_new_tokens=1)
    with pytest.raises(NexusError, match=r"^--top-p must be in"):
        v.check_sampling(top_p=2.0, names={"top_p": "--top-p"})


def test_sampling_config_override_uses_the_same_checks():
    from nexus_core.ar import SamplingConfig
    with pytest.raises(NexusError, match=r"^top_p must be in \(0, 1\], got 1.5$"):
        SamplingConfig().override(top_p=1.5)
    assert SamplingConfig().override(top_p=0.5).top_p == 0.5


def test_text_with_bytes_that_are_not_utf8():
    bad = os.fsdecode(b"caf\xe9 au lait")  # how a non-UTF-8 argv byte reaches Python
    with pytest.raises(NexusError, match=r"--prompt is not valid UTF-8 text \(byte 0xe9 at character 4\)"):
        v.check_text(bad, "--prompt")
    assert v.check_text("café 你好 🦊", "prompt") == "café 你好 🦊"


def test_library_entry_points_refuse_non_utf8_text():
    from nexus_core.ar import generation_request
    with pytest.raises(NexusError, match="prompt is not valid UTF-8"):
        generation_request(os.fsdecode(b"\xff"))


@pytest.mark.parametrize("dev,msg", [("mps", "'mps' is not available"), ("xpu", "'xpu' is not available"),
                                     ("banana", "Unknown device 'banana'"), ("meta", "'meta' is not supported")])
def test_device_named_in_message(dev, msg):
    from nexus_core.memory.devices import pick_device
    with pytest.raises(NexusError, match=msg) as e:
        pick_device(dev)
    assert "usable here: cpu" in str(e.value)


def test_missing_cuda_index_named():
    import torch

    from nexus_core.memory.devices import pick_device
    n = torch.cuda.device_count() if torch.cuda.is_available() else 0
    with pytest.raises(NexusError, match=f"'cuda:{n + 2}'"):
        pick_device(f"cuda:{n + 2}")
    assert str(pick_device("cpu")) == "cpu"


def test_output_checks(tmp_path):
    (tmp_path / "exists.png").write_bytes(b"x")
    assert v.check_output(tmp_path / "new.png", image=True) == tmp_path / "new.png"
    with pytest.raises(NexusError, match="is a folder"):
        v.check_output(tmp_path)
    with pytest.raises(NexusError, match="Output folder does not exist"):
        v.check_output(tmp_path / "no" / "a.png")
    with pytest.raises(NexusError, match="needs an image file suffix"):
        v.check_output(tmp_path / "a.xyz", image=True)
    with pytest.raises(NexusError, match="already exists"):
        v.check_output(tmp_path / "exists.png", overwrite=False)
    os.link(tmp_path / "exists.png", tmp_path / "hard.png")
    with pytest.raises(NexusError, match="is the input file"):
        v.check_output(tmp_path / "hard.png", sources=[tmp_path / "exists.png"])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["exists.png", "hard.png"]  # the probe left nothing


def test_output_in_unwritable_folder(tmp_path):
    if os.geteuid() == 0:  # root writes through permission bits; /sys refuses even root
        folder = "/sys"
    else:
        folder = tmp_path / "ro"
        folder.mkdir()
        folder.chmod(0o555)
    with pytest.raises(NexusError, match="Cannot write output into"):
        v.check_output(os.path.join(folder, "a.png"))


def test_validate_imports_no_torch():
    code = "import sys, nexus_core.settings.validate, nexus_core.settings.defaults; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO,
                         env={**os.environ, "PYTHONPATH": REPO})
    assert out.stdout.strip() == "False", out.stderr
