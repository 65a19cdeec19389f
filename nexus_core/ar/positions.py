"""3-D M-RoPE positions (temporal, height, width) for prompts and for the generated image span."""
from __future__ import annotations

import torch


def prompt_positions(ar, ids: torch.Tensor, grids: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
    """Positions (3, B, L) of prompt ids (B, L) and the per-row delta (B,) such that a text token at absolute
    index i later gets position i + delta. Uses transformers' own get_rope_index when images are present."""
    b, n = ids.shape
    if not grids:
        pos = torch.arange(n, device=ids.device).view(1, 1, n).expand(3, b, n)
        return pos, torch.zeros(b, dtype=torch.long, device=ids.device)
    types = (ids == ar.tokens.image_pad).int()
    pos, delta = ar.model.model.get_rope_index(
        ids, mm_token_type_ids=types, image_grid_thw=torch.tensor(grids, device=ids.device))
    return pos, delta.view(-1)


def span_positions(q: int, side: int, device=None) -> torch.Tensor:
    """Positions (3, side*side) of the generated image tokens when <|vision_start|> sits at position q:
    token k = side*r + c is at (q+1, q+1+r, q+1+c)."""
    r = torch.arange(side, device=device).repeat_interleave(side)
    c = torch.arange(side, device=device).repeat(side)
    return torch.stack([torch.zeros_like(r), r, c]) + (q + 1)
