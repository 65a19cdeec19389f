"""Writes that never leave a half-written file under the real name, and that clean up after killed runs.

The data goes to `.<name>.<pid>.partial` beside the target and is renamed over it when complete (a name too
long for that gets a shortened name plus a hash of it). A run that was killed (SIGKILL, power loss) cannot
remove its temp file: writers remove temp files of that pattern whose process is gone, for their own target
(every write) or for the whole folder (`remove_stale_temps(..., folder=True)`, what `convert` does at start).
A writer holds `.<name>.<pid>.lock`-style lock beside the target while it writes, so a second writer to the same
target refuses at once instead of racing it; with overwrite=False the final step cannot replace a file that
appeared meanwhile (a hard link, which fails on an existing name).
"""
from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import re
import time
from pathlib import Path

SUFFIX = ".partial"
LOCK_SUFFIX = ".nexus-lock"
_WINDOWS_STALE_S = 3600  # no cheap liveness test there: a temp nobody wrote to for an hour is stale
_TEMP = re.compile(rf"^\.(.+)\.(\d+){re.escape(SUFFIX)}$")


def _name_max(folder: Path) -> int:
    try:
        return os.pathconf(folder, "PC_NAME_MAX")
    except (OSError, ValueError, AttributeError):
        return 255


def _fit(name: str, tail: str, folder: Path) -> str:
    """`.{name}{tail}`, with `name` cut and tagged with a hash of it where the whole would be too long a name."""
    limit = _name_max(folder)
    full = f".{name}{tail}"
    if len(full.encode()) <= limit:
        return full
    tag = "~" + hashlib.sha1(name.encode("utf-8", "surrogateescape")).hexdigest()[:12]
    room = limit - len(f".{tag}{tail}".encode())
    cut = name.encode("utf-8", "surrogateescape")[:room].decode("utf-8", "ignore")
    return f".{cut}{tag}{tail}"


def temp_path(path) -> Path:
    path = Path(path)
    return path.with_name(_fit(path.name, f".{os.getpid()}{SUFFIX}", path.parent))


def _lock_path(path: Path) -> Path:
    return path.with_name(_fit(path.name, LOCK_SUFFIX, path.parent))


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


def _is_stale(entry: os.DirEntry, pid: int) -> bool:
    if os.name == "nt":
        return time.time() - entry.stat().st_mtime > _WINDOWS_STALE_S
    return not _pid_alive(pid)


def remove_stale_temps(path, folder: bool = False) -> list[tuple[Path, int]]:
    """Remove temp files of dead processes beside `path`: those of `path` itself, or (folder=True) those of any
    target in its folder. Returns what was removed, with sizes."""
    path = Path(path)
    own = temp_path(path).name.rsplit(".", 2)[0]  # `.name` as this target's temps start
    removed = []
    try:
        entries = list(os.scandir(path.parent))
    except OSError:
        return removed
    for entry in entries:
        m = _TEMP.match(entry.name)
        if not m or not entry.is_file(follow_symlinks=False):
            continue
        if not folder and entry.name.rsplit(".", 2)[0] != own:
            continue
        if _is_stale(entry, int(m.group(2))):
            with contextlib.suppress(OSError):
                size = entry.stat(follow_symlinks=False).st_size
                os.unlink(entry.path)
                removed.append((Path(entry.path), size))
    return removed


class Busy(OSError):
    """Another live process is writing the same target."""


@contextlib.contextmanager
def writer_lock(path):
    """Hold the lock of target `path` (a small file beside it naming our pid); Busy if a live process holds it.
    A lock left by a dead process is taken over."""
    path = Path(path)
    lock = _lock_path(path)
    for _ in range(3):
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            try:
                pid = int(lock.read_text().strip() or 0)
            except (OSError, ValueError):
                pid = 0
            if pid and _pid_alive(pid):
                raise Busy(errno.EBUSY, f"another process (pid {pid}) is writing {path} right now") from None
            with contextlib.suppress(OSError):
                os.unlink(lock)  # left by a run that was killed
            continue
        with os.fdopen(fd, "w") as f:
            f.write(str(os.getpid()))
        break
    else:
        raise Busy(errno.EBUSY, f"could not take the lock {lock} for {path}")
    try:
        yield lock
    finally:
        with contextlib.suppress(OSError):
            os.unlink(lock)


@contextlib.contextmanager
def atomic_write(path, overwrite: bool = True):
    """`with atomic_write(out) as tmp:` write tmp; on success it is flushed to disk and renamed to `out`,
    on any error (or interrupt) it is removed and `out` is untouched. A symbolic link is followed (the file it
    points to is replaced, the link stays); a device or pipe (/dev/null, a FIFO) is written in place, since
    renaming over it would replace the device node itself. overwrite=False: FileExistsError instead of replacing
    a file that exists when the write completes."""
    path = Path(os.path.realpath(path))
    if path.exists() and not path.is_file():
        yield path
        return
    with writer_lock(path):
        remove_stale_temps(path)
        tmp = temp_path(path)
        try:
            yield tmp
            fd = os.open(tmp, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
            if overwrite:
                os.replace(tmp, path)
            else:
                _link_no_clobber(tmp, path)
        finally:
            if os.path.lexists(tmp):
                os.unlink(tmp)


def _link_no_clobber(tmp: Path, path: Path) -> None:
    """Give `tmp` the name `path` only if no file has it (a hard link fails on an existing name, atomically)."""
    try:
        os.link(tmp, path)
    except FileExistsError:
        raise FileExistsError(errno.EEXIST, f"{path} appeared while it was being written; it was not replaced")
    except OSError:  # no hard links here (some network or FAT file systems): check, then rename
        if os.path.lexists(path):
            raise FileExistsError(errno.EEXIST, f"{path} appeared while it was being written; it was not replaced")
        os.replace(tmp, path)
        return
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
