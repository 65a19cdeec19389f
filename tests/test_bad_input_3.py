"""Issue #19: bad input, third round. Each class that cost a user an hour: refused before any model loads, in one
line (exit 2, or 1 for what the system refuses), with no silent wrong result, no hang, nothing left behind.

Tripwires stand in for the loaders where the refusal must come first; the rest runs on the tiny model set.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from nexus_core.cli import main
from nexus_core.errors import NexusError

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def no_model_loads(monkeypatch):
    import nexus_core.ar
    import nexus_core.decoder
    import nexus_core.pipeline

    def tripwire(*a, **k):
        raise AssertionError("a model was loaded before the bad input was refused")

    monkeypatch.setattr(nexus_core.ar, "load_ar", tripwire)
    monkeypatch.setattr(nexus_core.decoder, "load_decoder", tripwire)
    monkeypatch.setattr(nexus_core.pipeline, "load_flux", tripwire)


@pytest.fixture
def ar_copy(tiny_root, tmp_path):
    return Path(shutil.copytree(tiny_root / "Nexus-GenV2", tmp_path / "ar", ignore=shutil.ignore_patterns("*.bin")))


def _png(path, w=40, h=30):
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (h, w, 3), dtype=np.uint8)).save(path)
    return path


def _refused(capsys, argv, message, code=2):
    assert main([str(a) for a in argv]) == code
    err = capsys.readouterr().err
    assert message in err, err
    assert "Traceback" not in err
    return err


# --- silent wrong results ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("remove", [("tokenizer.json",), ("tokenizer.json", "tokenizer_config.json")])
def test_ar_folder_without_its_tokenizer(ar_copy, capsys, no_model_loads, remove):
    for name in remove:
        (ar_copy / name).unlink()
    _refused(capsys, ["understand", "--model", ar_copy, "--question", "hi"], "No tokenizer in")


def test_tokenizer_of_another_model(ar_copy, capsys, no_model_loads):
    cfg = json.loads((ar_copy / "config.json").read_text())
    cfg["image_token_id"] += 1
    (ar_copy / "config.json").write_text(json.dumps(cfg))
    _refused(capsys, ["understand", "--model", ar_copy, "--question", "hi"],
             f"gives <|image_pad|> the id {cfg['image_token_id'] - 1}, but config.json's image_token_id is")


def test_tokenizer_larger_than_the_embedding(ar_copy, capsys, no_model_loads):
    cfg = json.loads((ar_copy / "config.json").read_text())
    cfg["vocab_size"] = cfg["image_token_id"]  # the image token itself would index past the table
    (ar_copy / "config.json").write_text(json.dumps(cfg))
    _refused(capsys, ["understand", "--model", ar_copy, "--question", "hi"], "embedding rows (config.json's vocab_size)")


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity"])
def test_config_with_a_number_that_is_not_finite(ar_copy, capsys, no_model_loads, literal):
    text = (ar_copy / "config.json").read_text().replace('"rms_norm_eps": 1e-06', f'"rms_norm_eps": {literal}')
    assert literal in text
    (ar_copy / "config.json").write_text(text)
    _refused(capsys, ["understand", "--model", ar_copy, "--question", "hi"],
             f"config.json is not valid JSON (the number {literal} is not finite)")


@pytest.mark.parametrize("layout,out,message", [
    ("gguf", "x.safetensors", "--layout gguf writes a GGUF file: give --out a .gguf name"),
    ("comfyui", "x.gguf", "--layout comfyui writes safetensors: give --out a .safetensors name"),
])
def test_convert_output_suffix_follows_the_layout(tiny_root, tmp_path, capsys, layout, out, message):
    _refused(capsys, ["convert", tiny_root / "Nexus-GenV2" / "generation_decoder.bin", "--layout", layout,
                      "--out", tmp_path / out], message)
    assert not (tmp_path / out).exists()


# --- names from the OS ----------------------------------------------------------------------------------------------

def test_names_that_are_not_utf8_reach_metadata(tmp_path):
    """`caf\\xe9.png` (legal on Linux) arrives as 'caf\\udce9.png': it is kept, as a visible escape, in the
    safetensors and PNG metadata instead of failing there after all the work."""
    from nexus_core.files.safetensors_write import write_safetensors
    from nexus_core.pipeline import save_png
    from nexus_core.settings.validate import as_utf8

    name = os.fsdecode(b"caf\xe9.png")
    assert as_utf8(name) == "caf\\xe9.png" and as_utf8("café 中文") == "café 中文"
    out = write_safetensors(tmp_path / "x.safetensors", {"x": torch.zeros(1)}, {"prompts": f"image {name}"})
    from safetensors import safe_open
    with safe_open(str(out), "pt") as f:
        assert f.metadata()["prompts"] == "image caf\\xe9.png"
    (png,) = save_png(torch.zeros(1, 8, 8, 3, dtype=torch.uint8), tmp_path / "o.png", {"source": name, "reply": "中文"})
    assert Image.open(png).text == {"source": "caf\\xe9.png", "reply": "中文"}


def test_image_with_a_name_that_is_not_utf8(tiny_root, tmp_path, capsys):
    path = tmp_path / os.fsdecode(b"caf\xe9.png")
    _png(path)
    assert main(["encode", "--model", str(tiny_root / "Nexus-GenV2"), "--image", str(path), "--out",
                 str(tmp_path / "e.safetensors"), "--device", "cpu"]) == 0
    assert (tmp_path / "e.safetensors").is_file()


# --- sampling settings that break the arithmetic --------------------------------------------------------------------

@pytest.mark.parametrize("flag,value,message", [
    ("--temperature", "1e-320", "--temperature must be at least 1e-05, got 9.99989e-321"),
    ("--temperature", "1e-6", "--temperature must be at least 1e-05, got 1e-06"),
    ("--repetition-penalty", "1e-300", "--repetition-penalty must be in [0.001, 1000], got 1e-300"),
    ("--repetition-penalty", "1e9", "--repetition-penalty must be in [0.001, 1000], got 1000000000"),
    ("--repetition-penalty", "-inf", "--repetition-penalty must be a finite number, got -inf"),
    ("--temperature", "-1e5", "--temperature must be greater than 0, got -100000"),
])
def test_sampling_bounds_keep_the_arithmetic_finite(tiny_root, capsys, no_model_loads, flag, value, message):
    _refused(capsys, ["understand", "--model", tiny_root / "Nexus-GenV2", "--question", "hi", "--do-sample", "true",
                      flag, value], message)


def test_the_bounds_themselves_are_accepted():
    from nexus_core.settings.validate import MIN_TEMPERATURE, PENALTY_RANGE, check_sampling
    check_sampling(temperature=MIN_TEMPERATURE, repetition_penalty=PENALTY_RANGE[0])
    check_sampling(repetition_penalty=PENALTY_RANGE[1])


# --- images ---------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
def test_truncated_image_refused_before_the_model(tiny_root, tmp_path, capsys, no_model_loads, fmt):
    path = tmp_path / f"cut.{fmt.lower()}"
    Image.fromarray(np.random.default_rng(1).integers(0, 255, (300, 400, 3), dtype=np.uint8)).save(path, fmt)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    t = time.perf_counter()
    _refused(capsys, ["encode", "--model", tiny_root / "Nexus-GenV2", "--image", path, "--out",
                      tmp_path / "e.safetensors"], "the file may be cut short")
    print(f"truncated {fmt}: refused in {time.perf_counter() - t:.2f} s")


def test_a_strip_longer_than_the_model_takes(tiny_root, tmp_path, capsys, no_model_loads):
    path = _png(tmp_path / "strip.png", w=20000, h=1)
    _refused(capsys, ["encode", "--model", tiny_root / "Nexus-GenV2", "--image", path, "--out",
                      tmp_path / "e.safetensors"], "is 20000x1 pixels: longer than 200:1")


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no named pipes here")
def test_a_named_pipe_is_refused_not_waited_on(tiny_root, tmp_path):
    fifo = tmp_path / "pipe.png"
    os.mkfifo(fifo)
    p = subprocess.run([sys.executable, "-m", "nexus_core.cli", "encode", "--model", str(tiny_root / "Nexus-GenV2"),
                        "--image", str(fifo), "--out", str(tmp_path / "e.safetensors")], capture_output=True, text=True,
                       cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)}, timeout=300)
    assert p.returncode == 2 and "is a named pipe, not a regular file" in p.stderr, p.stderr


def test_a_loop_of_links_is_named(tiny_root, tmp_path, capsys, no_model_loads):
    (tmp_path / "a.png").symlink_to(tmp_path / "b.png")
    (tmp_path / "b.png").symlink_to(tmp_path / "a.png")
    _refused(capsys, ["encode", "--model", tiny_root / "Nexus-GenV2", "--image", tmp_path / "a.png", "--out",
                      tmp_path / "e.safetensors"], "a loop of links")


# --- decoders -------------------------------------------------------------------------------------------------------

def test_decoder_with_one_tensor_of_the_wrong_shape(tiny_root, tmp_path, capsys, no_model_loads):
    sd = torch.load(tiny_root / "Nexus-GenV2" / "generation_decoder.bin", weights_only=True)
    sd["pipe.dit.blocks.1.ff_b.2.weight"] = sd["pipe.dit.blocks.1.ff_b.2.weight"][:, :-1].clone()
    bad = tmp_path / "generation_decoder.bin"
    torch.save(sd, bad)
    err = _refused(capsys, ["generate", "--model", tiny_root / "Nexus-GenV2", "--flux", tiny_root / "FLUX.1-dev",
                            "--prompt", "cat", "--decoder", bad, "--cfg", "1", "--out", tmp_path / "o.png"],
                   "tensor pipe.dit.blocks.1.ff_b.2.weight has shape (256, 1023), expected (256, 1024)")
    assert len(err.strip().splitlines()) == 1


def test_projector_that_does_not_fit_its_dit(tiny_root, tmp_path):
    from nexus_core.decoder import read_decoder
    sd = torch.load(tiny_root / "Nexus-GenV2" / "generation_decoder.bin", weights_only=True)
    for k in ("adapter.3.weight",):
        sd[k] = sd[k][:, :-1].clone()
    torch.save(sd, tmp_path / "d.bin")
    with pytest.raises(NexusError, match=r"tensor adapter.3.weight has shape \(32, 31\), expected \(32, 32\)"):
        read_decoder(tmp_path / "d.bin")


# --- outputs --------------------------------------------------------------------------------------------------------

def test_out_as_a_dangling_link(tiny_root, tmp_path, capsys, no_model_loads):
    (tmp_path / "o.png").symlink_to(tmp_path / "gone" / "o.png")
    _refused(capsys, ["generate", "--model", tiny_root / "Nexus-GenV2", "--flux", tiny_root / "FLUX.1-dev",
                      "--prompt", "cat", "--cfg", "1", "--out", tmp_path / "o.png"], "which does not exist")


def test_a_long_output_name_gets_a_short_temp_name(tmp_path):
    from nexus_core.files.atomic import atomic_write, temp_path
    out = tmp_path / ("n" * 250 + ".png")
    assert len(temp_path(out).name.encode()) <= 255 and temp_path(out).name.endswith(f".{os.getpid()}.partial")
    with atomic_write(out) as tmp:
        tmp.write_bytes(b"ok")
    assert out.read_bytes() == b"ok" and sorted(p.name for p in tmp_path.iterdir()) == [out.name]


def test_an_output_name_longer_than_the_file_system_takes(tiny_root, tmp_path, capsys, no_model_loads):
    _refused(capsys, ["generate", "--model", tiny_root / "Nexus-GenV2", "--flux", tiny_root / "FLUX.1-dev",
                      "--prompt", "cat", "--cfg", "1", "--out", tmp_path / ("n" * 300 + ".png")],
             "has a file name of 304 bytes")


def test_every_file_of_a_batch_checked_first(tiny_root, tmp_path, capsys, no_model_loads):
    (tmp_path / "o_1.png").mkdir()
    _refused(capsys, ["generate", "--model", tiny_root / "Nexus-GenV2", "--flux", tiny_root / "FLUX.1-dev",
                      "--prompt", "cat", "--prompt", "dog", "--cfg", "1", "--out", tmp_path / "o.png"],
             f"--out is a folder: {tmp_path / 'o_1.png'}")
    assert not (tmp_path / "o_0.png").exists()


# --- convert: leftovers and races -----------------------------------------------------------------------------------

SLOW_CONVERT = """
import sys, time
import nexus_core.decoder.convert as conv
from nexus_core.cli import main
real = conv.convert_decoder
def slow(*a, on_tensor=None, **k):
    def hook(i, n):
        if i == 5:
            open(sys.argv[3], "w").close()
            time.sleep(600)
    return real(*a, on_tensor=hook, **k)
