"""Small files unpacked once into the temp folder, safely on a machine shared by users and by processes.

The system temp folder is shared with every user and every process of the machine: ComfyUI-Distributed's local
workers, several ComfyUIs, the CLI. So
- everything lives in `<temp>/nexus-gen-<uid>`, a folder only this user can enter (made with mode 0700, and used
  only while it is a real folder, ours, closed to others); nothing another user planted is trusted or deleted;
- inside it, one process at a time builds a copy (under an OS lock that dies with its process, so a killed run
  leaves no stale lock), in a temp folder renamed into place when whole: a reader never sees half a copy;
- a copy that is found damaged (someone else's tool changed it) is rebuilt under the lock, never while another
  process of ours may be between checking it and using it as good.
Where that private folder cannot be had (another user took its name, or it is open to others), each load gets its
own throwaway copy instead, removed when the process ends.
"""
from __future__ import annotations

import atexit
import contextlib
import logging
import os
import shutil
import stat
import tempfile
from pathlib import Path

from ..errors import NexusError

log = logging.getLogger("nexus_gen")
DONE_MARK = ".complete"  # written last: a copy without it was never finished


def _uid() -> int:
    return os.getuid() if hasattr(os, "getuid") else 0


def private_root() -> Path | None:
    """`<temp>/nexus-gen-<uid>`, made if missing; None where that name is not a folder only we can use."""
    root = Path(tempfile.gettempdir()) / f"nexus-gen-{_uid()}"
    try:
        os.mkdir(root, 0o700)
    except FileExistsError:
        pass
    except OSError:
        return None
    try:
        st = os.lstat(root)
    except OSError:
        return None
    if not stat.S_ISDIR(st.st_mode):
        return None  # a link or a file under our name
    if hasattr(os, "getuid") and (st.st_uid != _uid() or st.st_mode & 0o077):
        return None  # another user's, or open to others
    return root


@contextlib.contextmanager
def exclusive(lock_file: Path):
    """Hold an OS lock on `lock_file` (waits for another process holding it). The OS drops it when the holder's
    process ends, however it ends."""
    try:
        fd = os.open(lock_file, os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0), 0o600)
    except OSError as e:
        raise NexusError(f"could not open the lock file {lock_file}: {e.strerror or e}") from None
    try:
        try:
            import fcntl
        except ImportError:  # Windows
            fcntl = None
        if fcntl is not None:
            fcntl.flock(fd, fcntl.LOCK_EX)
        else:
            import msvcrt
            while True:
                try:
                    os.lseek(fd, 0, os.SEEK_SET)
                    msvcrt.locking(fd, msvcrt.LK_LOCK, 1)  # gives up after ~10 s: another process still unpacks
                    break
                except OSError:
                    continue
        try:
            yield
        finally:
            if fcntl is None:
                with contextlib.suppress(OSError):
                    os.lseek(fd, 0, os.SEEK_SET)
                    msvcrt.locking(fd, msvcrt.LK_UNLCK, 1)
    finally:
        os.close(fd)  # releases a flock


def holds_exactly(folder: Path, files: dict[str, str]) -> bool:
    """`folder` is a real folder of this user holding exactly `files` (name -> text) and the completion mark."""
    try:
        st = os.lstat(folder)
        if not stat.S_ISDIR(st.st_mode) or (hasattr(os, "getuid") and st.st_uid != _uid()):
            return False
        if set(os.listdir(folder)) != set(files) | {DONE_MARK}:
            return False
        return all((folder / name).read_text(encoding="utf-8") == text for name, text in files.items())
    except (OSError, UnicodeDecodeError):
        return False


def _write_copy(parent: Path, prefix: str, files: dict[str, str], what: str) -> Path:
    """A new folder in `parent` holding `files` and the completion mark; nothing is left behind if a write fails."""
    part = Path(tempfile.mkdtemp(prefix=prefix, dir=parent))  # mode 0700
    try:
        for name, text in files.items():
            (part / name).write_text(text, encoding="utf-8")
        (part / DONE_MARK).write_text("")
    except OSError as e:
        shutil.rmtree(part, ignore_errors=True)
        raise NexusError(f"could not unpack {what} into {parent}: {e.strerror or e} (free some space there, or "
                         "point TMPDIR at a folder with room)") from None
    return part


def _remove(path: Path) -> None:
    if os.path.islink(path) or not os.path.isdir(path):
        os.unlink(path)
    else:
        shutil.rmtree(path)


_THROWAWAY: dict[str, Path] = {}  # key -> this process's own copy, where no private folder could be had


def _throwaway(key: str, files: dict[str, str], what: str) -> Path:
    """This process's own copy (made once per key while it stays intact, removed when the process ends)."""
    own = _THROWAWAY.get(key)
    if own is not None and holds_exactly(own, files):
        return own
    log.warning("Nexus-Gen: %s is not a private folder of this user; %s is unpacked into a throwaway copy",
                Path(tempfile.gettempdir()) / f"nexus-gen-{_uid()}", what)
    own = _THROWAWAY[key] = _write_copy(Path(tempfile.gettempdir()), f"nexus-gen-{key}-", files, what)
    atexit.register(shutil.rmtree, own, True)
    return own


def unpacked_once(key: str, files: dict[str, str], what: str) -> Path:
    """A folder holding exactly `files` (name -> text), shared by this user's processes for the same `key` (a
    short hex tag that changes whenever the files would); `what` names them in an error."""
    root = private_root()
    if root is None:
        return _throwaway(key, files, what)
    folder = root / key
    if holds_exactly(folder, files):
        return folder  # copies only appear whole (a rename): no lock needed to use one
    with exclusive(root / f"{key}.lock"):
        if holds_exactly(folder, files):
            return folder  # another process built it while we waited
        part = _write_copy(root, f".{key}-", files, what)
        try:
            if os.path.lexists(folder):
                _remove(folder)  # damaged: under the lock, nobody of ours is building it
            os.replace(part, folder)
        except OSError as e:
            shutil.rmtree(part, ignore_errors=True)
            if holds_exactly(folder, files):  # put there meanwhile by a process that did not wait on this lock
                return folder
            raise NexusError(f"could not unpack {what} into {folder}: {e.strerror or e}") from None
    return folder
