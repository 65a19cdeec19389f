"""Checks for user settings, made before any model loads or runs. Each raises NexusError naming the setting.

Host-independent and free of torch, so the CLI refuses bad settings in a fraction of a second and the ComfyUI
nodes can call the same functions (devices are checked by memory/devices.pick_device, which needs torch). `name`
is what the message calls the setting: a CLI passes its flag ("--width"), a node its input name ("width").
"""
from __future__ import annotations

import math
import numbers
import os
import tempfile
from pathlib import Path

from ..errors import NexusError

MIN_SIDE = 16  # the DiT works on 2x2 patches of 8x-downsampled latents
MAX_SIDE = 4096  # default upper bound: memory and time grow with the area
MAX_STEPS = 10_000  # ComfyUI's KSampler bound
MAX_SCALE = 100.0  # cfg and guidance: ComfyUI's KSampler / FluxGuidance bound
SEED_MAX = 2**64 - 1  # ComfyUI's seed range; torch.Generator.manual_seed takes all of it
# Sampling settings keep the arithmetic finite: logits (|x| < 1e4) divided by the temperature, or divided and
# multiplied by the repetition penalty, stay far inside float32 (a temperature of 1e-320 is 0 there: inf/nan).
MIN_TEMPERATURE = 1e-5
PENALTY_RANGE = (1e-3, 1e3)


def _is_int(value) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def check_int(value, name: str, lo: int | None = None, hi: int | None = None, hint: str = "") -> int:
    """An integer (not a bool, not a float) within [lo, hi]."""
    if not _is_int(value):
        raise NexusError(f"{name} must be a whole number, got {value!r}")
    value = int(value)
    if lo is not None and value < lo:
        raise NexusError(f"{name} must be at least {lo}, got {value}")
    if hi is not None and value > hi:
        raise NexusError(f"{name} must be at most {hi}, got {value}{hint}")
    return value


def check_finite(value, name: str, lo: float | None = None, hi: float | None = None,
                 lo_open: bool = False) -> float:
    """A real number that is not nan/inf, within [lo, hi] ((lo, hi] with lo_open)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise NexusError(f"{name} must be a number, got {value!r}")
    value = float(value)
    if not math.isfinite(value):
        raise NexusError(f"{name} must be a finite number, got {value}")
    low_bad = lo is not None and (value <= lo if lo_open else value < lo)
    if low_bad or (hi is not None and value > hi):
        left = "(" if lo_open else "["
        if lo is not None and hi is not None:
            want = f"in {left}{_num(lo)}, {_num(hi)}]"
        elif lo is not None:
            want = f"greater than {_num(lo)}" if lo_open else f"at least {_num(lo)}"
        else:
            want = f"at most {_num(hi)}"
        raise NexusError(f"{name} must be {want}, got {_num(value)}")
    return value


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else str(x)


def check_size(width, height, max_side: int = MAX_SIDE, names: tuple[str, str] = ("width", "height"),
               override: str = "max_side") -> tuple[int, int]:
    """Image size in pixels: MIN_SIDE..max_side a side (sizes are rounded up to multiples of 16 later)."""
    max_side = check_int(max_side, override, MIN_SIDE)
    hint = f" (raise {override} to allow more)"
    return (check_int(width, names[0], MIN_SIDE, max_side, hint),
            check_int(height, names[1], MIN_SIDE, max_side, hint))


def check_steps(steps, name: str = "steps", max_steps: int = MAX_STEPS) -> int:
    return check_int(steps, name, 1, max_steps)


def check_cfg(cfg, name: str = "cfg") -> float:
    return check_finite(cfg, name, 0.0, MAX_SCALE)


def check_guidance(guidance, name: str = "guidance") -> float:
    return check_finite(guidance, name, 0.0, MAX_SCALE)


def check_seed(seed, name: str = "seed") -> int:
    """ComfyUI's seed range, 0 .. 2**64-1."""
    return check_int(seed, name, 0, SEED_MAX)


def check_sampling(temperature=None, top_k=None, top_p=None, repetition_penalty=None, max_new_tokens=None,
                   names: dict[str, str] | None = None) -> None:
    """Token-sampling settings; None means 'not given'. names maps a field to what the message calls it."""
    label = lambda field: (names or {}).get(field, field)  # noqa: E731
    if temperature is not None:
        t = check_finite(temperature, label("temperature"), 0.0, lo_open=True)
        if t < MIN_TEMPERATURE:
            raise NexusError(f"{label('temperature')} must be at least {MIN_TEMPERATURE:g}, got {t:g} (for the most "
                             "likely token every time, turn sampling off instead)")
    if top_k is not None:
        check_int(top_k, label("top_k"), 0)
    if top_p is not None:
        check_finite(top_p, label("top_p"), 0.0, 1.0, lo_open=True)
    if repetition_penalty is not None:
        check_finite(repetition_penalty, label("repetition_penalty"), *PENALTY_RANGE)
    if max_new_tokens is not None:
        check_int(max_new_tokens, label("max_new_tokens"), 1)


