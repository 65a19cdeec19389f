"""Issue #10, classes 1-2: bad input through the `nexus-gen` CLI, as a user types it, on the tiny model set.

Every case must end in one clear line (exit 2, "nexus-gen: error: ..." naming the setting), never a traceback,
and must be refused before any model loads: the loaders are replaced by tripwires here. A few cases run in a
real subprocess to check what only a process shows: no torch import for a settings error (so the message
comes in a fraction of a second), bytes that are not UTF-8 in argv, Ctrl-C while modules import.
"""
import os
import re
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from PIL import Image

from nexus_core.cli import main

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture
def no_model_loads(monkeypatch):
    """Fail the test if anything heavy loads: the refusals must come first."""
    import nexus_core.ar
    import nexus_core.decoder
    import nexus_core.pipeline

    def tripwire(*a, **k):
        raise AssertionError("a model was loaded before the bad input was refused")

    monkeypatch.setattr(nexus_core.ar, "load_ar", tripwire)
    monkeypatch.setattr(nexus_core.decoder, "load_decoder", tripwire)
    monkeypatch.setattr(nexus_core.pipeline, "load_flux", tripwire)


@pytest.fixture
def files(tiny_root, tmp_path):
    img = tmp_path / "in.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (40, 50, 3), dtype=np.uint8)).save(img)
    (tmp_path / "afile").write_text("keep me")
    return {"M": str(tiny_root / "Nexus-GenV2"), "F": str(tiny_root / "FLUX.1-dev"), "T": str(tmp_path),
            "IMG": str(img), "GEN_BIN": str(tiny_root / "Nexus-GenV2" / "generation_decoder.bin"),
            "EDIT_BIN": str(tiny_root / "Nexus-GenV2" / "edit_decoder.bin")}


GEN = "generate --model {M} --flux {F} --prompt cat --mode fast --steps 2 --width 32 --height 32 --cfg 1"
UND = "understand --model {M} --question hi --max-new-tokens 4 --device cpu"
ENC = "encode --model {M} --image {IMG} --out {T}/e.safetensors"
# (case, command line, what the message must say)
CASES = [
    ("width 0", GEN + " --width 0 --out {T}/a.png", r"--width must be at least 16, got 0"),
    ("height -5", GEN + " --height -5 --out {T}/a.png", r"--height must be at least 16, got -5"),
    ("width 100000", GEN + " --width 100000 --out {T}/a.png", r"--width must be at most 4096, got 100000 \(raise --max-side"),
    ("width over --max-side", GEN + " --width 600 --max-side 512 --out {T}/a.png", r"--width must be at most 512"),
    ("steps 0", GEN + " --steps 0 --out {T}/a.png", r"--steps must be at least 1, got 0"),
    ("steps 100000", GEN + " --steps 100000 --out {T}/a.png", r"--steps must be at most 10000"),
    ("cfg nan", GEN + " --cfg nan --out {T}/a.png", r"--cfg must be a finite number, got nan"),
    ("cfg -1", GEN + " --cfg -1 --out {T}/a.png", r"--cfg must be in \[0, 100\], got -1"),
    ("guidance inf", GEN + " --guidance inf --out {T}/a.png", r"--guidance must be a finite number, got inf"),
    ("seed 2**70", GEN + f" --seed {2**70} --out {{T}}/a.png", r"--seed must be at most 18446744073709551615"),
    ("seed -1", GEN + " --seed -1 --out {T}/a.png", r"--seed must be at least 0, got -1"),
    ("top_p 1.5", UND + " --top-p 1.5", r"--top-p must be in \(0, 1\], got 1.5"),
    ("top_p 0", UND + " --top-p 0", r"--top-p must be in \(0, 1\], got 0"),
    ("temperature 0", UND + " --temperature 0", r"--temperature must be greater than 0, got 0"),
    ("temperature nan", UND + " --temperature nan", r"--temperature must be a finite number"),
    ("top_k -1", UND + " --top-k -1", r"--top-k must be at least 0, got -1"),
    ("repetition penalty 0", UND + " --repetition-penalty 0", r"--repetition-penalty must be in \[0.001, 1000\], got 0"),
    ("max-new-tokens 0", UND + " --max-new-tokens 0", r"--max-new-tokens must be at least 1, got 0"),
    ("understand seed 2**70", UND + f" --do-sample true --seed {2**70}", r"--seed must be at most"),
    ("budget below the image span", "embeds --model {M} --prompt cat --max-new-tokens 40 --out {T}/e.safetensors",
     r"--max-new-tokens 40 cannot hold an image \(83 tokens"),
    ("out in a missing folder", GEN + " --out {T}/nope/a.png", r"Output folder does not exist: .*nope"),
    ("out is a folder", GEN + " --out {T}", r"--out is a folder"),
    ("out without image suffix", GEN + " --out {T}/a.xyz", r"--out .*a.xyz needs an image file suffix"),
    ("out is the input image", "variation --model {M} --flux {F} --image {IMG} --out {IMG}", r"is the input file"),
    ("save-latents in a missing folder", GEN + " --out {T}/a.png --save-latents {T}/nope/l.safetensors",
     r"Output folder does not exist: .*nope \(--save-latents\)"),
    ("save-latents = out", GEN + " --out {T}/a.png --save-latents {T}/a.png", r"--save-latents and --out name the same"),
    ("embeds out in a missing folder", "embeds --model {M} --prompt x --mode fast --out {T}/no/e.safetensors",
     r"Output folder does not exist"),
    ("device mps", UND.replace("--device cpu", "--device mps"), r"Device 'mps' is not available.*usable here: cpu"),
    ("device xpu", UND.replace("--device cpu", "--device xpu"), r"Device 'xpu' is not available"),
    ("device cuda:3", UND.replace("--device cpu", "--device cuda:3"), r"Device 'cuda:3'"),
    ("device banana", UND.replace("--device cpu", "--device banana"), r"Unknown device 'banana'"),
    ("dtype int8", UND + " --dtype int8", r"Unknown dtype 'int8'"),
    ("model folder missing", "understand --model {T}/none --question x", r"model folder not found: .*none"),
    ("decoder file missing", GEN + " --decoder {T}/none.bin --out {T}/a.png", r"Decoder file not found: .*none.bin"),
    ("wrong decoder for the task", GEN + " --decoder {EDIT_BIN} --out {T}/a.png",
     r"is the editing decoder, but this task needs the generation decoder"),
    ("flux folder missing", GEN.replace("--flux {F}", "--flux {T}/noflux") + " --out {T}/a.png",
     r"FLUX folder not found"),
    ("image missing", ENC.replace("{IMG}", "{T}/none.png"), r"Image not found: .*none.png"),
    ("image is not an image", ENC.replace("{IMG}", "{M}/config.json"), r"Cannot read image .*config.json: not an image"),
    ("image is a folder", ENC.replace("{IMG}", "{T}"), r"Image .* is a folder"),
    ("tokens 100", ENC + " --tokens 100", r"tokens must be one of \[81, 324\]"),
    ("empty prompt in a batch", GEN + " --prompt= --out {T}/a.png", r"--prompt is empty"),
    ("empty question", "understand --model {M} --question=", r"--question is empty \(and no --image"),
    ("empty instruction", "edit --model {M} --flux {F} --image {IMG} --instruction= --out {T}/a.png",
     r"--instruction is empty"),
    ("embeds needs prompt or image", "embeds --model {M} --out {T}/e.safetensors", r"Give either --prompt"),
    ("make-tiny onto a file", "make-tiny {T}/afile", r"make-tiny folder .*afile is a file, not a folder"),
    ("make-tiny under a file", "make-tiny {T}/afile/sub", r"cannot be created: .*afile is a file"),
    ("demo onto a file", "demo --out {T}/afile", r"--out .*afile is a file"),
    ("convert out = source", "convert {GEN_BIN} --out {GEN_BIN}", r"is the source file"),
]


