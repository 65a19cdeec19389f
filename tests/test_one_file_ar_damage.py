"""A one-file AR (`nexus-gen convert Nexus-GenV2 --out F.safetensors`) damaged or rewritten by another tool: what
the header can tell is refused before any model is built; scales that cannot be right are refused as they are
read; NaN weights never become silent NaN embeddings. The damaged copies are written with the safetensors
library's own writer (not ours)."""
import json
import shutil

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from nexus_core.errors import NexusError


@pytest.fixture(scope="module")
def one_file(tiny_root, tmp_path_factory):
    from nexus_core.cli import main

    out = tmp_path_factory.mktemp("onefile") / "nexus_fp8.safetensors"
    assert main(["convert", str(tiny_root / "Nexus-GenV2"), "--out", str(out)]) == 0
    return out


def rewrite(src, dst, change) -> None:
    """dst = src with `change(state, meta)` applied, written by safetensors' own save_file."""
    with safe_open(str(src), framework="pt") as f:
        state = {k: f.get_tensor(k) for k in f.keys()}
        meta = dict(f.metadata() or {})
    change(state, meta)
    save_file({k: v.contiguous() for k, v in state.items()}, str(dst), metadata=meta)


def a_scaled_layer(state) -> str:
    return next(k[: -len(".weight_scale")] for k in sorted(state) if k.endswith(".weight_scale")
                and "language_model" in k or k.startswith("model.layers"))


def first_scaled(state) -> str:
    return sorted(k[: -len(".weight_scale")] for k in state if k.endswith(".weight_scale"))[0]


def refused_before_build(path, pattern, monkeypatch):
    """inspect (header, config, tokenizer) refuses it; load_ar refuses it without building a model."""
    from nexus_core.ar import load_ar
    from nexus_core.ar import model as ar_model
    from nexus_core.ar.checkpoint import inspect_ar_folder

    with pytest.raises(NexusError, match=pattern):
        inspect_ar_folder(path)
    built = []
    monkeypatch.setattr(ar_model, "_load_streamed", lambda *a, **k: built.append(1))
    with pytest.raises(NexusError, match=pattern):
        load_ar(path, "cpu", "float32")
    assert built == []


def test_the_file_as_written_loads(one_file):
    from nexus_core.ar.checkpoint import inspect_ar_folder
    assert inspect_ar_folder(one_file).stored_as == "fp8_e4m3fn"


def test_a_missing_weight_scale_is_refused_from_the_header(one_file, tmp_path, monkeypatch):
    bad = tmp_path / "a.safetensors"
    name = []
    rewrite(one_file, bad, lambda s, m: name.append(first_scaled(s)) or s.pop(f"{name[0]}.weight_scale"))
    refused_before_build(bad, rf"'{name[0]}.weight' is stored as F8_E4M3.*fp8 only with a weight_scale",
                         monkeypatch)


def test_a_scale_of_the_wrong_shape_is_refused_from_the_header(one_file, tmp_path, monkeypatch):
    bad = tmp_path / "b.safetensors"

    def change(s, m):
        k = first_scaled(s) + ".weight_scale"
        s[k] = s[k][:-1].clone()
    rewrite(one_file, bad, change)
    refused_before_build(bad, r"weight_scale' is F32 \[\d+\]; a float32 scale per row", monkeypatch)


def test_an_integer_linear_weight_is_refused_from_the_header(one_file, tmp_path, monkeypatch):
    bad = tmp_path / "c.safetensors"

    def change(s, m):
        k = first_scaled(s)
        s[k + ".weight"] = s[k + ".weight"].view(torch.int8).clone()
    rewrite(one_file, bad, change)
    refused_before_build(bad, r"\.weight' is I8 \[\d+, \d+\]; a 2-D F8_E4M3 weight was expected", monkeypatch)


def test_a_vocabulary_other_than_the_configs_is_refused_from_the_header(one_file, tmp_path, monkeypatch):
    bad = tmp_path / "d.safetensors"

    def change(s, m):
        s["lm_head.weight"] = torch.cat([s["lm_head.weight"], s["lm_head.weight"][:5]])
        s["lm_head.weight_scale"] = torch.cat([s["lm_head.weight_scale"], s["lm_head.weight_scale"][:5]])
    rewrite(one_file, bad, change)
    refused_before_build(bad, r"'lm_head.weight' has shape \[\d+, \d+\], but its config.json says a vocabulary",
                         monkeypatch)


