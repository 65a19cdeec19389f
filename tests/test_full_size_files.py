"""make-full-size: random models at the real sizes in the published layouts, written one tensor at a time.

The tensor lists are checked against the reference's own numbers (written out independently in
test_full_size_dry_run.py); the writers against torch.save and safetensors themselves. Writing real sizes is the
benchmark's job (benchmarks/full_size.py): here the widths are shrunk where data is written.
"""
from __future__ import annotations

import collections
import json
import zipfile

import pytest
import torch
from safetensors import safe_open

from nexus_core.cli import main
from nexus_core.errors import NexusError
from nexus_core.files.safetensors_write import write_safetensors_streamed
from nexus_core.synthetic import full_size as fs
from nexus_core.synthetic.torch_zip import write_torch_zip
from test_full_size_dry_run import adapter_spec, ar_tensor_spec, dit_spec, merger_spec


def _tensors(seed=0):
    g = torch.Generator().manual_seed(seed)
    return collections.OrderedDict([
        ("pipe.dit.a.weight", torch.randn(5, 3, generator=g).bfloat16()), ("b.bias", torch.randn(7).bfloat16()),
        ("c", torch.randn(2, 2, 2)), ("empty", torch.zeros(0, dtype=torch.bfloat16)),
        ("ids", torch.arange(6, dtype=torch.int64).reshape(2, 3))])


def test_torch_zip_equals_torch_save(tmp_path):
    """Same records with the same bytes as torch.save of the same OrderedDict (pickle, storages, end records)."""
    sd = _tensors()
    with open(tmp_path / "ref.bin", "wb") as f:
        torch.save(sd, f)
    made = []
    write_torch_zip(tmp_path / "ours.bin", [(k, tuple(v.shape), v.dtype) for k, v in sd.items()],
                    lambda name: made.append(name) or sd[name])
    assert made == list(sd)  # each tensor asked for once, in order
    ref, ours = zipfile.ZipFile(tmp_path / "ref.bin"), zipfile.ZipFile(tmp_path / "ours.bin")
    assert ours.namelist() == ref.namelist()
    for name in ref.namelist():
        assert ours.read(name) == ref.read(name), name
    for mmap in (False, True):
        back = torch.load(tmp_path / "ours.bin", weights_only=True, mmap=mmap)
        assert type(back) is collections.OrderedDict and list(back) == list(sd)
        for k, v in sd.items():
            assert back[k].dtype == v.dtype and torch.equal(back[k], v), k


def test_torch_zip_refuses_a_tensor_that_is_not_what_was_announced(tmp_path):
    with pytest.raises(ValueError, match="expected"):
        write_torch_zip(tmp_path / "x.bin", [("a", (2, 3), torch.bfloat16)], lambda n: torch.zeros(3, 2).bfloat16())


def test_streamed_safetensors_reads_back_and_keeps_alignment(tmp_path):
    sd = _tensors(1)
    asked = []
    entries = [(k, tuple(v.shape), v.dtype, lambda n: asked.append(n) or sd[n]) for k, v in sd.items()]
    write_safetensors_streamed(tmp_path / "x.safetensors", entries, {"format": "pt", "z": "1"})
    with safe_open(str(tmp_path / "x.safetensors"), framework="pt") as f:
        assert set(f.keys()) == set(sd) and f.metadata() == {"format": "pt", "z": "1"}
        for k, v in sd.items():
            assert torch.equal(f.get_tensor(k), v), k
    raw = (tmp_path / "x.safetensors").read_bytes()
    n = int.from_bytes(raw[:8], "little")
    header = json.loads(raw[8:8 + n])
    assert (8 + n) % 8 == 0  # the data area starts 8-aligned (the header is padded)
    for k, v in sd.items():
        assert header[k]["data_offsets"][0] % v.element_size() == 0, k  # each tensor aligned to its element size
    assert asked.index("ids") < asked.index("pipe.dit.a.weight")  # wider dtypes first, so the rule holds


def test_full_size_spec_is_the_reference_model():
    """At the default depths the lists are the published models' tensors, name for name and shape for shape."""
    p = fs.plan()
    assert dict(p.specs["ar"]) == ar_tensor_spec()
    assert len(p.specs["ar"]) == len(ar_tensor_spec())
    dit = {"pipe.dit." + k: v for k, v in dit_spec().items()}
    assert dict(p.specs["generation"]) == {**adapter_spec(), **dit}
    assert dict(p.specs["editing"]) == {**merger_spec(), **dit}
    gb = {k: fs.nbytes(v) / 1e9 for k, v in p.specs.items()}
    assert round(gb["ar"], 1) == 16.6 and round(gb["generation"], 1) == 23.9 and round(gb["editing"], 1) == 24.5
    assert len(fs._shards(p.specs["ar"])) == 4  # model-0000k-of-00004, as published