conv.convert_decoder = slow
sys.exit(main(["convert", sys.argv[1], "--out", sys.argv[2]]))
"""


def _started_in_the_background():
    """As `cmd &` in a script starts a command: SIGINT ignored (SIGTERM and SIGHUP at their defaults)."""
    from test_bad_input import default_signals
    default_signals()
    signal.signal(signal.SIGINT, signal.SIG_IGN)


@pytest.mark.parametrize("sig,background", [("SIGTERM", False), ("SIGHUP", False), ("SIGTERM", True)])
def test_convert_removes_its_temp_when_terminated(tiny_root, tmp_path, sig, background):
    out, ready = tmp_path / "d.safetensors", tmp_path / "ready"
    from test_bad_input import default_signals
    p = subprocess.Popen([sys.executable, "-c", SLOW_CONVERT, str(tiny_root / "Nexus-GenV2" / "generation_decoder.bin"),
                          str(out), str(ready)], cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)},
                         stderr=subprocess.PIPE, text=True,
                         preexec_fn=_started_in_the_background if background else default_signals)
    while not ready.exists():  # an event, not a clock: the conversion is half-way through
        assert p.poll() is None, p.stderr.read()
        time.sleep(0.05)
    assert any(f.name.endswith(".partial") for f in tmp_path.iterdir())
    p.send_signal(getattr(signal, sig))
    err = p.communicate(timeout=300)[1]
    assert p.returncode == 128 + getattr(signal, sig), err
    assert f"stopped by {sig}" in err and "Traceback" not in err
    assert sorted(f.name for f in tmp_path.iterdir()) == ["ready"]  # no temp, no lock, no output


def test_convert_clears_what_killed_runs_left_in_the_folder(tiny_root, tmp_path, capsys):
    dead = [tmp_path / ".other.safetensors.999999999.partial", tmp_path / ".d.safetensors.999999998.partial"]
    live = tmp_path / f".third.safetensors.{os.getppid()}.partial"
    kept = [live, tmp_path / "notes.partial", tmp_path / ".x.notapid.partial"]
    for f in dead + kept:
        f.write_bytes(b"x" * 1000)
    assert main(["convert", str(tiny_root / "Nexus-GenV2" / "generation_decoder.bin"), "--out",
                 str(tmp_path / "d.safetensors")]) == 0
    err = capsys.readouterr().err
    for f in dead:
        assert not f.exists() and f"removed {f}" in err
    assert all(f.exists() for f in kept)


def test_a_second_writer_of_the_same_output_refuses(tiny_root, tmp_path, capsys):
    from nexus_core.files.atomic import _lock_path
    out = tmp_path / "d.safetensors"
    _lock_path(out).write_text(str(os.getppid()))  # as a live `convert` onto the same --out holds it
    _refused(capsys, ["convert", tiny_root / "Nexus-GenV2" / "generation_decoder.bin", "--out", out],
             f"another process (pid {os.getppid()}) is writing {out} right now", code=1)
    assert not out.exists()
    _lock_path(out).write_text("999999999")  # one left by a run that was killed is taken over
    assert main(["convert", str(tiny_root / "Nexus-GenV2" / "generation_decoder.bin"), "--out", str(out)]) == 0
    assert out.is_file() and not _lock_path(out).exists()


def test_a_file_that_appears_meanwhile_is_not_replaced(tmp_path):
    from nexus_core.files.atomic import atomic_write
    out = tmp_path / "d.bin"
    with pytest.raises(FileExistsError, match="appeared while it was being written"):
        with atomic_write(out, overwrite=False) as tmp:
            tmp.write_bytes(b"mine")
            out.write_bytes(b"someone else's")
    assert out.read_bytes() == b"someone else's"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d.bin"]


# --- output that cannot go where it should ---------------------------------------------------------------------------

CLOSED_STDOUT = "import os, runpy, sys; os.close(1); sys.stdout = None; runpy.run_module('nexus_core.cli', run_name='__main__')"


def test_closed_stdout(tiny_root):
    p = subprocess.run([sys.executable, "-c", CLOSED_STDOUT, "understand", "--model", str(tiny_root / "Nexus-GenV2"),
                        "--question", "hi", "--max-new-tokens", "4", "--device", "cpu"], capture_output=True, text=True,
                       cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)}, timeout=600)
    assert p.returncode == 0 and "standard output is closed" in p.stderr and "Traceback" not in p.stderr, p.stderr


def test_an_ascii_terminal_and_a_chinese_question(tiny_root):
    p = subprocess.run([sys.executable, "-m", "nexus_core.cli", "understand", "--model", str(tiny_root / "Nexus-GenV2"),
                        "--question", "这是什么？", "--max-new-tokens", "6", "--device", "cpu"], capture_output=True,
                       cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO), "PYTHONIOENCODING": "ascii"}, timeout=600)
    assert p.returncode == 0 and b"Traceback" not in p.stderr, p.stderr
    p.stdout.decode("ascii")  # whatever the reply holds, what was written is ASCII (escapes for the rest)


def test_replies_cannot_drive_the_terminal():
    from nexus_core.cli.text_stream import for_terminal
    assert for_terminal("red\x1b[31m\u202ex\x85\x07 中文 👨\u200d👩\tok\n") == "red\\x1b[31m\\u202ex\\x85\\x07 中文 👨\u200d👩\tok\n"


def test_a_working_folder_that_was_deleted(tmp_path):
    gone = tmp_path / "gone"
    gone.mkdir()
    code = ("import os, runpy, sys; os.chdir(sys.argv[1]); os.rmdir(sys.argv[1]); sys.argv[1:] = ['--version']; "
            "runpy.run_module('nexus_core.cli', run_name='__main__')")
    p = subprocess.run([sys.executable, "-c", code, str(gone)], capture_output=True, text=True,
                       env={**os.environ, "PYTHONPATH": str(REPO)}, timeout=300)
    assert p.returncode == 2 and "the current folder no longer exists" in p.stderr, p.stderr
