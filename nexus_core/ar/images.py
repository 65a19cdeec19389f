"""Image handling for the Qwen2.5-VL vision tower, identical to the reference and free of torchvision.

The reference bounds AR input images with smart_resize (factor 28, max_pixels 262640) and PIL's bicubic
resize, then runs Qwen2VLImageProcessor (rescale, CLIP normalisation, 14 px patches, 2 frames, 2x2 merge).
"""
from __future__ import annotations

import math

import numpy as np
import torch
from PIL import Image

from ..errors import NexusError
from ..images.read import load_image  # noqa: F401  (re-exported: the AR reads every image through it)

FACTOR = 28  # 14 px patches x 2x2 merge: one LLM token per 28x28 pixels
MIN_PIXELS = 4 * 28 * 28
AR_MAX_PIXELS = 262640  # bound_image in the reference scripts (335 tokens at most)
VISION_INFO_MAX_PIXELS = 16384 * 28 * 28  # qwen_vl_utils' own bound, applied first on the understanding path
MAX_ASPECT = 200
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


def smart_resize(height: int, width: int, factor: int = FACTOR, min_pixels: int = MIN_PIXELS,
                 max_pixels: int = AR_MAX_PIXELS) -> tuple[int, int]:
    """qwen_vl_utils.smart_resize with factor 28 (the reference's), returning (height, width)."""
    if max(height, width) / min(height, width) > MAX_ASPECT:
        raise NexusError(
            f"Image aspect ratio {max(height, width)}:{min(height, width)} is too extreme; "
            f"Qwen2.5-VL accepts at most {MAX_ASPECT}:1. Crop or pad the image first."
        )
    h = max(factor, round(height / factor) * factor)
    w = max(factor, round(width / factor) * factor)
    if h * w > max_pixels:
        beta = math.sqrt((height * width) / max_pixels)
        h = max(factor, math.floor(height / beta / factor) * factor)
        w = max(factor, math.floor(width / beta / factor) * factor)
    elif h * w < min_pixels:
        beta = math.sqrt(min_pixels / (height * width))
        h = math.ceil(height * beta / factor) * factor
        w = math.ceil(width * beta / factor) * factor
    return h, w


def _resize(image: Image.Image, size_wh: tuple[int, int], resample) -> Image.Image:
    return image if image.size == size_wh else image.resize(size_wh, resample)


def bound_image(image: Image.Image, max_pixels: int = AR_MAX_PIXELS) -> Image.Image:
    """The reference's bound_image: resize to multiples of 28 within max_pixels (PIL bicubic)."""
    h, w = smart_resize(image.height, image.width, max_pixels=max_pixels)
    return _resize(image, (w, h), Image.BICUBIC)


def prepare_understanding_image(image: Image.Image, max_pixels: int = AR_MAX_PIXELS) -> Image.Image:
    """process_vision_info's own resize followed by bound_image, as the reference's understanding path does."""
    h, w = smart_resize(image.height, image.width, max_pixels=VISION_INFO_MAX_PIXELS)
    return bound_image(_resize(image, (w, h), Image.BICUBIC), max_pixels)


def vit_resize(image: Image.Image, side: int, policy: str = "squash") -> Image.Image:
    """Resize for ViT embeddings: 'squash' = the reference (bilinear to side x side, aspect ignored);
    'crop' = the decoder-training policy (shortest side to `side`, bilinear, centre crop)."""
    if policy == "squash":
        return _resize(image, (side, side), Image.BILINEAR)
    if policy != "crop":
        raise NexusError(f"Unknown resize policy {policy!r}: use 'squash' or 'crop'")
    scale = side / min(image.width, image.height)
    w, h = max(side, round(image.width * scale)), max(side, round(image.height * scale))
    image = _resize(image, (w, h), Image.BILINEAR)
    left, top = (w - side) // 2, (h - side) // 2
    return image.crop((left, top, left + side, top + side))


def pixel_values(image: Image.Image, patch: int = 14, temporal: int = 2, merge: int = 2,
                 mean=CLIP_MEAN, std=CLIP_STD) -> tuple[torch.Tensor, list[int]]:
    """Qwen2VLImageProcessor without resizing: returns (patches (t*h*w, 3*temporal*patch*patch), [t, h, w]).

    The image must already have sides that are multiples of patch*merge (bound_image/vit_resize do that)."""
    if image.width % (patch * merge) or image.height % (patch * merge):
        raise NexusError(f"Image {image.width}x{image.height} is not a multiple of {patch * merge} px")
    # Same arithmetic as transformers' rescale (float64 multiply, then float32) and normalize (float32).
    arr = (np.asarray(image, dtype=np.uint8).astype(np.float64) * (1 / 255)).astype(np.float32)
    arr = (arr - np.asarray(mean, dtype=np.float32)) / np.asarray(std, dtype=np.float32)
    arr = arr.transpose(2, 0, 1)[None].repeat(temporal, axis=0)  # (temporal, C, H, W)
    c, gh, gw = arr.shape[1], arr.shape[2] // patch, arr.shape[3] // patch
    arr = arr.reshape(1, temporal, c, gh // merge, merge, patch, gw // merge, merge, patch)
    arr = arr.transpose(0, 3, 6, 4, 7, 2, 1, 5, 8)
    flat = arr.reshape(gh * gw, c * temporal * patch * patch)
    return torch.from_numpy(np.ascontiguousarray(flat)), [1, gh, gw]
