"""Every setting the command line can check is refused before any model work (issue 29, class 5): a spy on the
model loaders shows it, and each bound is tried at the edge (accepted: the run reaches the first load) and just
past it (refused by name, nothing loaded)."""
import shutil

import pytest

import nexus_core.ar as ar_pkg
import nexus_core.decoder as decoder_pkg
import nexus_core.pipeline as pipeline
from nexus_core.cli import main


class Reached(Exception):
    """The run got past every check to its first model load."""


@pytest.fixture
def spy(monkeypatch):
    def reached(*a, **k):
        raise Reached()
    for mod, name in ((ar_pkg, "load_ar"), (decoder_pkg, "load_decoder"), (pipeline, "load_flux")):
        monkeypatch.setattr(mod, name, reached)


@pytest.fixture(scope="module")
def flux_without_t5(tiny_root, tmp_path_factory):
    out = tmp_path_factory.mktemp("flux") / "FLUX.1-dev"
    shutil.copytree(tiny_root / "FLUX.1-dev", out, ignore=shutil.ignore_patterns("text_encoder_2", "tokenizer_2"))
    return out


def run(argv):
    try:
        return main([str(a) for a in argv])
    except SystemExit as e:
        return e.code


def generate(tiny_root, tmp_path, *extra, flux=None):
    return ["generate", "--model", tiny_root / "Nexus-GenV2", "--flux", flux or tiny_root / "FLUX.1-dev",
            "--prompt", "a cat", "--out", tmp_path / "x.png", *extra]


def accepted(argv):
    with pytest.raises(Reached):
        run(argv)


def refused(argv, capsys, message):
    assert run(argv) == 2
    err = capsys.readouterr().err
    assert message in err, err


def test_a_decoder_of_the_wrong_kind(spy, tiny_root, tmp_path, capsys):
    refused(generate(tiny_root, tmp_path, "--decoder", tiny_root / "Nexus-GenV2" / "edit_decoder.bin"), capsys,
            "is the editing decoder, but this task needs the generation decoder")
    accepted(generate(tiny_root, tmp_path, "--decoder", tiny_root / "Nexus-GenV2" / "generation_decoder.bin"))


@pytest.mark.parametrize("cfg", ["0.5", "3"])
def test_cfg_other_than_one_without_t5(spy, tiny_root, tmp_path, capsys, flux_without_t5, cfg):
    refused(generate(tiny_root, tmp_path, "--cfg", cfg, flux=flux_without_t5), capsys,
            f"--cfg {float(cfg)} needs the T5-XXL text encoder")
    accepted(generate(tiny_root, tmp_path, "--cfg", "1", flux=flux_without_t5))


def test_an_output_format_the_image_library_cannot_write(spy, tiny_root, tmp_path, capsys):
    refused(["generate", "--model", tiny_root / "Nexus-GenV2", "--flux", tiny_root / "FLUX.1-dev", "--prompt", "x",
             "--out", tmp_path / "x.psd"], capsys, "needs an image file suffix")
    accepted(generate(tiny_root, tmp_path))


@pytest.mark.parametrize("flag,edge,past,message", [
    ("--width", "4096", "4097", "--width"), ("--height", "4096", "4097", "--height"),
    ("--width", "16", "15", "--width"), ("--steps", "10000", "10001", "--steps"), ("--steps", "1", "0", "--steps"),
    ("--cfg", "100", "100.5", "--cfg"), ("--cfg", "0", "-0.5", "--cfg"), ("--guidance", "0", "-1", "--guidance"),
    ("--seed", str(2**64 - 1), str(2**64), "--seed"), ("--seed", "0", "-1", "--seed"),
])
def test_each_bound_at_the_edge_and_just_past_it(spy, tiny_root, tmp_path, capsys, flag, edge, past, message):
    """The message names the setting whichever side the bound is broken from."""
    accepted(generate(tiny_root, tmp_path, flag, edge))
    refused(generate(tiny_root, tmp_path, flag, past), capsys, message)


def test_max_side_moves_the_size_bound(spy, tiny_root, tmp_path, capsys):
    accepted(generate(tiny_root, tmp_path, "--width", "6000", "--max-side", "6000"))
    refused(generate(tiny_root, tmp_path, "--width", "6001", "--max-side", "6000"), capsys, "--width")
