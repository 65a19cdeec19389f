"""The `nexus-gen` command line on the tiny model set `make-tiny` writes."""
import json

from safetensors import safe_open

from nexus_core.cli import main


def test_make_tiny_is_deterministic(tmp_path, tiny_root):
    main(["make-tiny", str(tmp_path)])
    files = sorted(p.relative_to(tiny_root) for p in tiny_root.rglob("*") if p.is_file())
    assert len(files) > 20
    for f in files:
        assert (tmp_path / f).read_bytes() == (tiny_root / f).read_bytes(), f


def test_understand(tiny_root, capsys):
    assert main(["understand", "--model", str(tiny_root / "Nexus-GenV2"), "--question", "hi",
                 "--max-new-tokens", "4", "--device", "cpu"]) == 0
    assert capsys.readouterr().out.strip() != ""


def test_encode(tiny_root, tmp_path, fixture_dir):
    out = tmp_path / "vit.safetensors"
    assert main(["encode", "--model", str(tiny_root / "Nexus-GenV2"), "--image",
                 str(fixture_dir / "inputs" / "test_image.png"), "--tokens", "324", "--out", str(out)]) == 0
    with safe_open(str(out), "pt") as f:
        assert f.get_slice("vit_embeddings").get_shape() == [1, 324, 64]
        assert f.metadata()["tokens"] == "324"


def test_embeds_batch_fast_and_metadata(tiny_root, tmp_path):
    out = tmp_path / "e.safetensors"
    assert main(["embeds", "--model", str(tiny_root / "Nexus-GenV2"), "--prompt", "a cat", "--prompt",
                 "一只猫", "--language", "auto", "--mode", "fast", "--out", str(out), "--dtype", "float32"]) == 0
    with safe_open(str(out), "pt") as f:
        assert f.get_slice("image_embeddings").get_shape() == [2, 81, 64]
        meta = f.metadata()
    assert json.loads(meta["text"]) == ["Here is an image based on the description: <image>", "这是根据您的描述生成的图像：<image>"]
    assert meta["mode"] == "fast" and meta["format"] == "nexus-gen-embeddings"


def test_embeds_editing_reference(tiny_root, tmp_path, fixture_dir):
    out = tmp_path / "e.safetensors"
    assert main(["embeds", "--model", str(tiny_root / "Nexus-GenV2"), "--image",
                 str(fixture_dir / "inputs" / "test_image.png"), "--instruction", "make it blue",
                 "--max-new-tokens", "90", "--out", str(out)]) == 0
    with safe_open(str(out), "pt") as f:
        assert f.get_slice("image_embeddings").get_shape() == [1, 81, 64]
        assert f.get_slice("ref_embeddings").get_shape() == [1, 324, 64]


def test_cli_errors_are_messages_not_tracebacks(tiny_root, tmp_path, capsys, fixture_dir):
    m = str(tiny_root / "Nexus-GenV2")
    img = str(fixture_dir / "inputs" / "test_image.png")
    assert main(["encode", "--model", m, "--image", img, "--tokens", "100", "--out", str(tmp_path / "x")]) == 2
    assert "tokens must be one of [81, 324]" in capsys.readouterr().err
    assert main(["embeds", "--model", m, "--prompt", "", "--out", str(tmp_path / "x")]) == 2
    assert "prompt is empty" in capsys.readouterr().err
    assert main(["embeds", "--model", m, "--prompt", "x", "--mode", "fast", "--out",
                 str(tmp_path / "missing" / "x.safetensors")]) == 2
    assert "Output folder does not exist" in capsys.readouterr().err
    assert main(["understand", "--model", str(tmp_path / "none"), "--question", "x"]) == 2
    assert "folder not found" in capsys.readouterr().err
    assert not list(tmp_path.glob("**/*.tmp"))
