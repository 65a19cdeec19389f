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
    assert all(v in (gguf.GGMLQuantizationType.BF16, gguf.GGMLQuantizationType.F32)
               for k, v in types.items() if k.startswith("adapter."))


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
    kind, proj = read_projector(converted)
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
