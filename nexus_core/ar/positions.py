"""3-D M-RoPE positions (temporal, height, width) for prompts and for the generated image span."""
from __future__ import annotations

import torch


def prompt_positions(ar, ids: torch.Tensor, grids: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
    """Positions (3, B, L) of prompt ids (B, L) and the per-row delta (B,) such that a text token at absolute
    index i later gets position i + delta. Same rule as Qwen2.5-VL's get_rope_index for still images (written
    here because its signature differs between transformers 4.x and 5.x): text counts up on all three axes;
    each run of image tokens takes the next grid, at (p, p + row, p + col) with p the running position, and the
    text after it continues at p + max(rows, cols)."""
    b, n = ids.shape
    merge = ar.merge
    pos = torch.zeros(3, b, n, dtype=torch.long, device=ids.device)
    delta = torch.zeros(b, dtype=torch.long, device=ids.device)
    for row in range(b):
        is_img = (ids[row] == ar.tokens.image_pad).tolist()
        grid_iter = iter(grids)
        i, p = 0, 0
        while i < n:
            if not is_img[i]:
                pos[:, row, i] = p
                i, p = i + 1, p + 1
                continue
            t, gh, gw = next(grid_iter)
            h, w = gh // merge, gw // merge
            count = t * h * w
            grid = _grid(p, t, h, w, ids.device)
            pos[:, row, i:i + count] = grid[:, :count]
            i, p = i + count, p + max(h, w)
        delta[row] = pos[:, row].max() + 1 - n
    return pos, delta


def _grid(p: int, t: int, h: int, w: int, device) -> torch.Tensor:
    tt = torch.arange(t, device=device).repeat_interleave(h * w)
    r = torch.arange(h, device=device).repeat_interleave(w).repeat(t)
    c = torch.arange(w, device=device).repeat(h * t)
    return torch.stack([tt, r, c]) + p


def span_positions(q: int, side: int, device=None) -> torch.Tensor:
    """Positions (3, side*side) of the generated image tokens when <|vision_start|> sits at position q:
    token k = side*r + c is at (q+1, q+1+r, q+1+c)."""
    r = torch.arange(side, device=device).repeat_interleave(side)
    c = torch.arange(side, device=device).repeat(side)
    return torch.stack([torch.zeros_like(r), r, c]) + (q + 1)
