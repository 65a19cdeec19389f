"""Position ids of the DiT's joint sequence: image tokens and the context (text) tokens."""
from __future__ import annotations

import torch


def image_ids(height: int, width: int, dtype=torch.float32, device=None) -> torch.Tensor:
    """(H/16 * W/16, 3): (0, row, col) per 2x2 latent patch."""
    h, w = height // 16, width // 16
    r = torch.arange(h, device=device).repeat_interleave(w)
    c = torch.arange(w, device=device).repeat(h)
    return torch.stack([torch.zeros_like(r), r, c], dim=1).to(dtype)


def zero_text_ids(n: int, dtype=torch.float32, device=None) -> torch.Tensor:
    return torch.zeros(n, 3, dtype=dtype, device=device)


def editing_text_ids(height: int, width: int, target_grid=(1, 18, 18), reference_grid=(1, 36, 36),
                     with_reference: bool = True, dtype=torch.float32, device=None) -> torch.Tensor:
    """The editing decoder's ids (spec 4.3): target token (i, j) -> (0, i*H8/gh, j*W8/gw); reference token ->
    (1, i*H8/gh_r, j*W8/gw_r), with H8 = height/8 and grids in unmerged patches; cast to the latent dtype."""
    h8, w8 = height // 8, width // 8
    parts = []
    for (t, gh, gw), channel0 in [(target_grid, 0.0)] + ([(reference_grid, 1.0)] if with_reference else []):
        i = torch.arange(gh // 2, device=device).repeat_interleave(gw // 2).float()
        j = torch.arange(gw // 2, device=device).repeat(gh // 2).float()
        parts.append(torch.stack([torch.full_like(i, channel0), i * (h8 / gh), j * (w8 / gw)], dim=1))  # ref order
    return torch.cat(parts).to(dtype)
