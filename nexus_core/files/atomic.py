"""Writes that never leave a half-written file under the real name, and that clean up after killed runs.

The data goes to `.<name>.<pid>.partial` beside the target and is renamed over it when complete. A run that
was killed (SIGKILL, power loss) cannot remove its temp file; the next write to the same target removes temp
files of that exact pattern whose process is gone, and nothing else.
"""
from __future__ import annotations

import contextlib
import os
import re
import time
from pathlib import Path

SUFFIX = ".partial"
_WINDOWS_STALE_S = 3600  # no cheap liveness test there: a temp nobody wrote to for an hour is stale


def temp_path(path) -> Path:
    path = Path(path)
    return path.with_name(f".{path.name}.{os.getpid()}{SUFFIX}")


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return False  # an earlier process that had our pid
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's live process
    except (OverflowError, ValueError, OSError):
        return False
    return True


def remove_stale_temps(path) -> list[Path]:
    """Remove `.<name>.<pid>.partial` files of dead processes beside `path`; return what was removed."""
    path = Path(path)
    pattern = re.compile(rf"^\.{re.escape(path.name)}\.(\d+){re.escape(SUFFIX)}$")
    removed = []
    try:
        entries = list(os.scandir(path.parent))
    except OSError:
        return removed
    for entry in entries:
        m = pattern.match(entry.name)
        if not m or not entry.is_file(follow_symlinks=False):
            continue
        if os.name == "nt":
            stale = time.time() - entry.stat().st_mtime > _WINDOWS_STALE_S
        else:
            stale = not _pid_alive(int(m.group(1)))
        if stale:
            with contextlib.suppress(OSError):
                os.unlink(entry.path)
                removed.append(Path(entry.path))
    return removed


@contextlib.contextmanager
def atomic_write(path):
    """`with atomic_write(out) as tmp:` write tmp; on success it is flushed to disk and renamed to `out`,
    on any error (or interrupt) it is removed and `out` is untouched. A symbolic link is followed (the file it
    points to is replaced, the link stays); a device or pipe (/dev/null, a FIFO) is written in place, since
    renaming over it would replace the device node itself."""
    path = Path(os.path.realpath(path))
    if path.exists() and not path.is_file():
        yield path
        return
    remove_stale_temps(path)
    tmp = temp_path(path)
    try:
        yield tmp
        fd = os.open(tmp, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    finally:
        if os.path.lexists(tmp):
            os.unlink(tmp)


def default_mode() -> int:
    """The mode open() gives a new file here: 0o666 less the umask."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


def relax_private_files(root, since: float) -> None:
    """Give files under `root` written since `since` (time.time()) with mode 0600 the usual mode: safetensors'
    writer (used by transformers' save_pretrained) creates its files private."""
    mode = default_mode()
    for dirpath, _, names in os.walk(root):
        for name in names:
            p = os.path.join(dirpath, name)
            st = os.lstat(p)
            if st.st_mtime >= since - 1 and (st.st_mode & 0o777) == 0o600 and mode != 0o600:
                os.chmod(p, mode)
