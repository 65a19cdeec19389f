"""`nexus-gen convert --layout gguf`: one file with the DiT quantized for GGUF loaders (ComfyUI-GGUF keeps the
`model.diffusion_model.` tensors) and the projector beside it, readable by our projector loader and CLI."""
import numpy as np
import pytest
import torch

gguf = pytest.importorskip("gguf", reason="the gguf package (optional extra) is not installed")

from nexus_core.cli import main  # noqa: E402
from nexus_core.decoder.checkpoint import read_decoder, read_projector  # noqa: E402
from nexus_core.decoder.dit import comfyui_state  # noqa: E402


@pytest.fixture(scope="module")
def converted(tiny_root, tmp_path_factory):
    out = tmp_path_factory.mktemp("gguf") / "gen-Q8_0.gguf"
    assert main(["convert", str(tiny_root / "Nexus-GenV2" / "generation_decoder.bin"), "--layout", "gguf",
                 "--out", str(out)]) == 0
    return out


def test_layout_a_gguf_loader_expects(converted):
    reader = gguf.GGUFReader(str(converted))
    arch = reader.get_field("general.architecture")
    assert str(bytes(arch.parts[arch.data[-1]]), "utf-8") == "flux"
    types = {t.name: t.tensor_type for t in reader.tensors}
    dit = {k: v for k, v in types.items() if k.startswith("model.diffusion_model.")}
    assert len(dit) == 76 and all(k.startswith(("model.diffusion_model.", "adapter.")) for k in types)
    assert types["model.diffusion_model.double_blocks.0.img_attn.qkv.weight"] == gguf.GGMLQuantizationType.Q8_0
    assert types["model.diffusion_model.double_blocks.0.img_attn.qkv.bias"] == gguf.GGMLQuantizationType.F32
    shapes = {t.name: len(t.shape) for t in reader.tensors}
    adapter = {k: v for k, v in types.items() if k.startswith("adapter.")}  # matrices as stored (bf16), vectors F32
    assert adapter and all(v == (gguf.GGMLQuantizationType.BF16 if shapes[k] >= 2 else gguf.GGMLQuantizationType.F32)
                           for k, v in adapter.items()), {k: (v, shapes[k]) for k, v in adapter.items()}


def test_dit_within_q8_error_and_projector_exact(converted, tiny_root):
    src = read_decoder(tiny_root / "Nexus-GenV2" / "generation_decoder.bin")
    got = read_decoder(converted)
    assert (got.kind, got.layout) == ("generation", "comfyui")
    want = comfyui_state(src)
    assert set(got.dit) == set(want)
    for k, w in want.items():
        w = w.float()
        err = (got.dit[k] - w).abs().max() / w.abs().max().clamp_min(1e-12)
        # Q8_0: 8-bit values with one scale per 32: at most ~half a step of the block's max (2^-8 relative)
        assert err < 5e-3, (k, float(err))
    dec = read_projector(converted)
    kind, proj = dec.kind, dec.projector
    assert kind == "generation"
    for k, v in src.projector.items():
        assert torch.equal(proj[k].to(v.dtype), v), k


def test_q8_blocks_against_the_format(converted):
    """Independent of our reader: decode one Q8_0 block by the format's definition (fp16 scale, 32 int8)."""
    reader = gguf.GGUFReader(str(converted))
    t = next(t for t in reader.tensors if t.name == "model.diffusion_model.img_in.weight")
    raw = np.asarray(t.data).reshape(-1)[:34].tobytes()
    scale = np.frombuffer(raw[:2], dtype=np.float16)[0]
    values = np.frombuffer(raw[2:], dtype=np.int8).astype(np.float32) * np.float32(scale)
    ours = read_decoder(converted).dit["img_in.weight"].reshape(-1)[:32].numpy()
    np.testing.assert_allclose(values, ours, rtol=0, atol=1e-7)


def test_refusals(converted, tiny_root, tmp_path):
    src = str(tiny_root / "Nexus-GenV2" / "generation_decoder.bin")
    assert main(["convert", src, "--layout", "gguf", "--out", str(converted)]) == 2  # exists, no --overwrite
    assert main(["convert", src, "--layout", "gguf", "--dtype", "fp8_e4m3fn", "--out", str(tmp_path / "a.gguf")]) == 2
    assert main(["convert", src, "--layout", "comfyui", "--dtype", "Q8_0", "--out", str(tmp_path / "a.st")]) == 2
    assert not list(tmp_path.iterdir())


