"""ComfyUI IMAGE tensors ([B, H, W, C] floats in 0..1) <-> PIL images, host-independent (no comfy imports).

Edge cases handled here rather than in every node: C = 4 (alpha: composited on white, as image files are),
C = 1 or 2 (grey), a batch where one image is expected (the first is used and that is said once), 1x1 images,
non-float dtypes, NaN/inf. The RGB path is bit-identical to (x.clamp(0, 1) * 255).round() to uint8.
"""
from __future__ import annotations

import logging

import numpy as np
import torch
from PIL import Image

from ..errors import NexusError
from .read import to_rgb

log = logging.getLogger(__name__)


def _batch(images: torch.Tensor, name: str) -> torch.Tensor:
    if not isinstance(images, torch.Tensor):
        raise NexusError(f"{name}: expected an IMAGE tensor, got {type(images).__name__}")
    if images.dim() == 3:  # a single [H, W, C] image
        images = images.unsqueeze(0)
    if images.dim() != 4:
        raise NexusError(f"{name}: expected an IMAGE tensor [batch, height, width, channels], got shape "
                         f"{tuple(images.shape)}")
    b, h, w, c = images.shape
    if b == 0 or h == 0 or w == 0:
        raise NexusError(f"{name}: the image batch is empty (shape {tuple(images.shape)})")
    if c not in (1, 2, 3, 4):
        raise NexusError(f"{name}: expected 1 to 4 channels (grey, grey+alpha, RGB, RGBA) in the last "
                         f"dimension, got {c} (shape {tuple(images.shape)}); is it a [B, C, H, W] tensor?")
    return images


def _to_float(x: torch.Tensor, name: str) -> torch.Tensor:
    if x.dtype == torch.uint8:
        return x.float() / 255
    if not x.is_floating_point():
        raise NexusError(f"{name}: expected a float IMAGE tensor (0..1), got {x.dtype}")
    x = x.float()  # float16/bfloat16 cannot go to numpy; float32 is unchanged
    if not torch.isfinite(x).all():
        raise NexusError(f"{name}: the image holds NaN or infinite values")
    return x


def tensor_to_pil(images: torch.Tensor, index: int = 0, name: str = "image") -> Image.Image:
    """Image `index` of a ComfyUI IMAGE batch as an 8-bit RGB PIL image."""
    images = _batch(images, name)
    if not -images.shape[0] <= index < images.shape[0]:
        raise NexusError(f"{name}: no image {index} in a batch of {images.shape[0]}")
    x = _to_float(images[index].detach().cpu(), name)
    c = x.shape[-1]
    rgb = x[..., :3] if c >= 3 else x[..., :1].expand(*x.shape[:-1], 3)
    rgb = rgb.clamp(0, 1)
    if c in (2, 4):  # straight alpha, composited on white like transparent image files
        a = x[..., -1:].clamp(0, 1)
        rgb = rgb * a + (1 - a)
    arr = (rgb.numpy() * 255).round().astype(np.uint8)
    return Image.fromarray(np.ascontiguousarray(arr))


def tensor_to_pils(images: torch.Tensor, name: str = "image") -> list[Image.Image]:
    """Every image of a ComfyUI IMAGE batch as 8-bit RGB PIL images."""
    images = _batch(images, name)
    return [tensor_to_pil(images, i, name) for i in range(images.shape[0])]


def one_image(images: torch.Tensor, name: str = "image", allow_batch: bool = True) -> Image.Image:
    """The single image an input expects. A batch gives its first image (with one warning per call) or, with
    allow_batch=False, a NexusError."""
    images = _batch(images, name)
    if images.shape[0] > 1:
        if not allow_batch:
            raise NexusError(f"{name}: expected one image, got a batch of {images.shape[0]}")
        log.warning("%s: a batch of %d images where one is expected; using the first", name, images.shape[0])
    return tensor_to_pil(images, 0, name)


def pil_to_tensor(images) -> torch.Tensor:
    """PIL image(s) of one size -> a ComfyUI IMAGE tensor [B, H, W, 3] float32 in 0..1."""
    images = images if isinstance(images, (list, tuple)) else [images]
    if not images or len({im.size for im in images}) != 1:
        raise NexusError("pil_to_tensor needs one or more images of the same size")
    arr = np.stack([np.asarray(to_rgb(im), dtype=np.uint8) for im in images])
    return torch.from_numpy(arr).float() / 255


__all__ = ["one_image", "pil_to_tensor", "tensor_to_pil", "tensor_to_pils"]
