"""Issue #22: the rules the last round's code follows, each checked against an independent statement of it: the
format's specification, the library's own behaviour, arithmetic written out here, or a spy on the call. Classes:
where weights live after each offload mode, validation bounds on both sides with the setting named, images
(EXIF on PIL objects, 16-bit rounding where floor and round differ, every array shape), durability (fsync before
rename), the safetensors and GGUF formats, the conditioning dtype handed to a host, the companions check for both
packages, and editing a batch of instructions against one reference image."""
from __future__ import annotations

import json
import math
import os
import re
import struct

import numpy as np
import pytest
import torch
from PIL import Image

from nexus_core.errors import NexusError

# --- where weights live -----------------------------------------------------------------------------------------


class _Spy:
    """Records Module.to targets instead of moving (the meta device cannot be copied back to the CPU)."""

    def __init__(self, monkeypatch):
        self.calls = []
        spy = self

        def to(module, *args, **kwargs):
            target = args[0] if args else kwargs.get("device")
            spy.calls.append((module, str(torch.device(target)) if target is not None else None))
            return module
        monkeypatch.setattr(torch.nn.Module, "to", to)


@pytest.mark.parametrize("mode,device,expected", [
    ("model", "meta", ["meta", "cpu"]),  # to the device for the stage, back to the CPU after it
    ("none", "meta", ["meta"]),  # stays on the device
    ("model", "cpu", ["cpu"]),  # on the CPU there is nowhere to go back to
    (True, "meta", ["meta", "cpu"]),  # the old boolean form means "model"
    (False, "meta", ["meta"]),
])
def test_offload_modes_move_weights_as_named(monkeypatch, mode, device, expected):
    from nexus_core.memory.offload import on_device

    a, b = torch.nn.Linear(2, 2), torch.nn.Linear(2, 2)
    spy = _Spy(monkeypatch)
    with on_device([a, b], device, mode):
        during = list(spy.calls)
    assert [t for m, t in during if m is a] == expected[:1] and [t for m, t in during if m is b] == expected[:1]
    assert [t for m, t in spy.calls if m is a] == expected and [t for m, t in spy.calls if m is b] == expected


def test_offload_moves_back_even_when_the_stage_fails(monkeypatch):
    from nexus_core.memory.offload import on_device

    a = torch.nn.Linear(2, 2)
    spy = _Spy(monkeypatch)
    with pytest.raises(RuntimeError):
        with on_device([a], "meta", "model"):
            raise RuntimeError("the stage failed")
    assert [t for _, t in spy.calls] == ["meta", "cpu"]


def test_streamed_layers_bring_their_own_tensors_only_while_they_run(monkeypatch):
    """Sequential offload: during a layer's forward its own weights are the device copy, the other layer's are at
    home in CPU memory; after the forward every weight is home again. (A copy stands in for the device.)"""
    from nexus_core.memory import offload

    monkeypatch.setattr(offload, "_to_device", lambda t, device: t.clone())
    model = torch.nn.Sequential(torch.nn.Linear(3, 3), torch.nn.Linear(3, 3))
    home = [layer.weight.data_ptr() for layer in model]
    seen = []
    for i, layer in enumerate(model):  # registered before streaming's own hooks: they run while it is in place
        layer.register_forward_hook(lambda m, a, o, i=i: seen.append(
            [layer.weight.data_ptr() == home[j] for j, layer in enumerate(model)]))
    offload.stream_layers(model, "meta")  # (not cuda: that would pin memory, which needs a GPU)
    out = model(torch.ones(1, 3))
    assert seen == [[False, True], [True, False]]
    assert [layer.weight.data_ptr() for layer in model] == home and torch.isfinite(out).all()


