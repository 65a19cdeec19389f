"""Issue #10, class 3: a conversion never loses data.

The output is never the source (same path, another spelling, a symbolic or hard link), an existing file is
replaced only when asked and only once the new file is complete, and a killed run's temp file is removed by
the next run, which touches nothing else.
"""
import hashlib
import os
import signal
import subprocess
import sys

import pytest

from nexus_core.cli import main
from nexus_core.decoder import read_decoder
from nexus_core.decoder.convert import convert_decoder
from nexus_core.errors import NexusCancelled, NexusError

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _digest(path):
    return hashlib.sha256(open(path, "rb").read()).hexdigest()


@pytest.fixture
def src(tiny_root, tmp_path):
    p = tmp_path / "generation_decoder.bin"
    p.write_bytes((tiny_root / "Nexus-GenV2" / "generation_decoder.bin").read_bytes())
    return p


def _aliases(src):
    d = src.parent
    os.symlink(src, d / "link.bin")
    os.link(src, d / "hard.bin")
    os.symlink(d, d / "dirlink")
    return {"same path": src, "other spelling": d / ".." / d.name / src.name, "symbolic link": d / "link.bin",
            "hard link": d / "hard.bin", "through a linked folder": d / "dirlink" / src.name}


def test_output_is_never_the_source(src, capsys):
    digest = _digest(src)
    for what, out in _aliases(src).items():
        with pytest.raises(NexusError, match="is the source file"):
            convert_decoder(src, out, overwrite=True)  # not even when overwriting is allowed
        assert main(["convert", str(src), "--out", str(out), "--overwrite"]) == 2, what
        assert "is the source file" in capsys.readouterr().err
        assert _digest(src) == digest, what
    assert read_decoder(src).kind == "generation"


def test_existing_output_needs_overwrite_and_is_replaced_atomically(src, tmp_path, capsys):
    out = tmp_path / "d.safetensors"
    out.write_text("my own file")
    with pytest.raises(NexusError, match="already exists"):
        convert_decoder(src, out)
    assert main(["convert", str(src), "--out", str(out)]) == 2
    assert "already exists; choose another name or pass --overwrite" in capsys.readouterr().err
    assert out.read_text() == "my own file"
    # overwrite asked, but the run is cancelled half way: the old file is still whole
    seen = []
    with pytest.raises(NexusCancelled):
        convert_decoder(src, out, overwrite=True, on_tensor=lambda i, n: seen.append(i),
                        should_stop=lambda: len(seen) > 10)
    assert out.read_text() == "my own file"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d.safetensors", "generation_decoder.bin"]
    assert main(["convert", str(src), "--out", str(out), "--overwrite"]) == 0
    assert read_decoder(out).kind == "generation"


def test_not_enough_disk_space(src, tmp_path, monkeypatch):
    import shutil
    monkeypatch.setattr(shutil, "disk_usage", lambda p: shutil._ntuple_diskusage(10**9, 10**9 - 1000, 1000))
    with pytest.raises(NexusError, match="Not enough disk space .* GiB are free"):
        convert_decoder(src, tmp_path / "d.safetensors")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["generation_decoder.bin"]


KILL_AT_TENSOR_20 = """
import os, signal, sys
from nexus_core.decoder.convert import convert_decoder
convert_decoder(sys.argv[1], sys.argv[2], on_tensor=lambda i, n: i == 20 and os.kill(os.getpid(), signal.SIGKILL))
"""


def test_killed_conversion_temp_is_removed_by_the_next_run(src, tmp_path):
    out = tmp_path / "d.safetensors"
    p = subprocess.run([sys.executable, "-c", KILL_AT_TENSOR_20, str(src), str(out)], cwd=REPO,
                       env={**os.environ, "PYTHONPATH": REPO})
    assert p.returncode == -signal.SIGKILL
    stale = [f for f in tmp_path.iterdir() if f.name.endswith(".partial")]
    assert len(stale) == 1 and stale[0].name.startswith(".d.safetensors.") and not out.exists()
    # a dead run's temp of another output in the folder goes too (convert clears the folder of killed runs' temps);
    # things that look alike but are not ours to remove stay: a live process's temp, other names
    dead_other = tmp_path / ".e.safetensors.999999999.partial"
    live = tmp_path / f".d.safetensors.{os.getppid()}.partial"
    others = [live, tmp_path / "d.safetensors.partial", tmp_path / ".d.safetensors.notapid.partial",
              tmp_path / "notes.partial"]
    for f in others + [dead_other]:
        f.write_text("not yours")
    assert main(["convert", str(src), "--out", str(out)]) == 0
    assert read_decoder(out).kind == "generation"
    assert not stale[0].exists() and not dead_other.exists()
    assert all(f.read_text() == "not yours" for f in others)