@pytest.mark.parametrize("case,line,message", CASES, ids=[c[0] for c in CASES])
def test_refused_in_one_line_before_any_model_loads(case, line, message, files, capsys, no_model_loads):
    argv = line.format(**files).split()
    before = sorted(os.listdir(files["T"]))
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert re.search(message, err), err
    assert err.strip().startswith("nexus-gen: error: ") and len(err.strip().splitlines()) == 1, err
    assert sorted(os.listdir(files["T"])) == before  # nothing written, nothing removed
    assert open(os.path.join(files["T"], "afile")).read() == "keep me"


def test_non_utf8_prompt(files, capsys, no_model_loads):
    bad = os.fsdecode(b"caf\xe9")  # what Python makes of a Latin-1 byte in argv
    argv = (GEN + " --out {T}/a.png").format(**files).split() + ["--prompt", bad]
    assert main(argv) == 2
    assert "--prompt is not valid UTF-8 text (byte 0xe9 at character 4)" in capsys.readouterr().err


def test_decompression_bomb_refused_in_one_line(files, capsys, monkeypatch, no_model_loads):
    # A lower limit makes a small file behave like a 20000x20000 one: PIL's own guard, same code path.
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    for size in ((40, 40), (100, 100)):  # 1x..2x the limit (PIL only warns) and over 2x (PIL raises)
        Image.new("1", size).save(os.path.join(files["T"], "bomb.png"))
        assert main(ENC.replace("{IMG}", "{T}/bomb.png").format(**files).split()) == 2
        err = capsys.readouterr().err
        assert re.search(r"bomb.png is too large to decode safely \(\d[\d,]* pixels\): the limit is 1,000", err), err


def _run(args, **kw):
    t = time.perf_counter()
    p = subprocess.run([sys.executable, *args], capture_output=True, cwd=REPO,
                       env={**os.environ, "PYTHONPATH": REPO}, **kw)
    return p, time.perf_counter() - t