def test_f16_storage_and_progress(tiny_root, tmp_path):
    from nexus_core.decoder.convert import convert_to_gguf

    seen = []
    out = convert_to_gguf(tiny_root / "Nexus-GenV2" / "generation_decoder.bin", tmp_path / "f16.gguf", "F16",
                          on_tensor=lambda i, n: seen.append((i, n)))
    assert seen[0] == (1, 84) and seen[-1] == (84, 84) and len(seen) == 84
    types = {t.name: t.tensor_type for t in gguf.GGUFReader(str(out)).tensors}
    assert types["model.diffusion_model.double_blocks.0.img_attn.qkv.weight"] == gguf.GGMLQuantizationType.F16
    src = comfyui_state(read_decoder(tiny_root / "Nexus-GenV2" / "generation_decoder.bin"))
    got = read_decoder(out).dit
    for k, w in src.items():  # bf16 source values are exact in F16 at these magnitudes, or off by F16 rounding
        torch.testing.assert_close(got[k], w.float(), rtol=2 ** -10, atol=1e-6)
    with pytest.raises(Exception, match="already exists"):
        convert_to_gguf(tiny_root / "Nexus-GenV2" / "generation_decoder.bin", out, "F16")


def test_rows_that_do_not_split_into_blocks_fall_back_to_f16(tmp_path):
    """Q8_0 needs rows of whole 32-value blocks; a 48-wide matrix is stored F16, small ones F32, all readable."""
    from nexus_core.decoder.gguf_file import read_gguf, write_gguf

    g = torch.Generator().manual_seed(0)
    tensors = {"odd.weight": torch.randn(40, 48, generator=g), "small.weight": torch.randn(16, 16, generator=g),
               "even.weight": torch.randn(40, 64, generator=g), "norm.scale": torch.randn(48, generator=g)}
    plan = [(k, v, None, torch.bfloat16) for k, v in tensors.items()]
    write_gguf(plan, tmp_path / "x.gguf", "generation", "Q8_0", {"format": "test"})
    types = {t.name: t.tensor_type for t in gguf.GGUFReader(str(tmp_path / "x.gguf")).tensors}
    Q = gguf.GGMLQuantizationType
    assert types == {"model.diffusion_model.odd.weight": Q.F16, "model.diffusion_model.small.weight": Q.F32,
                     "model.diffusion_model.even.weight": Q.Q8_0, "model.diffusion_model.norm.scale": Q.F32}
    state, meta = read_gguf(tmp_path / "x.gguf")
    assert meta == {"format": "test"}
    torch.testing.assert_close(state["odd.weight"], tensors["odd.weight"].half().float(), rtol=0, atol=0)
    torch.testing.assert_close(state["small.weight"], tensors["small.weight"], rtol=0, atol=0)
    assert (state["even.weight"] - tensors["even.weight"]).abs().max() < tensors["even.weight"].abs().max() / 100


@pytest.mark.parametrize("layout,suffix", [("gguf", ".gguf"), ("comfyui", ".safetensors")])
def test_a_converted_editing_decoder_needs_no_ar_folder(tiny_root, tmp_path, layout, suffix):
    """The merger's heads and RoPE are not in its weights: a converted editing decoder records them (from the
    config.json beside the .bin), so its projector builds alone (a GGUF in diffusion_models has no AR beside it),
    and it equals the projector built with the AR's config."""
    import json

    from nexus_core.decoder.projectors import build_projector

    out = tmp_path / f"edit{suffix}"
    assert main(["convert", str(tiny_root / "Nexus-GenV2" / "edit_decoder.bin"), "--layout", layout,
                 "--out", str(out)]) == 0
    alone = read_projector(out)
    assert json.loads(alone.metadata["ar_config"])["num_attention_heads"] == 4
    ar_config = json.loads((tiny_root / "Nexus-GenV2" / "config.json").read_text())
    with_config = build_projector(read_decoder(tiny_root / "Nexus-GenV2" / "edit_decoder.bin"), ar_config)
    without = build_projector(alone, None)
    g = torch.Generator().manual_seed(0)
    target, ref = torch.randn(1, 81, 64, generator=g), torch.randn(1, 324, 64, generator=g)
    torch.testing.assert_close(without.project(target, ref), with_config.project(target, ref), atol=1e-5, rtol=1e-5)


def test_an_editing_decoder_without_its_config_says_where_it_belongs(tiny_root):
    """Without the AR's config.json the merger's head count is inferred from Qwen2.5-VL's head width (128); a merger
    that width does not divide (any synthetic one) is refused with what to do, not a ZeroDivisionError."""
    from nexus_core.decoder.projectors import build_projector
    from nexus_core.errors import NexusError

    with pytest.raises(NexusError, match="needs the config.json of its AR model beside it"):
        build_projector(read_decoder(tiny_root / "Nexus-GenV2" / "edit_decoder.bin"), None)