def test_streamed_layers_keep_their_home_in_cpu_memory(monkeypatch):
    """A model that sits on an accelerator when streaming starts is moved to CPU memory first (its home copies
    are what each layer brings over): a spy on Module.to, since a CPU-only machine cannot see the move itself."""
    from nexus_core.memory import offload

    targets = []
    real_to = torch.nn.Module.to
    monkeypatch.setattr(torch.nn.Module, "to",
                        lambda self, *a, **k: (targets.append((a, k)), real_to(self, *a, **k))[1])
    model = torch.nn.Sequential(torch.nn.Linear(3, 3))
    offload.stream_layers(model, "meta")
    assert targets and torch.device(*targets[0][0]) == torch.device("cpu"), targets
    offload.stream_layers(model, "meta")  # a second call is a no-op: no second move
    assert len(targets) == 1

# --- validation bounds on both sides ------------------------------------------------------------------------------

def _check(fn, *args, **kw):
    try:
        fn(*args, **kw)
        return None
    except NexusError as e:
        return str(e)


@pytest.mark.parametrize("name,fn,ok,bad", [
    ("width", lambda v: __import__("nexus_core.settings.validate", fromlist=["x"]).check_size(v, 512), [16, 4096],
     [15, 4097]),
    ("height", lambda v: __import__("nexus_core.settings.validate", fromlist=["x"]).check_size(512, v), [16, 4096],
     [15, 4097]),
    ("steps", lambda v: __import__("nexus_core.settings.validate", fromlist=["x"]).check_steps(v), [1, 10000],
     [0, 10001]),
    ("cfg", lambda v: __import__("nexus_core.settings.validate", fromlist=["x"]).check_cfg(v), [0.0, 100.0],
     [-1e-9, 100.000001]),
    ("guidance", lambda v: __import__("nexus_core.settings.validate", fromlist=["x"]).check_guidance(v), [0.0, 100.0],
     [-0.5, 100.5]),
    ("seed", lambda v: __import__("nexus_core.settings.validate", fromlist=["x"]).check_seed(v), [0, 2**64 - 1],
     [-1, 2**64]),
    ("temperature", lambda v: __import__("nexus_core.settings.validate", fromlist=["x"]).check_sampling(temperature=v),
     [1e-5, 1e6], [9.99e-6, 0.0]),
    ("top_p", lambda v: __import__("nexus_core.settings.validate", fromlist=["x"]).check_sampling(top_p=v),
     [1e-9, 1.0], [0.0, 1.0000001]),
    ("top_k", lambda v: __import__("nexus_core.settings.validate", fromlist=["x"]).check_sampling(top_k=v), [0, 10**6],
     [-1]),
    ("repetition_penalty", lambda v: __import__("nexus_core.settings.validate", fromlist=["x"]).check_sampling(
        repetition_penalty=v), [1e-3, 1e3], [9.99e-4, 1000.001]),
    ("max_new_tokens", lambda v: __import__("nexus_core.settings.validate", fromlist=["x"]).check_sampling(
        max_new_tokens=v), [1], [0]),
])
def test_each_bound_holds_on_both_sides_and_names_the_setting(name, fn, ok, bad):
    for v in ok:
        assert _check(fn, v) is None, (name, v)
    for v in bad:
        msg = _check(fn, v)
        assert msg is not None and msg.startswith(name + " "), (name, v, msg)


@pytest.mark.parametrize("text,where", [("a\ud800b", "a lone surrogate at character 2"),
                                        ("x\udce9", "byte 0xe9 at character 2"),
                                        ("\udfff", "a lone surrogate at character 1")])
def test_text_that_is_not_utf8_is_named(text, where):
    from nexus_core.settings.validate import check_text
    with pytest.raises(NexusError, match=f"prompt is not valid UTF-8 text \\({where}\\)"):
        check_text(text, "prompt")
    assert check_text("ok \u4e2d\u6587 \U0001f98a", "prompt") == "ok \u4e2d\u6587 \U0001f98a"