def test_settings_error_costs_no_torch_import(files):
    """The refusal comes before torch is even imported: the time to the message is Python's start-up."""
    argv = (GEN + " --width 100000 --out {T}/a.png").format(**files).split()
    p, seconds = _run(["-X", "importtime", "-m", "nexus_core.cli", *argv])
    err = p.stderr.decode()
    assert p.returncode == 2 and "--width must be at most 4096" in err
    imported = {line.split("|")[-1].strip() for line in err.splitlines() if line.startswith("import time:")}
    assert "torch" not in imported and "transformers" not in imported, sorted(imported)[:20]
    print(f"time to message for --width 100000: {seconds:.2f} s")


def test_non_utf8_bytes_in_a_real_argv(files):
    argv = UND.format(**files).encode().split() + [b"--question", b"caf\xe9"]
    p, _ = _run([b"-m", b"nexus_core.cli", *argv])
    assert p.returncode == 2 and b"--question is not valid UTF-8 text (byte 0xe9" in p.stderr
    assert b"Traceback" not in p.stderr


def default_signals():
    """In the child: Ctrl-C and the stop signals as a terminal gives them. A suite started in the background by a
    script runs with SIGINT ignored (and under nohup, SIGHUP), which children inherit, and a program rightly leaves
    an ignored signal ignored: the test would then measure how it was launched."""
    for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(s, signal.SIG_DFL)


MARK_CLI_IMPORT = """
import sys


class _Mark:  # says "started" the moment Python looks for nexus_core.cli, just before its first line runs
    def find_spec(self, name, path=None, target=None):
        if name == "nexus_core.cli":
            sys.meta_path.remove(self)
            sys.stderr.write("started\\n")
            sys.stderr.flush()
        return None


sys.meta_path.insert(0, _Mark())
"""


@pytest.mark.parametrize("delay", [0.05, 0.2, 0.4, 1.0, 2.0])
def test_ctrl_c_during_start_up(files, delay, tmp_path):
    """Ctrl-C while the command starts (its own imports, then torch's and transformers') ends with one line and
    status 130. The delay counts from the moment Python looks for nexus_core.cli (an import hook in a
    sitecustomize says so), so a loaded machine that starts Python slowly cannot move the Ctrl-C into the
    interpreter's own start-up, where no program can catch it."""
    (tmp_path / "sitecustomize.py").write_text(MARK_CLI_IMPORT)
    p = subprocess.Popen([sys.executable, "-m", "nexus_core.cli", *UND.format(**files).split()],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=REPO, preexec_fn=default_signals,
                         env={**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), REPO])})
    assert p.stderr.readline() == b"started\n"
    time.sleep(delay)
    p.send_signal(signal.SIGINT)
    _, err = p.communicate(timeout=600)
    err = err.decode()
    assert "Traceback" not in err, err
    assert p.returncode == 130 and err.strip().endswith("nexus-gen: cancelled"), (p.returncode, err)


def test_start_up_handler_only_for_the_program():
    """Importing the CLI as a library (these tests, a host) leaves Ctrl-C to whoever runs the process."""
    import importlib

    import nexus_core.cli
    before = signal.getsignal(signal.SIGINT)
    importlib.reload(nexus_core.cli)
    assert signal.getsignal(signal.SIGINT) is before


@pytest.fixture
def ctrl_c_reaches_us():
    """Ctrl-C delivered as in a terminal, even when the suite runs with SIGINT ignored (a backgrounded run)."""
    before = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, before)


def test_ctrl_c_that_a_library_turns_into_another_error(files, capsys, monkeypatch, ctrl_c_reaches_us):
    """transformers' lazy imports re-raise a KeyboardInterrupt as ModuleNotFoundError: still a cancel."""
    import nexus_core.cli.commands as cli

    def interrupted_inside_a_lazy_import(a):
        try:
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(5)
        except KeyboardInterrupt:
            raise ModuleNotFoundError("Could not import module 'Qwen2_5_VLForConditionalGeneration'") from None

    monkeypatch.setattr(cli, "cmd_understand", interrupted_inside_a_lazy_import)
    assert main(UND.format(**files).split()) == 130
    assert capsys.readouterr().err.strip() == "nexus-gen: cancelled"
    with pytest.raises(ModuleNotFoundError):  # without a Ctrl-C the same error is not hidden
        monkeypatch.setattr(cli, "cmd_understand", lambda a: (_ for _ in ()).throw(ModuleNotFoundError("x")))
        main(UND.format(**files).split())


def test_a_ctrl_c_inside_an_import_is_recognised(tmp_path, monkeypatch):
    """A Ctrl-C that lands in Python's import machinery exits at once (CPython can swallow it there, printing a
    traceback as "Exception ignored"); elsewhere it stays a KeyboardInterrupt."""
    import importlib
    import nexus_core.cli.interrupts as cli

    (tmp_path / "nexus_probe_module.py").write_text("import sys\nFRAME = sys._getframe()\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    probe = importlib.import_module("nexus_probe_module")
    assert cli.importing(probe.FRAME)
    assert not cli.importing(sys._getframe())
