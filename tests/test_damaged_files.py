"""Files that others made, or that a disk, a download or a tool damaged: one safetensors header reader refuses
each damage before any tensor is read, naming the file and the tensor; a sharded AR's index is honoured.

The files are written by hand (raw header bytes), not by our writer or safetensors', so the damage is exactly
the one named."""
import json
import shutil
import struct

import pytest
import torch

from nexus_core.errors import NexusError
from nexus_core.files.safetensors_check import read_header


def raw_file(path, header, data: bytes = b"", pad: int = 0) -> None:
    text = json.dumps(header).encode() + b" " * pad
    path.write_bytes(struct.pack("<Q", len(text)) + text + data)


F32_2 = {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}


def test_a_sound_hand_made_file_is_read(tmp_path):
    p = tmp_path / "ok.safetensors"
    raw_file(p, {"__metadata__": {"format": "pt"}, "a": F32_2,
                 "b": {"dtype": "BF16", "shape": [2, 1], "data_offsets": [8, 12]},
                 "empty": {"dtype": "F16", "shape": [0, 3], "data_offsets": [12, 12]}}, bytes(12), pad=5)
    assert set(read_header(p)) == {"__metadata__", "a", "b", "empty"}


@pytest.mark.parametrize("header,data,pattern", [
    ([1, 2], b"", r"header is a JSON list, not an object"),
    ({"__metadata__": ["x"], "a": F32_2}, bytes(8), r"__metadata__ must be an object of strings"),
    ({"__metadata__": {"n": 3}, "a": F32_2}, bytes(8), r"__metadata__ must be an object of strings"),
    ({"a": {"dtype": "F32", "shape": [2]}}, bytes(8), r"tensor 'a' has data_offsets None"),
    ({"a": "F32"}, bytes(8), r"tensor 'a' has no dtype, shape and data_offsets"),
    ({"a": {"dtype": "F32", "shape": [2], "data_offsets": [-8, 0]}}, bytes(8), r"tensor 'a' has data_offsets"),
    ({"a": {"dtype": "F32", "shape": [2], "data_offsets": [8, 0]}}, bytes(8), r"tensor 'a' has data_offsets"),
    ({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0.0, 8]}}, bytes(8), r"tensor 'a' has data_offsets"),
    ({"a": {"dtype": "F32", "shape": [-2], "data_offsets": [0, 8]}}, bytes(8), r"tensor 'a' has shape \[-2\]"),
    ({"a": {"dtype": "U16", "shape": [4], "data_offsets": [0, 8]}}, bytes(8), r"tensor 'a' has dtype 'U16'"),
    ({"a": {"dtype": "F8_E4M3FNUZ", "shape": [8], "data_offsets": [0, 8]}}, bytes(8), r"dtype 'F8_E4M3FNUZ'"),
    ({"a": {"dtype": "F32", "shape": [3], "data_offsets": [0, 8]}}, bytes(8), r"'a': its data_offsets span 8 bytes"),
    ({"a": F32_2, "b": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]}}, bytes(12),
     r"tensor 'b' overlaps the tensor stored before it"),
    ({"a": F32_2, "b": {"dtype": "F32", "shape": [2], "data_offsets": [12, 20]}}, bytes(20),
     r"4 bytes before tensor 'b' belong to no tensor"),
    ({"a": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]}}, bytes(12), r"4 bytes before tensor 'a'"),
    ({"a": F32_2}, bytes(12), r"4 bytes after the last tensor belong to no tensor"),
    ({"a": F32_2}, bytes(6), r"is truncated: its tensors need 8 bytes of data but the file holds 6"),
])
def test_each_damage_is_refused_naming_the_file(tmp_path, header, data, pattern):
    p = tmp_path / "damaged.safetensors"
    raw_file(p, header, data)
    with pytest.raises(NexusError, match=pattern) as e:
        read_header(p)
    assert str(p) in str(e.value)


def test_out_of_order_offsets_that_tile_are_fine(tmp_path):
    """The format does not ask for header order = data order; only that the data section is tiled."""
    p = tmp_path / "order.safetensors"
    raw_file(p, {"b": {"dtype": "F32", "shape": [2], "data_offsets": [8, 16]}, "a": F32_2}, bytes(16))
    assert set(read_header(p)) == {"a", "b"}


