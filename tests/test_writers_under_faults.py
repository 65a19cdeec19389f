"""Writers under races and faults (issue 29, class 3), with the faults injected: locks that are empty or garbage,
a dead writer's temp of the same target cleared by every writer, a file that appears at the target mid-write,
a file system without hard links, a rename that fails, and `--overwrite` not given never replacing, through
every command that writes (convert to safetensors and GGUF, convert-lora, the one-file AR)."""
import os

import pytest
import torch
from safetensors.torch import save_file

from nexus_core.cli import main
from nexus_core.files import atomic
from nexus_core.files.atomic import Busy, atomic_write, writer_lock


def leftovers(folder):
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


@pytest.mark.parametrize("content", ["", "garbage", "-5", "0", "99999999999999999999999", "12 34"])
def test_a_lock_that_names_no_live_process_is_taken_over(tmp_path, content):
    target = tmp_path / "x.bin"
    atomic._lock_path(target).write_text(content)
    with writer_lock(target) as lock:
        assert lock.read_text() == str(os.getpid())
    assert not atomic._lock_path(target).exists()


def test_a_lock_of_a_live_process_is_respected(tmp_path):
    target = tmp_path / "x.bin"
    atomic._lock_path(target).write_text(str(os.getppid()))
    with pytest.raises(Busy, match=f"pid {os.getppid()}"):
        with writer_lock(target):
            pass
    assert atomic._lock_path(target).read_text() == str(os.getppid())  # left to its owner


def _dead_temp(target):
    p = target.with_name(f".{target.name}.{2**22 - 3}{atomic.SUFFIX}")
    p.write_bytes(b"half a file")
    return p


def _xlabs(path):
    h, r = 8, 2
    save_file({"double_blocks.0.processor.proj_lora1.down.weight": torch.ones(r, h),
               "double_blocks.0.processor.proj_lora1.up.weight": torch.ones(h, r)}, str(path))


def _writers(tiny_root, tmp_path):
    """(name, argv builder taking --out) of every command that writes a file."""
    dec = str(tiny_root / "Nexus-GenV2" / "generation_decoder.bin")
    lora = tmp_path / "xlabs.safetensors"
    _xlabs(lora)
    return {
        "convert safetensors": (lambda out: ["convert", dec, "--out", str(out)], "d.safetensors"),
        "convert gguf": (lambda out: ["convert", dec, "--layout", "gguf", "--out", str(out)], "d.gguf"),
        "convert-lora": (lambda out: ["convert-lora", str(lora), "--out", str(out)], "l.safetensors"),
        "one-file AR": (lambda out: ["convert", str(tiny_root / "Nexus-GenV2"), "--out", str(out)], "a.safetensors"),
    }


@pytest.mark.parametrize("writer", ["convert safetensors", "convert gguf", "convert-lora", "one-file AR"])
def test_every_writer_clears_a_dead_writers_temp_and_never_replaces_unasked(tiny_root, tmp_path, writer, capsys):
    pytest.importorskip("gguf") if writer == "convert gguf" else None
    argv, name = _writers(tiny_root, tmp_path)[writer]
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    out = out_dir / name
    stale = _dead_temp(out)
    assert main(argv(out)) == 0
    assert not stale.exists() and leftovers(out_dir) == []
    first = out.read_bytes()
    assert main(argv(out)) == 2  # exists, no --overwrite
    assert "already exists" in capsys.readouterr().err and out.read_bytes() == first
    assert main(argv(out) + ["--overwrite"]) == 0 and leftovers(out_dir) == []


@pytest.mark.parametrize("writer", ["convert safetensors", "convert-lora", "one-file AR"])
@pytest.mark.parametrize("hard_links", [True, False])
def test_a_file_that_appears_mid_write_is_not_replaced(tiny_root, tmp_path, monkeypatch, writer, hard_links, capsys):
    """Another program creates the target while we write: without --overwrite it stays as it is, whether or not
    the file system has hard links (the no-link fallback checks, then renames), and our temp is gone."""
    argv, name = _writers(tiny_root, tmp_path)[writer]
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    out = out_dir / name
    real_link = os.link

    def link(src, dst, *a, **k):
        if str(dst) == str(out):
            out.write_text("someone else's file")  # appears just before we give the temp its name
            if not hard_links:
                raise OSError(1, "Operation not permitted")  # e.g. FAT or some network file systems
        return real_link(src, dst, *a, **k)
    monkeypatch.setattr(os, "link", link)
    assert main(argv(out)) == 1
    assert "appeared while it was being written" in capsys.readouterr().err
    assert out.read_text() == "someone else's file" and leftovers(out_dir) == []


def test_without_hard_links_a_new_file_is_still_written(tmp_path, monkeypatch):
    monkeypatch.setattr(os, "link", lambda *a, **k: (_ for _ in ()).throw(OSError(1, "not permitted")))
    out = tmp_path / "x.bin"
    with atomic_write(out, overwrite=False) as tmp:
        tmp.write_bytes(b"new")
    assert out.read_bytes() == b"new" and leftovers(tmp_path) == []


def test_a_failing_rename_leaves_the_old_file_and_no_temp(tmp_path, monkeypatch):
    out = tmp_path / "x.bin"
    out.write_bytes(b"old")

    def broken(*a, **k):
        raise OSError(28, "No space left on device")
    monkeypatch.setattr(os, "replace", broken)
    with pytest.raises(OSError, match="No space left"):
        with atomic_write(out) as tmp:
            tmp.write_bytes(b"new")
    assert out.read_bytes() == b"old" and leftovers(tmp_path) == []


def test_an_error_while_writing_leaves_nothing(tmp_path):
    out = tmp_path / "x.bin"
    with pytest.raises(RuntimeError):
        with atomic_write(out) as tmp:
            tmp.write_bytes(b"half")
            raise RuntimeError("the source ended early")
    assert not out.exists() and leftovers(tmp_path) == []
