"""The fp8 AR loaded tensor by tensor (ar/streamed.py) against the load-then-convert route it replaces: the same
weights, buffers and embeddings bit for bit, and every mismatch between files and config refused by name."""
from __future__ import annotations

import json
import shutil

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from nexus_core.ar import generation_request, load_ar, predict
from nexus_core.errors import NexusError


def _bits(t: torch.Tensor) -> torch.Tensor:
    return t.view(torch.uint8) if t.dtype.itemsize == 1 else t


def _same_model(a, b):
    sa, sb = a.model.state_dict(), b.model.state_dict()
    assert sorted(sa) == sorted(sb)
    for k in sa:
        assert sa[k].dtype == sb[k].dtype and torch.equal(_bits(sa[k]), _bits(sb[k])), k
    assert {n: type(m) for n, m in a.model.named_modules()} == {n: type(m) for n, m in b.model.named_modules()}


@pytest.mark.parametrize("dtype,storage", [("float32", "fp8_e4m3fn"), ("bfloat16", "fp8_e4m3fn"),
                                           ("bfloat16", "fp8_e5m2")])
def test_streamed_fp8_equals_load_then_convert(fixture_dir, dtype, storage):
    folder = fixture_dir / "nexus"
    old = load_ar(folder, "cpu", dtype, weight_dtype=storage, stream=False)
    new = load_ar(folder, "cpu", dtype, weight_dtype=storage)
    _same_model(old, new)
    assert new.vision_head.weight.dtype == getattr(torch, storage.replace("fp8_", "float8_"))
    req = [generation_request("a red fox in the snow", "en")]
    for mode in ("fast", "reference"):
        assert torch.equal(predict(old, req, mode=mode).embeddings, predict(new, req, mode=mode).embeddings), mode


def _copy_ar(src, dst):
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns("*.bin"))
    return dst


def _rewrite_shards(folder, edit):
    """Apply edit(name, tensor) -> tensor or None (drop) to every tensor; returns nothing."""
    index = json.loads((folder / "model.safetensors.index.json").read_text())
    for shard in sorted(set(index["weight_map"].values())):
        with safe_open(str(folder / shard), framework="pt") as f:
            tensors = {k: f.get_tensor(k) for k in f.keys()}
        out = {}
        for k, v in tensors.items():
            v = edit(k, v)
            if v is not None:
                out[k] = v.contiguous()
        save_file(out, str(folder / shard), metadata={"format": "pt"})
        index["weight_map"] = {k: s for k, s in index["weight_map"].items() if s != shard or k in out}
    (folder / "model.safetensors.index.json").write_text(json.dumps(index))


def test_a_bias_in_an_earlier_shard_than_its_weight(tiny_root, tmp_path):
    """Shards may split a layer: the bias waits for its weight's scales."""
    folder = _copy_ar(tiny_root / "Nexus-GenV2", tmp_path / "ar")
    index = json.loads((folder / "model.safetensors.index.json").read_text())
    tensors = {}
    for shard in sorted(set(index["weight_map"].values())):
        with safe_open(str(folder / shard), framework="pt") as f:
            tensors.update({k: f.get_tensor(k) for k in f.keys()})
        (folder / shard).unlink()
    first = {k: v for k, v in tensors.items() if k.endswith(".bias")}
    second = {k: v for k, v in tensors.items() if not k.endswith(".bias")}
    save_file(first, str(folder / "model-00001-of-00002.safetensors"), metadata={"format": "pt"})
    save_file(second, str(folder / "model-00002-of-00002.safetensors"), metadata={"format": "pt"})
    index["weight_map"] = {**{k: "model-00001-of-00002.safetensors" for k in first},
                           **{k: "model-00002-of-00002.safetensors" for k in second}}
    (folder / "model.safetensors.index.json").write_text(json.dumps(index))
    _same_model(load_ar(tiny_root / "Nexus-GenV2", "cpu", "float32", weight_dtype="fp8_e4m3fn", stream=False),
                load_ar(folder, "cpu", "float32", weight_dtype="fp8_e4m3fn"))