def check_text(text, name: str) -> str:
    """Text that can be encoded as UTF-8. Bytes that are not UTF-8 reach Python as lone surrogates
    (os.fsdecode's surrogateescape); tokenizers fail on them with an unreadable TypeError."""
    if text is None:
        return text
    if not isinstance(text, str):
        raise NexusError(f"{name} must be text, got {type(text).__name__}")
    for i, ch in enumerate(text):
        if "\ud800" <= ch <= "\udfff":
            byte = f"byte 0x{ord(ch) - 0xDC00:02x}" if "\udc80" <= ch <= "\udcff" else "a lone surrogate"
            raise NexusError(f"{name} is not valid UTF-8 text ({byte} at character {i + 1}); "
                             "save or type it as UTF-8")
    return text


def as_utf8(text) -> str:
    """Text that encodes as UTF-8 whatever the OS gave: a file name with bytes that are not UTF-8 (`caf\\xe9.png`
    reaches Python as 'caf\\udce9.png') keeps those bytes as visible escapes, so it can go into file metadata and
    messages instead of failing there, after the work is done."""
    text = str(text)
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def _name_max(folder: Path) -> int:
    try:
        return os.pathconf(folder if folder.is_dir() else ".", "PC_NAME_MAX")
    except (OSError, ValueError, AttributeError):
        return 255


def _writable(folder: Path) -> str | None:
    """None if a file can be created in `folder`, else the reason. A real probe: os.access says yes to root
    even on read-only mounts and pseudo file systems."""
    try:
        fd, probe = tempfile.mkstemp(prefix=".nexus-gen-probe-", dir=folder)
    except OSError as e:
        return e.strerror or str(e)
    os.close(fd)
    os.unlink(probe)
    return None


def check_output(path, name: str = "output", *, image: bool = False, overwrite: bool = True,
                 sources=(), overwrite_hint: str = "ask to overwrite it") -> Path:
    """An output file we can write: its folder exists and is writable, it is not a folder, not one of the
    input files (`sources`), and (overwrite=False) does not exist yet. image=True: PIL must know the suffix."""
    if path is None or str(path) == "":
        raise NexusError(f"{name} is empty: give a file name")
    path = Path(path)
    limit = _name_max(path.parent)
    if len(os.fsencode(path.name)) > limit:
        raise NexusError(f"{name} has a file name of {len(os.fsencode(path.name))} bytes; this file system takes "
                         f"at most {limit}")
    if path.is_symlink() and not path.exists():
        raise NexusError(f"{name} {path} is a link to {os.readlink(path)}, which does not exist (or is a loop); "
                         "give a file name, or fix the link")
    if path.is_dir():
        raise NexusError(f"{name} is a folder: {path}; give a file name inside it")
    parent = path.parent
    if not parent.is_dir():
        raise NexusError(f"Output folder does not exist: {parent} ({name})")
    for src in sources:
        if src is not None and same_file(src, path):
            raise NexusError(f"{name} {path} is the input file {src}: writing it would destroy the input; "
                             "choose another name")
    if path.exists() and not overwrite:
        raise NexusError(f"{name} {path} already exists; choose another name or {overwrite_hint}")
    if image:
        check_image_suffix(path, name)
    if path.exists() and not path.is_file():  # a device or pipe (/dev/null, a FIFO): written in place
        if not os.access(path, os.W_OK):
            raise NexusError(f"Cannot write {name} {path}: permission denied")
        return path
    reason = _writable(parent)
    if reason:
        raise NexusError(f"Cannot write {name} into {parent}: {reason}")
    return path


def check_folder_target(path, name: str = "folder") -> Path:
    """A folder we may create files in: it exists, or can be created (its nearest existing ancestor is a
    writable folder, not a file)."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise NexusError(f"{name} {path} is a file, not a folder; give a folder path")
    probe = path
    while not probe.exists():
        probe = probe.parent
    if not probe.is_dir():
        raise NexusError(f"{name} {path} cannot be created: {probe} is a file, not a folder")
    reason = _writable(probe)
    if reason:
        raise NexusError(f"Cannot write {name} into {probe}: {reason}")
    return path


def check_image_suffix(path, name: str = "output") -> str:
    """The PIL format for an image file name, from its suffix."""
    from PIL import Image

    Image.init()
    fmt = Image.registered_extensions().get(Path(path).suffix.lower())
    if fmt is None or fmt not in Image.SAVE:
        raise NexusError(f"{name} {path} needs an image file suffix (.png, .jpg, .webp ...), "
                         f"got {Path(path).suffix or 'none'}")
    return fmt


def same_file(a, b) -> bool:
    """True if a and b are the same file: the same path, or another path, link or hard link to it."""
    try:
        return os.path.samefile(a, b)
    except OSError:  # one of them does not exist
        return os.path.realpath(a) == os.path.realpath(b)


__all__ = ["MAX_SCALE", "MAX_SIDE", "MAX_STEPS", "MIN_SIDE", "MIN_TEMPERATURE", "PENALTY_RANGE", "SEED_MAX",
           "check_cfg", "check_finite", "check_folder_target", "check_guidance", "check_image_suffix", "check_int", "check_output",
           "check_sampling", "check_seed", "check_size", "check_steps", "check_text", "as_utf8", "same_file"]
