"""What the benchmarks measure a process with (shared by full_size.py, full_size_comfy.py and soak.py): its
memory as /proc says it, a thread sampling its peaks, the kernel's peak mark reset, and the page cache dropped so
the next read comes from the disk. Linux only."""
from __future__ import annotations

import os
import subprocess
import threading
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
GB = 1e9


def status_kb(pid="self") -> dict[str, int]:
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, rest = line.partition(":")
            if key in ("VmRSS", "VmHWM", "RssAnon", "RssFile", "RssShmem"):
                out[key] = int(rest.split()[0])
    return out


class Sampler:
    """Peaks of RssAnon and RssFile of a process, sampled every `every` seconds in a thread."""

    def __init__(self, pid="self", every=0.02):
        self.pid, self.every, self.peak = pid, every, {"RssAnon": 0, "RssFile": 0, "VmRSS": 0}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self._stop.is_set():
            try:
                s = status_kb(self.pid)
            except (FileNotFoundError, ProcessLookupError):
                return
            for k in self.peak:
                self.peak[k] = max(self.peak[k], s.get(k, 0))
            self._stop.wait(self.every)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


def reset_hwm(pid="self") -> bool:
    """Reset the kernel's peak-RSS mark (needs root or the process's owner); False where refused."""
    try:
        with open(f"/proc/{pid}/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def drop_caches(files) -> str:
    """Make the next read of `files` come from the disk."""
    subprocess.run(["sync"], check=False)
    try:
        with open("/proc/sys/vm/drop_caches", "w") as f:
            f.write("3")
        return "drop_caches"
    except OSError:
        for p in files:
            fd = os.open(p, os.O_RDONLY)
            try:
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            finally:
                os.close(fd)
        return "fadvise"
