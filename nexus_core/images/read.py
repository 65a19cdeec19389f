"""Reading any image file or array as the 8-bit RGB picture a person sees (PIL and numpy only, no torch).

PIL's own convert("RGB") gets several modes wrong for our purpose: 16-bit greyscale is clipped at 255 (an all
white picture), EXIF orientation is ignored (a phone photo lies on its side), transparency is dropped to
whatever colour hides under it. 8-bit RGB files come out exactly as convert("RGB") gives them.
"""
from __future__ import annotations

import errno
import logging
import os
import re
import stat
import warnings

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from ..errors import NexusError

log = logging.getLogger(__name__)
_WIDE_GREY = ("I;16", "I;16L", "I;16B", "I;16N", "I")  # 16-bit greyscale ("I": PIL's 32-bit int holding it)
_ALPHA = ("RGBA", "LA", "PA", "RGBa", "La")
_said_animated: set = set()


def _bomb_message(path, err: Exception) -> str:
    n = re.search(r"\((\d+) pixels\)", str(err))
    size = f" ({int(n.group(1)):,} pixels)" if n else ""
    limit = Image.MAX_IMAGE_PIXELS
    return (f"Image {path} is too large to decode safely{size}: the limit is {limit:,} pixels "
            "(PIL.Image.MAX_IMAGE_PIXELS). It would be resized to under 0.3 megapixels anyway: downscale it first")


MAX_ASPECT = 200  # Qwen2.5-VL's smart_resize refuses longer strips (nexus-gen-reference.md 2.3)


