"""Small file-writing rules the conversions rely on, each against what the operating system reports: the umask
is left as it was, stale temps of other targets stay unless asked, progress per tensor, closed GGUF files."""
import gc
import os
import warnings

import torch

from nexus_core.files import atomic
from nexus_core.files.atomic import default_mode, remove_stale_temps
from nexus_core.files.safetensors_write import write_safetensors_streamed


def test_default_mode_reads_the_umask_without_changing_it():
    old = os.umask(0o027)
    try:
        assert default_mode() == 0o640
        assert os.umask(0o027) == 0o027  # still the process's umask: later files keep their usual mode
    finally:
        os.umask(old)


def _dead_temp(target):
    """A temp of `target` left by a process that no longer exists (pid 2**22 - 3 is above Linux's default max)."""
    p = target.with_name(f".{target.name}.{2**22 - 3}{atomic.SUFFIX}")
    p.write_bytes(b"x" * 10)
    return p


def test_stale_temps_of_other_targets_stay_unless_the_folder_is_asked(tmp_path):
    a, b = tmp_path / "a.safetensors", tmp_path / "b.safetensors"
    ta, tb = _dead_temp(a), _dead_temp(b)
    assert atomic._TEMP.match(ta.name), "the helper must name temps the way the module does"
    assert [p for p, _ in remove_stale_temps(a)] == [ta]
    assert not ta.exists() and tb.exists()
    assert [p for p, _ in remove_stale_temps(a, folder=True)] == [tb]


def test_progress_is_reported_once_per_tensor(tmp_path):
    seen = []
    entries = [(f"t{i}", (2, 3), torch.float32, lambda name: torch.ones(2, 3)) for i in range(4)]
    write_safetensors_streamed(tmp_path / "x.safetensors", entries, on_tensor=lambda i, n: seen.append((i, n)))
    assert seen == [(1, 4), (2, 4), (3, 4), (4, 4)]


def test_gguf_writer_closes_its_file(tiny_root, tmp_path):
    from nexus_core.cli import main
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ResourceWarning)
        assert main(["convert", str(tiny_root / "Nexus-GenV2" / "generation_decoder.bin"), "--layout", "gguf",
                     "--out", str(tmp_path / "g.gguf")]) == 0
        gc.collect()
    assert not [w for w in caught if issubclass(w.category, ResourceWarning) and "g.gguf" in str(w.message)]