def test_a_folder_and_an_unreadable_file_are_said_as_such(tmp_path):
    with pytest.raises(NexusError, match="is a folder; a safetensors file was expected"):
        read_header(tmp_path)
    p = tmp_path / "locked.safetensors"
    raw_file(p, {"a": F32_2}, bytes(8))
    import os
    if os.geteuid() == 0:
        pytest.skip("root reads files without read permission")
    p.chmod(0)
    with pytest.raises(NexusError, match="permission denied"):
        read_header(p)


def test_every_reader_goes_through_the_header_check(tmp_path, tiny_root):
    """LoRA conversion, text encoders, decoders and AR shards all refuse the same damaged header."""
    from nexus_core.ar.checkpoint import inspect_ar_folder
    from nexus_core.decoder import read_decoder
    from nexus_core.flux.lora_layouts import convert_lora_file
    from nexus_core.flux.text_encoders import _state as read_state

    bad = tmp_path / "bad.safetensors"
    raw_file(bad, {"a": F32_2, "b": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]}}, bytes(12))
    for call in (lambda: convert_lora_file(bad, tmp_path / "out.safetensors"), lambda: read_state(bad),
                 lambda: read_decoder(bad)):
        with pytest.raises(NexusError, match="overlaps the tensor stored before it"):
            call()
    ar = tmp_path / "ar"
    shutil.copytree(tiny_root / "Nexus-GenV2", ar, ignore=shutil.ignore_patterns("*decoder*"))
    shard = sorted(ar.glob("model-*.safetensors"))[0]
    data = shard.read_bytes()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + n])
    first = next(k for k in header if k != "__metadata__")
    header[first]["data_offsets"][1] += 2  # the span no longer matches the shape
    raw_file(shard, header, data[8 + n:])
    with pytest.raises(NexusError, match=f"tensor '{first}': its data_offsets span"):
        inspect_ar_folder(ar)


# --- a sharded AR's index is honoured ------------------------------------------------------------------------------

def _shards(ar):
    index = json.loads((ar / "model.safetensors.index.json").read_text())
    return index, sorted(ar.glob("model-*.safetensors"))


def _copy_tensor_into(src_shard, name, dst_shard):
    from safetensors.torch import load_file, save_file
    t = load_file(str(src_shard))[name]
    dst = load_file(str(dst_shard))
    dst[name] = t.clone()
    save_file(dst, str(dst_shard), metadata={"format": "pt"})


@pytest.fixture
def ar_copy(tmp_path, tiny_root):
    ar = tmp_path / "ar"
    shutil.copytree(tiny_root / "Nexus-GenV2", ar, ignore=shutil.ignore_patterns("*decoder*"))
    index, shards = _shards(ar)
    assert len(shards) >= 2, "the tiny AR is written in shards"
    return ar


def test_a_tensor_in_two_shards_is_refused(ar_copy):
    from nexus_core.ar.checkpoint import inspect_ar_folder

    index, shards = _shards(ar_copy)
    name = next(k for k, v in index["weight_map"].items() if v == shards[0].name)
    _copy_tensor_into(shards[0], name, shards[1])
    with pytest.raises(NexusError, match=f"Tensor '{name}' is in two shards .*{shards[0].name} and {shards[1].name}"):
        inspect_ar_folder(ar_copy)