def test_every_command_checks_its_settings_before_loading(tiny_root, tmp_path, capsys, monkeypatch):
    """Each model command refuses a bad shared setting (the seed, here) in one line, before anything loads."""
    import nexus_core.ar
    import nexus_core.decoder
    from nexus_core.cli import main

    def tripwire(*a, **k):
        raise AssertionError("a model was loaded before the bad setting was refused")
    monkeypatch.setattr(nexus_core.ar, "load_ar", tripwire)
    monkeypatch.setattr(nexus_core.decoder, "load_decoder", tripwire)
    img = tmp_path / "i.png"
    Image.new("RGB", (32, 32)).save(img)
    m, f = str(tiny_root / "Nexus-GenV2"), str(tiny_root / "FLUX.1-dev")
    commands = {
        "understand": ["understand", "--model", m, "--question", "hi"],
        "embeds": ["embeds", "--model", m, "--prompt", "cat", "--out", str(tmp_path / "e.safetensors")],
        "generate": ["generate", "--model", m, "--flux", f, "--prompt", "cat", "--cfg", "1",
                     "--out", str(tmp_path / "o.png")],
        "edit": ["edit", "--model", m, "--flux", f, "--image", str(img), "--instruction", "x",
                 "--out", str(tmp_path / "o.png")],
        "variation": ["variation", "--model", m, "--flux", f, "--image", str(img), "--out", str(tmp_path / "o.png")],
    }
    for name, argv in commands.items():
        assert main(argv + ["--seed", "-1"]) == 2, name
        assert "--seed must be at least 0, got -1" in capsys.readouterr().err, name


# --- images ------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("orientation,stored_as", [(3, Image.Transpose.ROTATE_180), (6, Image.Transpose.ROTATE_90),
                                                   (8, Image.Transpose.ROTATE_270),
                                                   (2, Image.Transpose.FLIP_LEFT_RIGHT)])
def test_exif_orientation_of_a_pil_image_passed_in(tmp_path, orientation, stored_as):
    """A PIL image handed over directly (a Python caller, a host's loaded image) is turned upright like a file:
    the camera's stored pixels plus the tag give back the picture taken."""
    from nexus_core.images.read import load_image

    picture = np.random.default_rng(orientation).integers(0, 255, (24, 40, 3), dtype=np.uint8)
    exif = Image.Exif()
    exif[0x0112] = orientation
    path = tmp_path / f"o{orientation}.png"
    Image.fromarray(picture).transpose(stored_as).save(path, exif=exif)
    with Image.open(path) as im:
        got = np.asarray(load_image(im))
    assert got.shape == picture.shape and np.array_equal(got, picture)


def test_16bit_to_8bit_rounds_to_nearest():
    """v / 257 rounded: values where floor and round disagree (e.g. 385 / 257 = 1.498 -> 1, 386 / 257 = 1.502 -> 2,
    65535 -> 255, 128 -> 0, 129 -> 1), written out here."""
    from nexus_core.images.read import load_image

    values = np.array([[0, 128, 129, 385, 386, 32767, 32768, 65407, 65408, 65535]], dtype=np.uint16)
    want = [int(math.floor(v / 257 + 0.5)) for v in values[0]]
    assert want == [0, 0, 1, 1, 2, 127, 128, 255, 255, 255]  # 129, 386, 32768, 65407: floor would say one less
    assert np.asarray(load_image(values))[0, :, 0].tolist() == want


@pytest.mark.parametrize("shape,dtype,expect", [
    ((4, 5), np.uint8, "grey"), ((4, 5, 1), np.uint8, "grey"), ((4, 5, 3), np.uint8, "rgb"),
    ((4, 5, 4), np.uint8, "rgba"), ((4, 5), np.bool_, "grey"), ((4, 5, 3), np.float32, "rgb"),
    ((4, 5), np.float64, "grey"), ((4, 5, 3), np.uint16, "rgb16")])
