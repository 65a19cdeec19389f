"""Mixing image embeddings (prompts with prompts, prompts with images): linear or spherical interpolation."""
from __future__ import annotations

import torch

from ..errors import NexusError


def blend(a: torch.Tensor, b: torch.Tensor, weight: float, method: str = "slerp") -> torch.Tensor:
    """weight 0 -> a, 1 -> b. 'slerp' interpolates each token's direction on the sphere and its norm linearly
    (embeddings live at very different norms per token, so plain lerp shrinks the middle); 'lerp' is linear.
    Batches broadcast: (1, N, D) with (B, N, D)."""
    if a.shape[-2:] != b.shape[-2:]:
        raise NexusError(f"Cannot blend embeddings of shapes {tuple(a.shape)} and {tuple(b.shape)}: "
                         "token count and width must match")
    w = float(weight)
    dtype = a.dtype
    a, b = a.float(), b.float().to(a.device)
    if method == "lerp":
        return torch.lerp(a, b, w).to(dtype)
    if method != "slerp":
        raise NexusError(f"Unknown blend method {method!r}: use 'lerp' or 'slerp'")
    na, nb = a.norm(dim=-1, keepdim=True), b.norm(dim=-1, keepdim=True)
    ua, ub = a / na.clamp_min(1e-8), b / nb.clamp_min(1e-8)
    cos = (ua * ub).sum(-1, keepdim=True).clamp(-1 + 1e-7, 1 - 1e-7)
    theta = torch.acos(cos)
    sin = torch.sin(theta)
    near = sin < 1e-4  # almost parallel: fall back to lerp of the directions
    wa = torch.where(near, torch.full_like(sin, 1 - w), torch.sin((1 - w) * theta) / sin)
    wb = torch.where(near, torch.full_like(sin, w), torch.sin(w * theta) / sin)
    direction = wa * ua + wb * ub
    direction = direction / direction.norm(dim=-1, keepdim=True).clamp_min(1e-8)
    return (direction * torch.lerp(na, nb, w)).to(dtype)
