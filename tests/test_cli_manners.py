"""Issue #10, class 6: the CLI's manners: fast help with every default, --version, streaming that prints
whole characters once, a demo that reports as it goes, outputs with normal permissions, and latents files
that say what they hold."""
import argparse
import json
import os
import shutil
import stat
import struct
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from nexus_core import __version__
from nexus_core.cli import main
from nexus_core.cli.parser import build_parser
from nexus_core.files.atomic import default_mode

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _py(*args):
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, cwd=REPO,
                          env={**os.environ, "PYTHONPATH": REPO})


def test_help_imports_no_torch():
    code = ("import sys, argparse\nfrom nexus_core.cli.parser import build_parser\np = build_parser()\n"
            "p.format_help()\n"
            "for a in p._actions:\n    if isinstance(a, argparse._SubParsersAction):\n"
            "        [s.format_help() for s in a.choices.values()]\n"
            "print(sorted(m for m in ('torch', 'transformers', 'diffusers', 'numpy') if m in sys.modules))")
    out = _py("-c", code)
    assert out.stdout.strip() == "[]", out.stderr
    p = _py("-X", "importtime", "-m", "nexus_core.cli", "generate", "--help")
    assert p.returncode == 0 and "--save-latents" in p.stdout
    assert not [line for line in p.stderr.splitlines() if line.rstrip().endswith("| torch")]


def _subparsers():
    p = build_parser()
    sub = next(a for a in p._actions if isinstance(a, argparse._SubParsersAction))
    return sub.choices


def test_every_option_has_help_and_shows_its_default():
    for name, sp in _subparsers().items():
        text = sp.format_help()
        for action in sp._actions:
            if isinstance(action, argparse._HelpAction):
                continue
            label = action.option_strings[0] if action.option_strings else action.dest
            assert action.help, f"{name} {label} has no help line"
            if action.default not in (None, False, "", argparse.SUPPRESS):
                shown = f"(default: {action.default})" in " ".join(text.split())
                assert shown, f"{name} {label}: default {action.default!r} not shown"


def test_version():
    p = _py("-m", "nexus_core.cli", "--version")
    assert p.returncode == 0 and p.stdout.strip() == f"nexus-gen {__version__}"


# --- streaming ----------------------------------------------------------------------------------------------


def test_stream_never_splits_a_character(tiny_ar):
    """Byte-level BPE ends tokens inside multi-byte characters; the stream must wait for the whole one."""
    from nexus_core.cli.text_stream import TextStream

    tok = tiny_ar.tokenizer
    text = "Ein Fuchs 🦊 im Schnee: 一只狐狸坐在雪地里。Café"
    ids = tok.encode(text, add_special_tokens=False)
    pieces_naive = [tok.decode([i]) for i in ids]
    assert any("\ufffd" in p for p in pieces_naive)  # the tokenizer really splits characters
    pieces = []
    stream = TextStream(lambda x: tok.decode(x, skip_special_tokens=True), pieces.append)
    for n in range(1, len(ids) + 1):
        stream.update(ids[:n])
    stream.finish(tok.decode(ids, skip_special_tokens=True))
    assert "".join(pieces) == text
    assert not any("\ufffd" in p for p in pieces)
    assert len(pieces) > 5  # it streamed, rather than printing everything at the end


def test_understand_stream_prints_the_answer_once(tiny_root, capsys):
    args = ["understand", "--model", str(tiny_root / "Nexus-GenV2"), "--question", "你好，请描述一只狐狸",
            "--max-new-tokens", "24", "--device", "cpu"]
    assert main(args) == 0
    plain = capsys.readouterr()
    assert main(args + ["--stream"]) == 0
    streamed = capsys.readouterr()
    assert streamed.out == plain.out  # the same answer on stdout, once
    answer = plain.out.strip()
    assert answer and answer not in streamed.err


# --- outputs ------------------------------------------------------------------------------------------------


def _mode(path):
    return stat.S_IMODE(os.stat(path).st_mode)


