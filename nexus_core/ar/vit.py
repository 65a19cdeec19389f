"""ViT embeddings of an image: the space the decoders were trained in (81 tokens = 252^2, 324 = 504^2)."""
from __future__ import annotations

import torch

from ..errors import NexusError
from ..settings.defaults import VIT_SIZES
from .images import load_image, pixel_values, vit_resize


@torch.inference_mode()
def encode_image(ar, image, tokens: int = 81, policy: str = "squash") -> torch.Tensor:
    """(tokens, D) merged ViT embeddings. policy 'squash' = the reference's bilinear squash to a square;
    'crop' = the generation decoder's training policy (shortest side + centre crop)."""
    if tokens not in VIT_SIZES:
        raise NexusError(f"tokens must be one of {sorted(VIT_SIZES)} (a square grid the decoders know), got {tokens}")
    side = VIT_SIZES[tokens]
    vc = ar.vision_config
    pv, grid = pixel_values(vit_resize(load_image(image), side, policy), vc.patch_size, vc.temporal_patch_size,
                            vc.spatial_merge_size)
    return ar.image_features(pv, [grid])


def reference_embeddings(ar, image) -> torch.Tensor:
    """The editing decoder's 324 reference embeddings: the original image squashed to 504x504 (spec 2.5)."""
    return encode_image(ar, image, 324, "squash")