def test_the_index_and_the_shards_must_agree(ar_copy):
    from nexus_core.ar.checkpoint import inspect_ar_folder

    inspect_ar_folder(ar_copy)  # as written: they agree
    path = ar_copy / "model.safetensors.index.json"
    index, shards = _shards(ar_copy)
    name = next(k for k, v in index["weight_map"].items() if v == shards[0].name)
    moved = json.loads(json.dumps(index))
    moved["weight_map"][name] = shards[1].name
    path.write_text(json.dumps(moved))
    with pytest.raises(NexusError, match=f"lists tensor '{name}' in {shards[1].name}, but it is in {shards[0].name}"):
        inspect_ar_folder(ar_copy)
    missing = json.loads(json.dumps(index))
    missing["weight_map"]["model.made_up.weight"] = shards[0].name
    path.write_text(json.dumps(missing))
    with pytest.raises(NexusError, match="lists tensor 'model.made_up.weight'.*no shard holds it"):
        inspect_ar_folder(ar_copy)
    fewer = json.loads(json.dumps(index))
    del fewer["weight_map"][name]
    path.write_text(json.dumps(fewer))
    with pytest.raises(NexusError, match=f"holds tensor '{name}'.*does not list"):
        inspect_ar_folder(ar_copy)
    outside = json.loads(json.dumps(index))
    outside["weight_map"][name] = "../elsewhere/" + shards[0].name
    path.write_text(json.dumps(outside))
    with pytest.raises(NexusError, match="names a shard '../elsewhere/"):
        inspect_ar_folder(ar_copy)


def test_the_streamed_fp8_load_and_the_bf16_load_both_refuse_a_doubled_tensor(ar_copy):
    from nexus_core.ar import load_ar

    index, shards = _shards(ar_copy)
    name = next(k for k, v in index["weight_map"].items() if v == shards[1].name)
    _copy_tensor_into(shards[1], name, shards[0])
    for weight_dtype in (None, "fp8_e4m3fn"):
        with pytest.raises(NexusError, match="is in two shards"):
            load_ar(ar_copy, device="cpu", dtype=torch.float32, weight_dtype=weight_dtype)


# --- decoders read in place: each storage record holds what its tensors need ------------------------------------

def _rewrite_zip(src, dst, cut: dict[str, int] = (), compress: bool = False):
    """A copy of a torch zip written by Python's zipfile (another tool): records named in `cut` lose that many
    bytes at their end."""
    import zipfile
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        for info in zin.infolist():
            data = zin.read(info.filename)
            for suffix, n in dict(cut).items():
                if info.filename.endswith(suffix):
                    data = data[:-n]
            kind = zipfile.ZIP_DEFLATED if compress and "/data/" in info.filename else zipfile.ZIP_STORED
            zout.writestr(zipfile.ZipInfo(info.filename), data, compress_type=kind)


def test_a_cut_storage_record_is_refused_before_mapping(tmp_path):
    from nexus_core.decoder.checkpoint import _load_bin
    from nexus_core.files.torch_zip_check import check_torch_zip

    src = tmp_path / "ok.bin"
    torch.save({"a": torch.arange(12, dtype=torch.float32), "b": torch.ones(4, dtype=torch.bfloat16),
                "c": torch.arange(10.0)[2:6]}, src)
    check_torch_zip(src)
    same = tmp_path / "same.bin"
    _rewrite_zip(src, same)  # rewritten whole by another tool: still fine
    assert torch.equal(_load_bin(same)["a"], torch.arange(12, dtype=torch.float32))
    cut = tmp_path / "cut.bin"
    _rewrite_zip(src, cut, {"/data/0": 8})
    with pytest.raises(NexusError, match=r"storage record data/0 holds 40 bytes but its tensors need 48"):
        _load_bin(cut)
    packed = tmp_path / "packed.bin"
    _rewrite_zip(src, packed, compress=True)
    with pytest.raises(NexusError, match=r"record data/\d is compressed"):
        _load_bin(packed)


def test_a_decoder_with_a_cut_record_is_refused(tmp_path, tiny_root):
    """On a real decoder layout: without the check, the mapped load gives a decoder whose weights are partly its
    neighbour's bytes (so it must be refused by name, not loaded)."""
    import zipfile

    from nexus_core.decoder import read_decoder

    src = tiny_root / "Nexus-GenV2" / "generation_decoder.bin"
    with zipfile.ZipFile(src) as zf:
        record = next(i.filename for i in zf.infolist() if "/data/" in i.filename and i.file_size > 64)
    bad = tmp_path / "generation_decoder.bin"
    _rewrite_zip(src, bad, {record: 16})
    key = record.rsplit("/", 1)[1]
    with pytest.raises(NexusError, match=rf"storage record data/{key} holds .* but its tensors need"):
        read_decoder(bad)


