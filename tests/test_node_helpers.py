"""Helpers behind the nodes that need no ComfyUI: folder discovery, decoder detection, tokenizer lookup, blending."""
import importlib.util
import json
import os
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from nexus_core.embeddings.blend import blend
from nexus_core.errors import NexusError

REPO = Path(__file__).resolve().parents[1]


def load_paths():
    # Loaded by file: the `nodes` package needs ComfyUI, and must never be importable as a top-level `nodes`.
    spec = importlib.util.spec_from_file_location("nexus_nodes_paths", REPO / "nodes" / "inputs" / "paths.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_model_folders_finds_qwen_configs_only(tmp_path):
    paths = load_paths()
    (tmp_path / "a" / "Nexus-GenV2").mkdir(parents=True)
    (tmp_path / "a" / "Nexus-GenV2" / "config.json").write_text(json.dumps({"model_type": "qwen2_5_vl"}))
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "config.json").write_text(json.dumps({"model_type": "llama"}))
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "config.json").write_text("{broken")
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "model.safetensors.index.json").write_text("{}")  # shards but no config.json
    (tmp_path / "e").mkdir()
    (tmp_path / "e" / "notes.txt").write_text("not a model")
    # A plain Llama is not offered; a broken config or missing config.json is listed so the loader can say why.
    assert paths.model_folders([str(tmp_path)]) == ["a/Nexus-GenV2", "c", "d"]


def test_model_folders_list_single_file_ars_by_their_header(tmp_path):
    """A single-file AR (what `nexus-gen convert` writes from the AR folder) is listed as a file, told by the first
    bytes of its header, which must be what the core's writer puts there; other safetensors are not, and a folder
    holding only such a file is not listed as a shard folder."""
    import torch

    from nexus_core.ar.checkpoint import SINGLE_FILE_FORMAT, is_single_file_ar
    from nexus_core.files.safetensors_write import write_safetensors

    paths = load_paths()
    (tmp_path / "x").mkdir()
    (tmp_path / "y").mkdir()
    meta = {"format": SINGLE_FILE_FORMAT, "version": "1", "file/tokenizer.json": "{" + '"v":1,' * 1000 + '"e":0}'}
    write_safetensors(tmp_path / "x" / "nexus_fp8.safetensors", {"w": torch.zeros(2)}, meta)
    write_safetensors(tmp_path / "y" / "model.safetensors", {"w": torch.zeros(2)}, {"format": "pt"})
    assert is_single_file_ar(tmp_path / "x" / "nexus_fp8.safetensors")
    assert paths.is_ar_file(str(tmp_path / "x" / "nexus_fp8.safetensors"))
    assert paths.model_folders([str(tmp_path)]) == ["x/nexus_fp8.safetensors", "y"]

def test_listing_remembers_a_folder_only_while_it_is_unchanged(tmp_path):
    """The per-prompt listing keeps each folder's verdict while the folder and its config.json keep their mtimes:
    a config.json that appears, or is rewritten, is seen at the next listing. (mtimes set explicitly: no clock.)"""
    paths = load_paths()
    folder = tmp_path / "m"
    folder.mkdir()
    (folder / "notes.txt").write_text("not yet a model")
    os.utime(folder, ns=(1_000_000_000, 1_000_000_000))
    assert paths.model_folders([str(tmp_path)]) == []
    (folder / "config.json").write_text(json.dumps({"model_type": "llama"}))
    os.utime(folder, ns=(2_000_000_000, 2_000_000_000))
    os.utime(folder / "config.json", ns=(2_000_000_000, 2_000_000_000))
    assert paths.model_folders([str(tmp_path)]) == []  # seen, and not a Qwen2.5-VL
    (folder / "config.json").write_text(json.dumps({"model_type": "qwen2_5_vl"}))
    os.utime(folder / "config.json", ns=(3_000_000_000, 3_000_000_000))  # rewritten in place: the folder's mtime stays
    assert paths.model_folders([str(tmp_path)]) == ["m"]