def _metadata_in_file_order(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        return json.loads(f.read(n))["__metadata__"]  # json keeps the file's key order


def test_latents_file_says_what_it_holds(tiny_root, tmp_path):
    out, lat = tmp_path / "g.png", tmp_path / "lat.safetensors"
    args = ["generate", "--model", str(tiny_root / "Nexus-GenV2"), "--flux", str(tiny_root / "FLUX.1-dev"),
            "--prompt", "a fox", "--mode", "fast", "--cfg", "1", "--steps", "2", "--width", "40", "--height", "32",
            "--out", str(out), "--save-latents", str(lat)]
    assert main(args) == 0
    meta = _metadata_in_file_order(lat)
    assert list(meta) == ["format", "kind", "holds", "shape", "layout", "dtype", "scaling_factor", "shift_factor",
                          "decoder", "width", "height", "steps", "cfg", "guidance", "seed", "negative", "prompts",
                          "replies"]
    first = lat.read_bytes()
    assert main(args) == 0 and lat.read_bytes() == first  # same run, same bytes: a stable order
    from safetensors.torch import load_file
    latents = load_file(str(lat))["latents"]
    assert json.loads(meta["shape"]) == list(latents.shape) == [1, 16, 4, 6]
    assert (meta["width"], meta["height"], meta["seed"], json.loads(meta["prompts"])) == ("48", "32", "52", ["a fox"])
    # the file's own description decodes it: vae.decode(latents / scaling_factor + shift_factor) is the PNG
    from nexus_core.flux.vae import load_vae, to_uint8
    vae = load_vae(tiny_root / "FLUX.1-dev" / "ae.safetensors")
    z = latents / float(meta["scaling_factor"]) + float(meta["shift_factor"])
    with torch.inference_mode():
        image = to_uint8(vae.decode(z).sample.float())[0].numpy()
    assert np.array_equal(image, np.asarray(Image.open(out)))
    for f in (out, lat):
        assert _mode(f) == default_mode(), oct(_mode(f))


def test_demo_reports_each_stage_as_it_finishes(tmp_path, capsys, monkeypatch):
    import nexus_core.pipeline

    seen = {}
    real = nexus_core.pipeline.load_flux

    def spy(*a, **k):  # a late stage: by now the earlier stages must be on screen already
        seen["before FLUX"] = capsys.readouterr().out
        return real(*a, **k)

    monkeypatch.setattr(nexus_core.pipeline, "load_flux", spy)
    demo = tmp_path / "demo"
    assert main(["demo", "--out", str(demo)]) == 0
    early = seen["before FLUX"]
    assert str(demo.resolve()) in early.splitlines()[0]  # where it writes, said first
    for stage in ("make-tiny", "load AR", "understand", "encode (ViT 324 reference)"):
        assert stage in early, early
    late = capsys.readouterr().out
    assert "decode variation.png" in late and "image:" in late
    files = [p for p in demo.rglob("*") if p.is_file()]
    assert len(files) > 20
    assert {oct(_mode(p)) for p in files} == {oct(default_mode())}


def test_demo_default_folder_is_ignored_by_git():
    if shutil.which("git") is None or not os.path.isdir(os.path.join(REPO, ".git")) and \
            not os.path.isfile(os.path.join(REPO, ".git")):
        pytest.skip("not a git checkout")
    default = build_parser().parse_args(["demo"]).out
    p = subprocess.run(["git", "check-ignore", "-q", f"{default}/generation.png"], cwd=REPO)
    assert p.returncode == 0, f"{default}/ is not covered by .gitignore"


def _understand_stream(tiny_root, **popen):
    return subprocess.Popen([sys.executable, "-m", "nexus_core.cli", "understand", "--model",
                             str(tiny_root / "Nexus-GenV2"), "--question", "hi", "--max-new-tokens", "60", "--stream",
                             "--device", "cpu"], stderr=subprocess.PIPE, cwd=REPO,
                            env={**os.environ, "PYTHONPATH": REPO}, **popen)


def test_reader_that_goes_away_or_a_full_disk(tiny_root, tmp_path):
    """`nexus-gen ... | head -c 1` stops quietly; a full stdout device is one line, not a traceback."""
    p = _understand_stream(tiny_root, stdout=subprocess.PIPE)
    assert p.stdout.read(1)
    p.stdout.close()
    err = p.stderr.read().decode()
    assert p.wait() == 141 and "Traceback" not in err and "Exception ignored" not in err, err
    # buffered output (no --stream) fails only when flushed: still inside the command, still quiet
    p = subprocess.Popen([sys.executable, "-m", "nexus_core.cli", "embeds", "--model", str(tiny_root / "Nexus-GenV2"),
                          "--prompt", "a", "--mode", "fast", "--out", str(tmp_path / "e.safetensors")],
                         stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, cwd=REPO, env={**os.environ, "PYTHONPATH": REPO})
    p.stdout.close()
    err = p.stderr.read().decode()
    assert p.wait() == 141 and "BrokenPipeError" not in err, err
    if os.path.exists("/dev/full"):
        with open("/dev/full", "w") as full:
            p = _understand_stream(tiny_root, stdout=full)
            err = p.communicate()[1].decode()
        assert p.returncode == 1 and err.strip().endswith("nexus-gen: error: [Errno 28] No space left on device"), err


@pytest.mark.parametrize("value,message", [("-1e3", "--cfg must be in [0, 100], got -1000"),
                                           ("-inf", "--cfg must be a finite number"),
                                           ("-0x10", "argument --cfg: invalid float value: '-0x10'")])
def test_a_negative_value_gets_its_own_message_not_expected_one_argument(tmp_path, capsys, value, message):
    from nexus_core.cli import main

    try:
        rc = main(["generate", "--prompt", "x", "--model", str(tmp_path), "--flux", str(tmp_path),
                   "--out", str(tmp_path / "o.png"), "--cfg", value])
    except SystemExit as e:  # argparse's own refusal of a value its type cannot read
        rc = e.code
    assert rc == 2
    err = capsys.readouterr().err
    assert message in err and "expected one argument" not in err, err