# --- converted decoders mixed from two models (issue 29, class 2) ------------------------------------------------

@pytest.fixture(scope="module")
def converted(tiny_root, tmp_path_factory):
    from nexus_core.decoder.convert import convert_decoder
    out = tmp_path_factory.mktemp("conv") / "generation_decoder.safetensors"
    convert_decoder(tiny_root / "Nexus-GenV2" / "generation_decoder.bin", out, "comfyui", "bf16")
    return out


def _resave(src, dst, change):
    from safetensors import safe_open
    from safetensors.torch import save_file
    with safe_open(str(src), framework="pt") as f:
        state = {k: f.get_tensor(k) for k in f.keys()}
        meta = dict(f.metadata() or {})
    change(state)
    save_file({k: v.contiguous() for k, v in state.items()}, str(dst), metadata=meta)


def test_a_projector_and_a_dit_of_different_widths_are_refused(converted, tmp_path):
    """The adapter of one model put beside the DiT of another (context 2 wider): each half is consistent, together
    they are not; refused with both names, before any sampling."""
    from nexus_core.decoder import read_decoder

    assert read_decoder(converted).kind == "generation"
    bad = tmp_path / "mixed.safetensors"

    def widen_adapter(state):
        for k in [k for k in state if k.startswith("adapter.")]:
            t = state[k]
            if k == "adapter.0.weight":
                state[k] = torch.cat([t, t[:2]])
            elif k == "adapter.3.weight":
                state[k] = torch.nn.functional.pad(t, (0, 2, 0, 2))
            else:
                state[k] = torch.cat([t, t[:2]])
    _resave(converted, bad, widen_adapter)
    with pytest.raises(NexusError, match="projector gives context .* but its DiT takes .* different models"):
        read_decoder(bad)


def test_a_projector_read_alone_is_still_validated(converted, tmp_path):
    """The projector loader reads only the projector (the DiT comes from a GGUF loader): its own shapes are checked
    all the same, so a damaged adapter is refused by name there too."""
    from nexus_core.decoder.checkpoint import read_projector

    assert read_projector(converted).kind == "generation"
    bad = tmp_path / "odd.safetensors"
    _resave(converted, bad, lambda s: s.__setitem__("adapter.3.bias", s["adapter.3.bias"][:-1].clone()))
    with pytest.raises(NexusError, match=r"tensor adapter\.3\.bias has shape"):
        read_projector(bad)


def test_an_unreadable_file_is_said_to_be_unreadable_not_truncated(tmp_path, tiny_root, monkeypatch):
    """Without read permission (tried as root, where permissions do not apply, by making the checks see it so)."""
    import builtins
    import os as os_module

    from nexus_core.decoder.checkpoint import _load_bin

    st = tmp_path / "locked.safetensors"
    raw_file(st, {"a": F32_2}, bytes(8))
    real_open = builtins.open

    def no_read(path, *a, **k):
        if str(path) == str(st):
            raise PermissionError(13, "Permission denied", str(path))
        return real_open(path, *a, **k)
    monkeypatch.setattr(builtins, "open", no_read)
    with pytest.raises(NexusError, match="cannot be read: permission denied"):
        read_header(st)
    monkeypatch.setattr(builtins, "open", real_open)
    binfile = tmp_path / "generation_decoder.bin"
    binfile.write_bytes((tiny_root / "Nexus-GenV2" / "generation_decoder.bin").read_bytes())
    monkeypatch.setattr(os_module, "access", lambda p, mode: str(p) != str(binfile))
    with pytest.raises(NexusError, match="cannot be read: permission denied") as e:
        _load_bin(binfile)
    assert "truncated" not in str(e.value)


def test_the_header_check_and_the_reader_know_the_same_dtypes():
    """read_header refuses what the tensor reader cannot map, so the reader needs no check of its own."""
    from nexus_core.files.safetensors_check import ITEM_BYTES
    from nexus_core.files.safetensors_read import DTYPES
    assert set(ITEM_BYTES) == set(DTYPES)
    assert all(DTYPES[k].itemsize == n for k, n in ITEM_BYTES.items())