def test_cut_depths_keep_every_width():
    p = fs.plan(("ar", "editing"), ar_layers=2, vision_layers=3, dit_blocks=(1, 2))
    cfg = p.ar_config
    assert cfg["num_hidden_layers"] == 2 and cfg["vision_config"]["depth"] == 3
    assert cfg["vision_config"]["fullatt_block_indexes"] == [2]  # blocks 7/15/23/31 are gone: the last one is full
    ar = dict(p.specs["ar"])
    assert ar["model.embed_tokens.weight"] == (152064, 3584) and ar["lm_head.weight"] == (152064, 3584)
    assert ar["model.layers.1.mlp.down_proj.weight"] == (3584, 18944) and "model.layers.2.input_layernorm.weight" not in ar
    assert ar["visual.blocks.2.mlp.down_proj.weight"] == (1280, 3420) and "visual.blocks.3.norm1.weight" not in ar
    ed = dict(p.specs["editing"])
    assert ed["pipe.dit.single_blocks.1.to_qkv_mlp.weight"] == (7 * 3072, 3072)
    assert "pipe.dit.blocks.1.ff_a.0.weight" not in ed and "pipe.dit.single_blocks.2.norm.linear.weight" not in ed
    assert ed["embedding_merger.projector.1.weight"] == (16384, 3584)


def test_refused_before_writing_when_the_disk_is_too_small(tmp_path, monkeypatch):
    class Usage:
        free = 10 ** 9
    monkeypatch.setattr(fs.shutil, "disk_usage", lambda p: Usage)
    with pytest.raises(NexusError, match="needs 23.9 GB .* only 1.0 GB are free"):
        fs.make_full_size(tmp_path / "m", parts=("generation",))
    assert not (tmp_path / "m" / "generation_decoder.bin").exists()


@pytest.fixture
def narrow(monkeypatch):
    """The real layouts at small widths, so a test can write and load them."""
    monkeypatch.setattr(fs, "FULL_DIT", dict(hidden=256, context=32, pooled=16, in_channels=64))
    monkeypatch.setattr(fs, "CONTEXT", 32)
    cfg = json.loads(json.dumps(fs.NEXUS_AR_CONFIG))
    cfg.update(hidden_size=64, intermediate_size=128, num_attention_heads=4, num_key_value_heads=2, vocab_size=640,
               rope_scaling={"type": "default", "rope_type": "default", "mrope_section": [2, 3, 3]})
    cfg["vision_config"].update(hidden_size=32, num_heads=2, intermediate_size=64, out_hidden_size=64)
    monkeypatch.setattr(fs, "NEXUS_AR_CONFIG", cfg)
    monkeypatch.setattr(fs, "SHARD_BYTES", 100_000)


def test_written_models_load_with_the_loaders(tmp_path, narrow):
    from nexus_core.ar import load_ar, predict, generation_request
    from nexus_core.decoder import read_decoder

    out = fs.make_full_size(tmp_path, ar_layers=2, vision_layers=2, dit_blocks=(1, 1), seed=3)
    folder = out["ar"]
    index = json.loads((folder / "model.safetensors.index.json").read_text())
    shards = sorted(set(index["weight_map"].values()))
    assert len(shards) > 1 and all((folder / s).is_file() for s in shards)
    total = 0
    for shard in shards:
        with safe_open(str(folder / shard), framework="pt") as f:
            assert {k for k, v in index["weight_map"].items() if v == shard} == set(f.keys())
            total += sum(torch.Size(f.get_slice(k).get_shape()).numel() * 2 for k in f.keys())  # bf16
    assert index["metadata"]["total_size"] == total
    ar = load_ar(folder, device="cpu", dtype=torch.float32)
    cfg = json.loads((folder / "config.json").read_text())
    assert cfg["image_token_id"] == ar.tokenizer.convert_tokens_to_ids("<|image_pad|>")  # ids from the tokenizer
    emb = predict(ar, [generation_request("a red fox", "en")], mode="fast").embeddings
    assert emb.shape == (1, 81, 64) and torch.isfinite(emb).all()
    for kind in ("generation", "editing"):
        dec = read_decoder(out[kind])
        assert (dec.kind, dec.layout, dec.n_double, dec.n_single) == (kind, "diffsynth", 1, 1)
        w = dec.dit["blocks.0.attn.a_to_qkv.weight"]
        assert w.dtype == torch.bfloat16 and w.shape == (768, 256) and 0.015 < float(w.float().std()) < 0.025
    # deterministic: the same seed writes the same bytes
    again = fs.make_full_size(tmp_path / "again", parts=("generation",), dit_blocks=(1, 1), seed=3)
    assert again["generation"].read_bytes() == out["generation"].read_bytes()


@pytest.mark.parametrize("argv,msg", [
    (["--parts", "ar,vae"], "--parts takes a comma-separated subset of ar,generation,editing"),
    (["--dit-blocks", "19"], "--dit-blocks takes DOUBLE,SINGLE"),
    (["--dit-blocks", "0,38"], "--dit-blocks takes DOUBLE,SINGLE"),
    (["--ar-layers", "0"], "--ar-layers must be at least 1"),
    (["--tokenizer", "/nonexistent/tok"], "--tokenizer /nonexistent/tok is not a folder"),
])
def test_cli_refuses_bad_settings(tmp_path, capsys, argv, msg):
    assert main(["make-full-size", str(tmp_path / "m"), *argv]) == 2
    assert msg in capsys.readouterr().err
    assert not (tmp_path / "m").exists()


def test_cli_never_replaces_files(tmp_path, capsys):
    (tmp_path / "generation_decoder.bin").write_bytes(b"keep me")
    assert main(["make-full-size", str(tmp_path), "--parts", "generation"]) == 2
    assert "never replaces files" in capsys.readouterr().err
    assert (tmp_path / "generation_decoder.bin").read_bytes() == b"keep me"