@pytest.mark.parametrize("edit,message", [
    (lambda k, v: None if k == "model.layers.0.mlp.up_proj.weight" else v,
     "missing ['model.language_model.layers.0.mlp.up_proj.weight']"),
    (lambda k, v: None if k == "model.layers.1.self_attn.q_proj.bias" else v,
     "missing ['model.language_model.layers.1.self_attn.q_proj.bias']"),
    (lambda k, v: v[:-1] if k == "model.layers.0.mlp.down_proj.weight" else v,
     "model.language_model.layers.0.mlp.down_proj.weight has shape"),
    (lambda k, v: v[:-1] if k == "model.norm.weight" else v, "model.language_model.norm.weight has shape"),
    (lambda k, v: torch.cat([v, v]) if k == "visual.blocks.0.attn.qkv.bias" else v,
     "model.visual.blocks.0.attn.qkv.bias has shape"),
])
def test_streamed_load_refuses_files_that_do_not_fit(tiny_root, tmp_path, edit, message):
    folder = _copy_ar(tiny_root / "Nexus-GenV2", tmp_path / "ar")
    _rewrite_shards(folder, edit)
    with pytest.raises(NexusError) as e:
        load_ar(folder, "cpu", "float32", weight_dtype="fp8_e4m3fn")
    assert message in str(e.value)


def test_an_extra_tensor_is_refused_by_name(tiny_root, tmp_path):
    folder = _copy_ar(tiny_root / "Nexus-GenV2", tmp_path / "ar")
    _rewrite_shards(folder, lambda k, v: v)
    index = json.loads((folder / "model.safetensors.index.json").read_text())
    save_file({"model.layers.9.mlp.up_proj.weight": torch.zeros(2, 2)}, str(folder / "extra.safetensors"))
    index["weight_map"]["model.layers.9.mlp.up_proj.weight"] = "extra.safetensors"
    (folder / "model.safetensors.index.json").write_text(json.dumps(index))
    with pytest.raises(NexusError, match=r"unexpected \['model.language_model.layers.9.mlp.up_proj.weight'\]"):
        load_ar(folder, "cpu", "float32", weight_dtype="fp8_e4m3fn")


def test_single_file_ar_is_the_streamed_fp8_model(fixture_dir, tmp_path, capsys):
    """`nexus-gen convert Nexus-GenV2 --out F.safetensors`: one file, loaded like the folder, bit for bit the fp8
    model the folder loads into (weights, scales, pre-divided biases, embeddings)."""
    from nexus_core.ar.checkpoint import is_single_file_ar
    from nexus_core.cli import main

    out = tmp_path / "nexus_gen_ar-fp8_e4m3fn.safetensors"
    assert main(["convert", str(fixture_dir / "nexus"), "--out", str(out)]) == 0
    assert is_single_file_ar(out) and not is_single_file_ar(fixture_dir / "nexus" / "model.safetensors.index.json")
    folder = load_ar(fixture_dir / "nexus", "cpu", "bfloat16", weight_dtype="fp8_e4m3fn")
    single = load_ar(out, "cpu", "bfloat16")
    _same_model(folder, single)
    req = [generation_request("a red fox in the snow", "en")]
    assert torch.equal(predict(folder, req, mode="reference").embeddings,
                       predict(single, req, mode="reference").embeddings)
    assert single.checkpoint.where == out and single.tokenizer("a red fox").input_ids == \
        folder.tokenizer("a red fox").input_ids


@pytest.mark.parametrize("argv,message", [
    (["--dtype", "bf16"], "converts to one file with fp8_e4m3fn or fp8_e5m2"),
    (["--layout", "gguf"], "--layout is for decoders"),
    (["--dtype", "fp8_e5m2", "--out-suffix", ".gguf"], "give --out a .safetensors name, not x.gguf"),
])
def test_single_file_convert_refusals(tiny_root, tmp_path, capsys, argv, message):
    from nexus_core.cli import main
    suffix = argv[argv.index("--out-suffix") + 1] if "--out-suffix" in argv else ".safetensors"
    argv = argv[:argv.index("--out-suffix")] if "--out-suffix" in argv else argv
    out = tmp_path / f"x{suffix}"
    assert main(["convert", str(tiny_root / "Nexus-GenV2"), "--out", str(out), *argv]) == 2
    assert message in capsys.readouterr().err and not out.exists()