def test_writes_keep_links_and_special_files(tmp_path):
    """Renaming over a symbolic link replaces the link, over a device or FIFO replaces the node itself (an
    `--out /dev/null` once turned /dev/null into a plain file): links are followed, special files written in
    place. A FIFO stands in for /dev/null here, so a regression cannot damage the machine running the tests."""
    import stat
    import threading

    import torch
    from safetensors.torch import load_file

    from nexus_core.files.safetensors_write import write_safetensors

    real = tmp_path / "real.safetensors"
    real.write_text("old")
    os.symlink(real, tmp_path / "link.safetensors")
    write_safetensors(tmp_path / "link.safetensors", {"x": torch.arange(3.0)})
    assert os.path.islink(tmp_path / "link.safetensors")
    assert load_file(str(real))["x"].tolist() == [0.0, 1.0, 2.0]

    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    got = []
    reader = threading.Thread(target=lambda: got.append(open(fifo, "rb").read()), daemon=True)
    reader.start()
    write_safetensors(fifo, {"x": torch.arange(3.0)})
    reader.join()  # the write opened and closed the fifo, so the reader has its EOF: no clock needed
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)
    assert got and got[0].endswith(torch.arange(3.0).numpy().tobytes())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fifo", "link.safetensors", "real.safetensors"]


def test_a_folder_conversion_never_writes_over_a_file_it_reads(tmp_path, tiny_root, capsys):
    """`convert AR_FOLDER --out <one of its own shards> --overwrite` used to replace the shard with the fp8 file:
    every file the command reads is a source, through links and hard links, with or without --overwrite."""
    import shutil

    ar = tmp_path / "ar"
    shutil.copytree(tiny_root / "Nexus-GenV2", ar, ignore=shutil.ignore_patterns("*decoder*"))
    shard = sorted(ar.glob("model-*.safetensors"))[-1]
    digests = {p.name: _digest(p) for p in ar.iterdir()}
    os.symlink(shard, tmp_path / "shard_link.safetensors")
    os.link(shard, tmp_path / "shard_hard.safetensors")
    for out in (shard, tmp_path / "shard_link.safetensors", tmp_path / "shard_hard.safetensors",
                ar / ".." / "ar" / shard.name):
        for extra in ([], ["--overwrite"]):
            assert main(["convert", str(ar), "--out", str(out), *extra]) == 2, (out, extra)
            assert f"{shard}, a file the conversion reads," in capsys.readouterr().err
    assert {p.name: _digest(p) for p in ar.iterdir()} == digests
    # a new file beside the shards is not a source: refused only if it exists and --overwrite is not given
    assert main(["convert", str(ar), "--out", str(tmp_path / "one.safetensors")]) == 0


def test_a_decoder_conversion_never_writes_over_the_config_it_reads(tmp_path, tiny_root, capsys):
    """An editing decoder's conversion reads the AR config.json beside it: an --out that is that file (here a
    link named like an output) is refused and the config is kept."""
    import shutil

    folder = tmp_path / "Nexus-GenV2"
    folder.mkdir()
    shutil.copy(tiny_root / "Nexus-GenV2" / "edit_decoder.bin", folder / "edit_decoder.bin")
    shutil.copy(tiny_root / "Nexus-GenV2" / "config.json", folder / "config.json")
    before = _digest(folder / "config.json")
    link = tmp_path / "edit.safetensors"
    os.symlink(folder / "config.json", link)
    assert main(["convert", str(folder / "edit_decoder.bin"), "--out", str(link), "--overwrite"]) == 2
    assert "a file the conversion reads" in capsys.readouterr().err
    assert _digest(folder / "config.json") == before