def test_every_array_shape(shape, dtype, expect):
    from nexus_core.images.read import load_image

    rng = np.random.default_rng(1)
    if dtype == np.bool_:
        arr = rng.integers(0, 2, shape).astype(bool)
        eight = arr.astype(np.uint8) * 255
    elif dtype in (np.float32, np.float64):
        arr = rng.random(shape).astype(dtype)
        eight = np.floor(arr.astype(np.float64) * 255 + 0.5).astype(np.uint8)
    elif dtype == np.uint16:
        arr = rng.integers(0, 65536, shape).astype(np.uint16)
        eight = np.floor(arr / 257 + 0.5).astype(np.uint8)
    else:
        arr = rng.integers(0, 256, shape).astype(np.uint8)
        eight = arr
    got = np.asarray(load_image(arr)).astype(int)
    assert got.shape == (4, 5, 3)
    if expect == "rgba":  # composited on white: a + (255 - a) * (1 - alpha)
        a = eight[..., 3:4].astype(float) / 255
        want = np.floor(eight[..., :3] * a + 255 * (1 - a) + 0.5)
        assert np.abs(got - want).max() <= 1
    else:
        grey = eight.reshape(4, 5, -1)
        want = np.repeat(grey, 3, axis=2) if grey.shape[2] == 1 else grey
        assert np.array_equal(got, want.astype(int))


@pytest.mark.parametrize("shape", [(4,), (2, 3, 4, 5), (4, 5, 2), (4, 5, 5)])
def test_array_shapes_that_are_not_images(shape):
    from nexus_core.images.read import load_image
    with pytest.raises(NexusError, match=re.escape(f"got shape {tuple(shape)}")):
        load_image(np.zeros(shape, dtype=np.uint8))


# --- durability and formats ----------------------------------------------------------------------------------------

def test_the_data_reaches_the_disk_before_the_rename(tmp_path, monkeypatch):
    """A crash after the rename must not leave a named file with missing data: fsync of the temp file comes first."""
    from nexus_core.files import atomic

    events = []
    real_fsync, real_replace = os.fsync, os.replace
    monkeypatch.setattr(atomic.os, "fsync", lambda fd: (events.append("fsync"), real_fsync(fd))[1])
    monkeypatch.setattr(atomic.os, "replace", lambda a, b: (events.append(("replace", os.path.getsize(a))),
                                                            real_replace(a, b))[1])
    with atomic.atomic_write(tmp_path / "f.bin") as tmp:
        tmp.write_bytes(b"12345")
    assert events == ["fsync", ("replace", 5)]


def test_our_safetensors_follow_the_format(tmp_path):
    """The format: 8-byte little-endian header size, a JSON header padded with spaces to a multiple of 8, data
    offsets relative to the data area, contiguous and in order, each tensor's bytes as little-endian values."""
    from nexus_core.files.safetensors_write import write_safetensors

    tensors = {"a": torch.arange(3, dtype=torch.int8), "b": torch.tensor([1.5, -2.0], dtype=torch.float32),
               "c": torch.tensor([[1, 2]], dtype=torch.int64), "d": torch.tensor([0.5], dtype=torch.bfloat16)}
    path = write_safetensors(tmp_path / "x.safetensors", tensors, {"k": "v"})
    raw = path.read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    assert n % 8 == 0 and raw[8 + n - 1:8 + n] in (b" ", b"}")
    header = json.loads(raw[8:8 + n])
    assert header.pop("__metadata__") == {"k": "v"}
    spans = sorted((v["data_offsets"], k) for k, v in header.items())
    assert spans[0][0][0] == 0 and all(a[0][1] == b[0][0] for a, b in zip(spans, spans[1:]))
    assert spans[-1][0][1] == len(raw) - 8 - n
    data = raw[8 + n:]
    b = header["b"]["data_offsets"]
    assert struct.unpack("<2f", data[b[0]:b[1]]) == (1.5, -2.0) and header["b"]["dtype"] == "F32"
    c = header["c"]["data_offsets"]
    assert struct.unpack("<2q", data[c[0]:c[1]]) == (1, 2) and header["c"]["shape"] == [1, 2]
    for k in header:  # every tensor starts at a multiple of its element size
        assert header[k]["data_offsets"][0] % tensors[k].element_size() == 0, k