def test_metadata_without_weight_dtype_says_the_header_is_incomplete(one_file, tmp_path, monkeypatch):
    bad = tmp_path / "e.safetensors"
    rewrite(one_file, bad, lambda s, m: m.pop("weight_dtype"))
    refused_before_build(bad, r"header is incomplete \(no weight_dtype", monkeypatch)


@pytest.mark.parametrize("value", [3.0, -0.5, 0.0, float("nan"), float("inf")])
def test_a_scale_that_is_no_positive_power_of_two_is_refused(one_file, tmp_path, value):
    from nexus_core.ar import load_ar

    bad = tmp_path / "f.safetensors"
    name = []

    def change(s, m):
        name.append(first_scaled(s) + ".weight_scale")
        s[name[0]] = s[name[0]].clone()
        s[name[0]][1] = value
    rewrite(one_file, bad, change)
    with pytest.raises(NexusError, match=rf"{name[0]} holds a scale that is not a positive, finite power of two"):
        load_ar(bad, "cpu", "float32")


def test_a_stray_bias_is_refused(one_file, tmp_path):
    from nexus_core.ar import load_ar

    bad = tmp_path / "g.safetensors"

    def change(s, m):
        k = next(k[: -len(".weight_scale")] for k in sorted(s) if k.endswith("o_proj.weight_scale"))
        s[k + ".bias"] = torch.zeros(s[k + ".weight"].shape[0])
    rewrite(one_file, bad, change)
    with pytest.raises(NexusError, match=r"o_proj\.bias"):
        load_ar(bad, "cpu", "float32")


def test_nan_weights_are_named_and_never_silent_nan_embeddings(tiny_root, tmp_path, caplog):
    """A fine-tune that diverged: a NaN in a 16-bit weight. Loading to fp8 names the tensor in the log; the
    embeddings it would give are refused, not returned (a black image with exit 0)."""
    from safetensors.torch import load_file

    from nexus_core.ar import generation_request, load_ar, predict

    ar = tmp_path / "ar"
    shutil.copytree(tiny_root / "Nexus-GenV2", ar, ignore=shutil.ignore_patterns("*decoder*"))
    index = json.loads((ar / "model.safetensors.index.json").read_text())
    name = next(k for k in index["weight_map"] if k.endswith("layers.0.mlp.down_proj.weight"))
    shard = ar / index["weight_map"][name]
    state = load_file(str(shard))
    state[name] = state[name].clone()
    state[name][0, 0] = float("nan")
    save_file(state, str(shard), metadata={"format": "pt"})
    with caplog.at_level("WARNING"):
        model = load_ar(ar, "cpu", "float32", weight_dtype="fp8_e4m3fn")
    assert any(name.split(".", 1)[-1] in r.getMessage() and "NaN or inf" in r.getMessage() for r in caplog.records)
    with pytest.raises(NexusError, match="predicted NaN or inf image embeddings"):
        predict(model, [generation_request("a red fox", "en")], "fast")


def test_messages_name_the_users_file_not_the_private_folder(one_file, tmp_path):
    """A damaged packed config is reported against the one file the user has, not the temp folder it was
    unpacked into."""
    import tempfile

    from nexus_core.ar.checkpoint import inspect_ar_folder

    bad = tmp_path / "h.safetensors"
    rewrite(one_file, bad, lambda s, m: m.update({"file/config.json": "{not json"}))
    with pytest.raises(NexusError) as e:
        inspect_ar_folder(bad)
    outside = str(e.value).replace(str(tmp_path), "")
    assert str(bad) in str(e.value) and "nexus-gen-" not in outside and tempfile.gettempdir() + "/" not in outside, \
        str(e.value)


def test_a_folder_where_a_decoder_file_is_expected_says_so(tmp_path):
    from nexus_core.decoder import read_decoder

    (tmp_path / "generation_decoder.bin").mkdir()
    with pytest.raises(NexusError, match="is a folder; a decoder file was expected"):
        read_decoder(tmp_path / "generation_decoder.bin")