def test_a_single_file_ar_that_is_cut_short(tiny_root, tmp_path):
    from nexus_core.cli import main
    out = tmp_path / "ar.safetensors"
    assert main(["convert", str(tiny_root / "Nexus-GenV2"), "--out", str(out)]) == 0
    out.write_bytes(out.read_bytes()[:-100])
    with pytest.raises(NexusError, match="truncated"):
        load_ar(out, "cpu", "float32")


def test_a_single_file_ar_keeps_its_weights_in_the_file(fixture_dir, tmp_path):
    """The one fp8 file holds the weights as they are kept: the loaded layers are views of one private map of the
    file (nothing copied at load), in the compute dtype it was written for; a tensor that needs converting (float32
    compute of a bf16 file) is read and converted instead. Writing into a loaded weight leaves the file as it was
    (copy on write), and replacing the file by a new one (rename, as every writer here does) leaves the loaded
    model as it was."""
    from nexus_core.cli import main
    from nexus_core.memory.fp8 import ScaledFp8Linear

    out = tmp_path / "ar.safetensors"
    assert main(["convert", str(fixture_dir / "nexus"), "--out", str(out)]) == 0
    size = out.stat().st_size
    before = out.read_bytes()
    ar = load_ar(out, "cpu", "bfloat16")
    fp8 = [m for m in ar.model.modules() if isinstance(m, ScaledFp8Linear)]
    assert fp8 and all(m.weight.untyped_storage().nbytes() == size for m in fp8)  # views of the whole file's map
    table = ar.language_model.embed_tokens.weight
    assert table.dtype == torch.bfloat16 and table.untyped_storage().nbytes() == size
    wide = load_ar(out, "cpu", "float32")
    assert wide.language_model.embed_tokens.weight.untyped_storage().nbytes() != size  # converted: a copy
    req = [generation_request("a red fox in the snow", "en")]
    want = predict(ar, req, mode="fast").embeddings
    with torch.no_grad():
        fp8[0].weight.zero_()  # copy on write: the file does not change
    assert out.read_bytes() == before
    again = load_ar(out, "cpu", "bfloat16")
    torch.testing.assert_close(predict(again, req, mode="fast").embeddings, want, rtol=0, atol=0)
    start = 8 + int.from_bytes(before[:8], "little")
    replacement = tmp_path / "new.safetensors"
    replacement.write_bytes(before[:start] + bytes(len(before) - start))  # the same header, every weight zero
    replacement.replace(out)  # a writer's rename: the old file stays whole for its map
    torch.testing.assert_close(predict(again, req, mode="fast").embeddings, want, rtol=0, atol=0)


def test_a_mapped_tensor_that_does_not_start_on_its_element_size_is_read(tmp_path):
    """safetensors does not promise alignment: a float32 tensor one byte past an 8-byte boundary cannot be a view of
    the map (torch would read it from the wrong bytes); it is read and copied instead, with the right values."""
    import json as _json
    import struct

    from nexus_core.files.safetensors_read import iter_stored
    from nexus_core.loading.streamed import kept

    values = torch.tensor([1.5, -2.25, 3.0e-3])
    half = torch.tensor([0.5, 7.0], dtype=torch.bfloat16)
    header = {"a": {"dtype": "U8", "shape": [1], "data_offsets": [0, 1]},
              "b": {"dtype": "F32", "shape": [3], "data_offsets": [1, 13]},
              "c": {"dtype": "BF16", "shape": [2], "data_offsets": [13, 17]}}
    text = _json.dumps(header).encode()
    text += b" " * (-len(text) % 8)  # the data starts on an 8-byte boundary, as safetensors writes it
    path = tmp_path / "odd.safetensors"
    path.write_bytes(struct.pack("<Q", len(text)) + text + b"\x07" + values.numpy().tobytes()
                     + half.view(torch.int16).numpy().tobytes())
    got = {s.name: (s.mapped(), kept(s, s.dtype)) for s in iter_stored(path, mapped=True)}
    assert got["a"][0] is not None and int(got["a"][1][0]) == 7  # one byte: any offset is aligned
    assert got["b"][0] is None and torch.equal(got["b"][1], values)  # offset 1: read, not viewed
    assert got["c"][0] is None and torch.equal(got["c"][1], half)  # offset 13: likewise for 2 bytes