def test_gguf_keeps_small_and_1d_tensors_in_float_at_the_threshold():
    """GGUF loaders' convention: tensors of at most 1024 values, and 1-D ones, stay F32; rows that do not split
    into whole blocks fall back to F16; the rest takes the asked type."""
    gguf = pytest.importorskip("gguf")
    from nexus_core.decoder.gguf_file import SMALL, _qtype

    T = gguf.GGMLQuantizationType
    assert SMALL == 1024
    assert _qtype("w", (32, 32), "Q8_0", gguf) == T.F32  # exactly 1024 values
    assert _qtype("w", (33, 32), "Q8_0", gguf) == T.Q8_0  # 1056 values
    assert _qtype("w", (4096,), "Q8_0", gguf) == T.F32  # 1-D, however long
    assert _qtype("w", (64, 48), "Q4_0", gguf) == T.F16  # 48 is not a whole number of 32-value blocks
    assert _qtype("w", (64, 64), "Q4_0", gguf) == T.Q4_0


# --- what crosses into the host --------------------------------------------------------------------------------------

def test_conditioning_handed_to_a_host_is_float32(decoders):
    """A host casts the context to its own compute dtype: we hand over float32 (not the projector's bf16), so no
    precision is lost before that, and the pooled vector likewise."""
    import copy

    from nexus_core.embeddings.conditioning import positive

    projector = copy.deepcopy(decoders["gen"].projector).to(torch.bfloat16)
    target = torch.randn(1, 81, projector[0].in_features)
    ctx, cond, grids = positive("generation", projector, target, None, torch.randn(1, 16, dtype=torch.bfloat16), 3.5)
    assert ctx.dtype == torch.float32 and cond["pooled_output"].dtype == torch.float32 and grids is None
    assert ctx.device.type == "cpu" and cond["guidance"] == 3.5


# --- the companions check, for each companion --------------------------------------------------------------------------

def test_a_broken_torchaudio_is_hidden_and_named_beside_a_working_torchvision(tmp_path, monkeypatch, caplog):
    """torchaudio gets the same check as torchvision (test_companions.py): installed but unable to import, it is
    hidden from transformers with one message naming it, while a working torchvision stays loaded."""
    import sys

    from nexus_core.loading.companions import hide_broken_companions

    if any(sys.modules.get(n) is not None for n in ("torchvision", "torchaudio")):
        pytest.skip("a real torchvision/torchaudio is loaded in this process")
    for name, body in (("torchaudio", "raise RuntimeError('operator torchaudio::x does not exist')\n"),
                       ("torchvision", "__version__ = '0.0.0+fake'\n")):
        (tmp_path / name).mkdir()
        (tmp_path / name / "__init__.py").write_text(body)
        monkeypatch.delitem(sys.modules, name, raising=False)
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        with caplog.at_level("WARNING"):
            assert hide_broken_companions(force=True) == ["torchaudio"]
        assert sys.modules["torchaudio"] is None and sys.modules["torchvision"].__version__ == "0.0.0+fake"
        said = [r.getMessage() for r in caplog.records if "does not work with torch" in r.getMessage()]
        assert len(said) == 1 and said[0].startswith("torchaudio is installed")
    finally:
        for name in ("torchaudio", "torchvision"):
            sys.modules.pop(name, None)


# --- editing with batches ------------------------------------------------------------------------------------------

def test_a_batch_of_instructions_against_one_reference_image(fixture_ar):
    """Several instructions on one image give one embedding set each, equal to editing them one at a time."""
    from nexus_core.ar import editing_request, predict

    img = Image.fromarray(np.random.default_rng(3).integers(0, 255, (40, 56, 3), dtype=np.uint8))
    texts = ["make it red", "add a hat", "turn it into a painting"]
    batch = predict(fixture_ar, [editing_request(fixture_ar, img, t) for t in texts], mode="fast").embeddings
    assert batch.shape[0] == 3
    for i, t in enumerate(texts):
        one = predict(fixture_ar, [editing_request(fixture_ar, img, t)], mode="fast").embeddings
        torch.testing.assert_close(batch[i:i + 1], one, atol=1e-4, rtol=1e-4)
    assert not torch.allclose(batch[0], batch[1])
