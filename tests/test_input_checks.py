"""Checks the mutation pass found untested (tools/mutate.py survivors O12, O292, O428, O842 of its first run)."""
import importlib
import json
import shutil

import pytest
import torch
from PIL import Image

from nexus_core.ar import load_ar
from nexus_core.decoder.schedule import sigmas
from nexus_core.errors import NexusError


@pytest.fixture
def tiny_copy(tiny_root, tmp_path):
    dst = tmp_path / "ar"
    shutil.copytree(tiny_root / "Nexus-GenV2", dst)
    return dst


@pytest.mark.parametrize("weight_map", [{}, ["model-00001-of-00002.safetensors"], None])
def test_shard_index_without_a_usable_weight_map(tiny_copy, weight_map):
    index = tiny_copy / "model.safetensors.index.json"
    data = json.loads(index.read_text())
    data["weight_map"] = weight_map
    index.write_text(json.dumps(data))
    with pytest.raises(NexusError, match="has no 'weight_map'"):
        load_ar(tiny_copy)


def test_checkpoint_missing_a_standard_weight(tiny_copy):
    """A Qwen2.5-VL weight absent from the shards is an error, not a silently random-initialised tensor."""
    from safetensors.torch import load_file, save_file
    index = json.loads((tiny_copy / "model.safetensors.index.json").read_text())
    key = "model.norm.weight"
    shard = tiny_copy / index["weight_map"].pop(key)
    state = load_file(str(shard))
    del state[key]
    save_file(state, str(shard))
    (tiny_copy / "model.safetensors.index.json").write_text(json.dumps(index))
    with pytest.raises(NexusError, match="do not match the Qwen2.5-VL config: missing .*norm"):
        load_ar(tiny_copy)


@pytest.mark.parametrize("denoise", [0.0, -0.5, 1.5, 2.0])
def test_denoise_outside_0_1(denoise):
    with pytest.raises(NexusError, match="denoise must be in \\(0, 1\\]"):
        sigmas(4, denoise=denoise)
    assert sigmas(4, denoise=1.0).shape == (4,)


def test_understanding_keeps_the_question_asked_about_an_image(tiny_ar, monkeypatch):
    """The default question only fills in for an empty one (the golden case asks the default question itself)."""
    mod = importlib.import_module("nexus_core.ar.understand")
    prompts = []
    real = mod.decode
    monkeypatch.setattr(mod, "decode", lambda ar, ids, *a, **k: prompts.append(ids) or real(ar, ids, *a, **k))
    img = Image.fromarray((torch.arange(56 * 56 * 3) % 251).reshape(56, 56, 3).to(torch.uint8).numpy())
    mod.understand(tiny_ar, "Which colour is the top left corner?", img, max_new_tokens=1)
    mod.understand(tiny_ar, "", img, max_new_tokens=1)
    asked, default = (tiny_ar.tokenizer.decode(p) for p in prompts)
    assert "Which colour is the top left corner?" in asked and mod.DEFAULT_QUESTION not in asked
    assert mod.DEFAULT_QUESTION in default