def check_regular_file(path, what: str) -> None:
    """`path` is a regular file (links followed): not missing, not a folder, not a link loop, not a pipe or a
    device, which would make a read wait forever or never end."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        if os.path.islink(path):
            raise NexusError(f"{what} {path} is a link to {os.readlink(path)}, which does not exist") from None
        raise NexusError(f"{what} not found: {path}") from None
    except OSError as e:
        if e.errno == errno.ELOOP:
            raise NexusError(f"{what} {path} is a link that leads back to itself (a loop of links)") from None
        raise NexusError(f"{what} {path} cannot be read: {e.strerror or e}") from None
    if stat.S_ISDIR(st.st_mode):
        raise NexusError(f"{what} {path} is a folder; expected a file")
    if not stat.S_ISREG(st.st_mode):
        kind = "a named pipe" if stat.S_ISFIFO(st.st_mode) else "a socket" if stat.S_ISSOCK(st.st_mode) else "a device"
        raise NexusError(f"{what} {path} is {kind}, not a regular file: reading it could wait forever")


def open_image(path) -> Image.Image:
    """Open lazily (header only) and refuse what cannot be read: a missing file, a folder, a pipe or device, a
    file that is not an image, or one over PIL's decompression-bomb limit (between 1x and 2x PIL only warns; we
    refuse)."""
    check_regular_file(path, "Image")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            return Image.open(path)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise NexusError(_bomb_message(path, e)) from None
    except UnidentifiedImageError:
        raise NexusError(f"Cannot read image {path}: not an image file PIL can open") from None
    except (OSError, ValueError) as e:
        raise NexusError(f"Cannot read image {path}: {e}") from None


def check_image_file(path) -> tuple[int, int]:
    """(width, height) of an image file that can be used: everything open_image refuses, plus a file cut short
    (the first frame is decoded whole: a truncated PNG or JPEG fails here, in well under a second, instead of
    after the model has loaded) and a strip longer than the model takes."""
    with open_image(path) as im:
        if im.width < 1 or im.height < 1:
            raise NexusError(f"Image {path} has no pixels ({im.width}x{im.height})")
        check_aspect(im.width, im.height, f"Image {path}")
        try:
            im.seek(0)
            im.load()
        except (OSError, ValueError, SyntaxError, EOFError) as e:
            raise NexusError(f"Cannot read image {path}: {e} (the file may be cut short: save or download it "
                             "again)") from None
        return im.size


def check_aspect(width: int, height: int, what: str) -> None:
    long, short = max(width, height), max(1, min(width, height))
    if long / short > MAX_ASPECT:
        raise NexusError(f"{what} is {width}x{height} pixels: longer than {MAX_ASPECT}:1, which the model's image "
                         "input cannot take; crop it first")


def _read_file(path) -> Image.Image:
    with open_image(path) as im:
        if getattr(im, "is_animated", False) and str(path) not in _said_animated:
            _said_animated.add(str(path))  # said once, however often the file is read
            log.warning("%s is animated (%d frames): using the first frame", path, getattr(im, "n_frames", 0))
        try:
            im.seek(0)
            im.load()
        except (OSError, ValueError, SyntaxError) as e:
            raise NexusError(f"Cannot read image {path}: {e}") from None
        upright = _upright(im)
        return upright if upright is not im else im.copy()  # independent of the file, which closes here


def _upright(image: Image.Image) -> Image.Image:
    """Turned as its EXIF orientation says (a phone photo stored on its side), else the image itself."""
    if image.getexif().get(0x0112, 1) in (None, 1):
        return image
    return ImageOps.exif_transpose(image)


def _from_array(arr: np.ndarray) -> Image.Image:
    """HxW or HxWxC (C = 1, 3, 4) arrays: uint8 as is, uint16 as 16-bit, bool as black/white, floats as 0..1."""
    arr = np.asarray(arr)
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[..., 0]
    if arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[2] not in (3, 4)):
        raise NexusError(f"Expected an HxW or HxWxC (C = 1, 3 or 4) image array, got shape {arr.shape}")
    if arr.dtype == np.uint16:
        arr = _sixteen_to_eight(arr)
    elif arr.dtype == np.bool_:
        arr = arr.astype(np.uint8) * 255
    elif arr.dtype != np.uint8:
        if not np.isfinite(arr).all():
            raise NexusError("The image array holds NaN or infinite values")
        arr = (np.clip(arr, 0, 1) * 255).round().astype(np.uint8)
    return Image.fromarray(arr)


def _sixteen_to_eight(arr: np.ndarray) -> np.ndarray:
    return ((np.clip(arr.astype(np.float64), 0, 65535) / 257).round()).astype(np.uint8)


def to_rgb(image: Image.Image) -> Image.Image:
    """Any PIL mode -> 8-bit RGB: 16-bit grey rescaled, transparency composited on white, palettes expanded."""
    if image.mode in _WIDE_GREY:
        return Image.fromarray(_sixteen_to_eight(np.asarray(image))).convert("RGB")
    if image.mode in _ALPHA or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        white = Image.new("RGB", rgba.size, (255, 255, 255))
        white.paste(rgba, mask=rgba.split()[3])
        return white
    try:
        return image.convert("RGB")
    except (ValueError, OSError) as e:
        raise NexusError(f"Cannot convert an image of mode {image.mode} to RGB: {e}") from None


def load_image(image) -> Image.Image:
    """Open a path or accept a PIL image / HxWxC array; return 8-bit RGB as the picture is seen: upright per
    EXIF, the first frame of an animation (said once), transparent areas on white."""
    if isinstance(image, (str, os.PathLike)):
        image = _read_file(image)
    elif isinstance(image, np.ndarray):
        image = _from_array(image)
    elif isinstance(image, Image.Image):
        image = _upright(image)
    else:
        raise NexusError(f"Expected an image path, PIL image or array, got {type(image).__name__}")
    if image.width < 1 or image.height < 1:
        raise NexusError(f"Image has no pixels ({image.width}x{image.height})")
    check_aspect(image.width, image.height, "The image")
    return to_rgb(image)


__all__ = ["MAX_ASPECT", "check_aspect", "check_image_file", "check_regular_file", "load_image", "open_image", "to_rgb"]