def test_decoder_detection(tmp_path, tiny_root):
    from safetensors.torch import save_file

    paths = load_paths()
    ar = tiny_root / "Nexus-GenV2"
    assert paths.looks_like_decoder(str(ar / "generation_decoder.bin"))
    assert not paths.looks_like_decoder(str(ar / "model-00001-of-00002.safetensors"))
    save_file({"adapter.0.weight": torch.zeros(1)}, str(tmp_path / "d.safetensors"))
    assert paths.looks_like_decoder(str(tmp_path / "d.safetensors"))
    (tmp_path / "junk.safetensors").write_bytes(b"\xff" * 64)
    assert not paths.looks_like_decoder(str(tmp_path / "junk.safetensors"))


def test_decoder_list_follows_the_hosts_file_lists(tmp_path):
    """decoder_files keeps its answer only while the host's own lists are the same: a decoder the host lists after
    a refresh is offered at once, and the same lists ask for no header again."""
    paths = load_paths()
    root = tmp_path / "nexus_gen"
    root.mkdir()
    (root / "a_decoder.bin").write_bytes(b"")
    listed = {"nexus_gen": ["a_decoder.bin"], "diffusion_models": []}
    fp = SimpleNamespace(get_filename_list=lambda name: list(listed[name]),
                         get_full_path=lambda name, rel: str(root / rel) if name == "nexus_gen" else None)
    assert paths.decoder_files(fp) == ["a_decoder.bin"]
    (root / "edit_decoder.bin").write_bytes(b"")
    listed["nexus_gen"].append("edit_decoder.bin")
    assert paths.decoder_files(fp) == ["a_decoder.bin", "edit_decoder.bin"]
    seen = []
    fp.get_full_path = lambda name, rel: seen.append(rel)
    assert paths.decoder_files(fp) == ["a_decoder.bin", "edit_decoder.bin"] and seen == []

def test_register_keeps_existing_paths(tmp_path):
    paths = load_paths()
    fp = SimpleNamespace(models_dir=str(tmp_path), supported_pt_extensions={".bin", ".safetensors"},
                         folder_names_and_paths={"nexus_gen": (["/from/yaml"], set())})
    paths.register(fp)
    nexus, exts = fp.folder_names_and_paths["nexus_gen"]
    assert nexus == ["/from/yaml", str(tmp_path / "nexus_gen")] and ".bin" in exts
    assert fp.folder_names_and_paths["LLM"][0] == [str(tmp_path / "LLM")]


def test_tokenizer_lookup(tmp_path):
    paths = load_paths()
    f = tmp_path / "clip_l.safetensors"
    f.write_bytes(b"")
    assert paths.tokenizer_for(str(f), "/bundled") == "/bundled"
    (tmp_path / "clip_l.tokenizer").mkdir()
    assert paths.tokenizer_for(str(f), "/bundled") == str(tmp_path / "clip_l.tokenizer")


def test_blend_endpoints_and_norms():
    g = torch.Generator().manual_seed(0)
    a = torch.randn(1, 81, 64, generator=g) * 3
    b = torch.randn(1, 81, 64, generator=g)
    for method in ("slerp", "lerp"):
        torch.testing.assert_close(blend(a, b, 0.0, method), a, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(blend(a, b, 1.0, method), b, atol=1e-5, rtol=1e-5)
    mid = blend(a, b, 0.5, "slerp")
    torch.testing.assert_close(mid.norm(dim=-1), (a.norm(dim=-1) + b.norm(dim=-1)) / 2, atol=1e-4, rtol=1e-4)
    assert (blend(a, b, 0.5, "lerp").norm(dim=-1) < mid.norm(dim=-1)).float().mean() > 0.9  # lerp shrinks
    assert blend(a, a.expand(3, -1, -1), 0.3).shape == (3, 81, 64)
    with pytest.raises(NexusError, match="token count and width must match"):
        blend(a, torch.zeros(1, 324, 64), 0.5)
    with pytest.raises(NexusError, match="Unknown blend method"):
        blend(a, b, 0.5, "cubic")
