"""Image commands end to end on the tiny set `make-tiny` writes, and their bad input."""
import shutil

import numpy as np
import pytest
import torch
from PIL import Image

from nexus_core.cli import main
from nexus_core.decoder import load_decoder
from nexus_core.errors import NexusError
from nexus_core.pipeline import DecodeSettings, decode_embeddings, load_flux


@pytest.fixture(scope="session")
def tiny_parts(tiny_root, tiny_ar):
    text, vae = load_flux(tiny_root / "FLUX.1-dev")
    dec = load_decoder(tiny_root / "Nexus-GenV2" / "generation_decoder.bin", tiny_ar.checkpoint.config)
    return dec, text, vae


@pytest.fixture
def image(tmp_path):
    p = tmp_path / "in.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (70, 90, 3), dtype=np.uint8)).save(p)
    return p


def _args(tiny_root, out, *extra):
    return ["--model", str(tiny_root / "Nexus-GenV2"), "--flux", str(tiny_root / "FLUX.1-dev"), "--steps", "2",
            "--width", "64", "--height", "48", "--out", str(out), "--max-new-tokens", "90", *extra]


def test_generate_batch_with_cfg_and_latents(tiny_root, tmp_path):
    out, lat = tmp_path / "g.png", tmp_path / "lat.safetensors"
    assert main(["generate", "--prompt", "a cat", "--prompt", "a dog", "--negative", "blurry",
                 *_args(tiny_root, out, "--save-latents", str(lat))]) == 0
    for p in (tmp_path / "g_0.png", tmp_path / "g_1.png"):
        assert Image.open(p).size == (64, 48)
    from safetensors.torch import load_file
    assert load_file(str(lat))["latents"].shape == (2, 16, 6, 8)


@pytest.mark.parametrize("kind", ["editing", "generation"])
def test_edit_with_both_decoders(tiny_root, tmp_path, image, kind):
    out = tmp_path / "e.png"
    assert main(["edit", "--image", str(image), "--instruction", "make it blue", "--decoder-kind", kind,
                 *_args(tiny_root, out)]) == 0
    assert Image.open(out).size == (64, 48)


def test_variation_rounds_size_up(tiny_root, tmp_path, image, caplog):
    out = tmp_path / "v.png"
    args = [a for a in _args(tiny_root, out) if a not in ("--max-new-tokens", "90")]
    args[args.index("--width") + 1], args[args.index("--height") + 1] = "70", "33"
    with caplog.at_level("WARNING"):
        assert main(["variation", "--image", str(image), *args]) == 0
    assert Image.open(out).size == (80, 48)
    assert "rounded up to 80x48" in caplog.text


def test_convert_then_generate_with_converted(tiny_root, tmp_path):
    conv = tmp_path / "generation_decoder.safetensors"
    assert main(["convert", str(tiny_root / "Nexus-GenV2" / "generation_decoder.bin"), "--out", str(conv)]) == 0
    assert main(["generate", "--prompt", "x", "--mode", "fast", "--cfg", "1", "--decoder", str(conv),
                 *_args(tiny_root, tmp_path / "c.png")]) == 0


def test_same_seed_same_image(tiny_parts):
    dec, text, vae = tiny_parts
    emb = torch.randn(1, 81, 64, generator=torch.Generator().manual_seed(0))
    s = DecodeSettings(32, 32, 2, 1.0, "", 3.5, 5)
    a, _ = decode_embeddings(dec, text, vae, emb, s)
    b, _ = decode_embeddings(dec, text, vae, emb, s)
    c, _ = decode_embeddings(dec, text, vae, emb, DecodeSettings(32, 32, 2, 1.0, "", 3.5, 6))
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_zero_steps(tiny_parts):
    dec, text, vae = tiny_parts
    with pytest.raises(NexusError, match="steps must be at least 1"):
        decode_embeddings(dec, text, vae, torch.zeros(1, 81, 64), DecodeSettings(32, 32, 0))


def test_embeddings_of_wrong_width(tiny_parts):
    dec, text, vae = tiny_parts
    with pytest.raises(NexusError, match="width 3584 but this generation decoder expects 64"):
        decode_embeddings(dec, text, vae, torch.zeros(1, 81, 3584), DecodeSettings(32, 32, 1, 1.0))


def test_cfg_without_t5(tiny_root, tmp_path, tiny_ar):
    flux = tmp_path / "flux"
    shutil.copytree(tiny_root / "FLUX.1-dev", flux)
    shutil.rmtree(flux / "text_encoder_2")
    text, vae = load_flux(flux)
    dec = load_decoder(tiny_root / "Nexus-GenV2" / "generation_decoder.bin", tiny_ar.checkpoint.config)
    with pytest.raises(NexusError, match="cfg=3.0 needs the T5-XXL text encoder"):
        decode_embeddings(dec, text, vae, torch.zeros(1, 81, 64), DecodeSettings(32, 32, 1, 3.0, "ugly"))
    images, _ = decode_embeddings(dec, text, vae, torch.zeros(1, 81, 64), DecodeSettings(32, 32, 1, 1.0))
    assert images.shape == (1, 32, 32, 3)


def test_output_in_missing_folder(tiny_root, tmp_path, capsys):
    assert main(["generate", "--prompt", "x", *_args(tiny_root, tmp_path / "no" / "g.png")]) == 2
    assert "Output folder does not exist" in capsys.readouterr().err


def test_wrong_decoder_for_task_via_cli(tiny_root, tmp_path, capsys):
    assert main(["generate", "--prompt", "x", "--decoder", str(tiny_root / "Nexus-GenV2" / "edit_decoder.bin"),
                 *_args(tiny_root, tmp_path / "g.png")]) == 2
    assert "is the editing decoder, but this task needs the generation decoder" in capsys.readouterr().err


def test_demo(tmp_path, capsys):
    assert main(["demo", "--out", str(tmp_path / "demo")]) == 0
    out = capsys.readouterr().out
    for name in ("generation.png", "edit_editing_decoder.png", "edit_generation_decoder.png", "variation.png"):
        assert (tmp_path / "demo" / name).is_file() and name in out
    assert "stage times" in out


def test_single_file_text_encoders_match_folders(tmp_path):
    """ComfyUI-style single files (text_encoders/clip_l.safetensors, t5xxl_fp16.safetensors) give the same
    encodings as the diffusers folders they were made from."""
    from nexus_core.flux.text_encoders import TextEncoders
    from nexus_core.synthetic import make_tiny

    folders, files = tmp_path / "f", tmp_path / "c"
    make_tiny(folders, seed=3)
    make_tiny(files, seed=3, comfyui=True)
    flux, te = folders / "FLUX.1-dev", files / "text_encoders"
    a = TextEncoders(flux / "text_encoder", flux / "tokenizer", flux / "text_encoder_2", flux / "tokenizer_2")
    b = TextEncoders(te / "clip_l.safetensors", te / "clip_l.tokenizer", te / "t5xxl_fp16.safetensors",
                     te / "t5xxl_fp16.tokenizer")
    for text in ("", "a blurry photo"):
        torch.testing.assert_close(a.clip_pooled(text), b.clip_pooled(text))
        torch.testing.assert_close(a.t5(text), b.t5(text))
    from nexus_core.flux.vae import load_vae
    vae = load_vae(files / "vae" / "ae.safetensors")  # the full-size random FLUX AE
    assert vae.config.block_out_channels == (128, 256, 512, 512) or list(vae.config.block_out_channels) == [128, 256, 512, 512]
