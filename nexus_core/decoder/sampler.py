"""The reference's sampling loop: Euler steps on the flow-matching sigmas, optional CFG against a negative
branch whose context may have another length (so the two branches run as separate DiT calls)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

from ..errors import NexusCancelled, NexusError
from .ids import image_ids
from .schedule import timesteps


@dataclass
class Conditioning:
    context: torch.Tensor  # (B, S, C) DiT context ("T5" width)
    pooled: torch.Tensor  # (B, P) pooled CLIP-L
    txt_ids: torch.Tensor  # (S, 3)


def pack(x: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) latents -> (B, H/2*W/2, C*4), features ordered (c, 2, 2) like DiffSynth and diffusers."""
    b, c, h, w = x.shape
    return x.view(b, c, h // 2, 2, w // 2, 2).permute(0, 2, 4, 1, 3, 5).reshape(b, (h // 2) * (w // 2), c * 4)


def unpack(x: torch.Tensor, h: int, w: int) -> torch.Tensor:
    b, _, f = x.shape
    c = f // 4
    return x.view(b, h // 2, w // 2, c, 2, 2).permute(0, 3, 1, 4, 2, 5).reshape(b, c, h, w)


def initial_noise(batch: int, height: int, width: int, seed: int, channels: int = 16) -> torch.Tensor:
    """Always drawn on the CPU in float32 (torch.Generator('cpu').manual_seed(seed)), then moved: the same seed
    gives the same picture on every device. The reference draws bf16 noise from a CUDA generator instead."""
    g = torch.Generator("cpu").manual_seed(int(seed))
    return torch.randn((batch, channels, height // 8, width // 8), generator=g, dtype=torch.float32)


def _expand(c: Conditioning, batch: int, dtype, device) -> Conditioning:
    ctx, pooled = c.context.to(device, dtype), c.pooled.to(device, dtype)
    if ctx.shape[0] == 1 and batch > 1:
        ctx, pooled = ctx.expand(batch, -1, -1), pooled.expand(batch, -1)
    return Conditioning(ctx, pooled, c.txt_ids.to(device, dtype))


@torch.inference_mode()
def sample(dit, noise: torch.Tensor, sigmas: torch.Tensor, positive: Conditioning,
           negative: Conditioning | None = None, cfg: float = 1.0, guidance: float | None = 3.5,
           on_step: Callable[[int, int, torch.Tensor], None] | None = None,
           should_stop: Callable[[], bool] | None = None, record: dict | None = None) -> torch.Tensor:
    """Denoise `noise` (B, 16, h, w) from sigmas[0] to 0. Returns latents in the noise's dtype.
    `record`, if given, collects per-step DiT outputs and latents (for parity checks)."""
    if cfg != 1.0 and negative is None:
        raise NexusError("cfg != 1 needs a negative conditioning")
    dtype, device = noise.dtype, noise.device
    b, _, h, w = noise.shape
    pos = _expand(positive, b, dtype, device)
    neg = _expand(negative, b, dtype, device) if cfg != 1.0 else None
    img_ids = image_ids(h * 8, w * 8, dtype, device)
    g = None if guidance is None else torch.full((b,), guidance, dtype=dtype, device=device)
    ts = timesteps(sigmas)
    sig = torch.cat([sigmas, sigmas.new_zeros(1)])
    x = noise
    for i in range(len(sigmas)):
        if should_stop is not None and should_stop():
            raise NexusCancelled("Nexus-Gen sampling cancelled")
        t = (ts[i] / 1000).expand(b).to(device)
        packed = pack(x)
        v = v_pos = dit(packed, pos.context, pos.pooled, t, img_ids, pos.txt_ids, g, return_dict=False)[0]
        if neg is not None:
            v_neg = dit(packed, neg.context, neg.pooled, t, img_ids, neg.txt_ids, g, return_dict=False)[0]
            v = v_neg + cfg * (v_pos - v_neg)
        v = unpack(v, h, w)
        x = x + v * (sig[i + 1] - sig[i]).to(dtype)
        if record is not None:
            record.setdefault("noise_pred_posi", []).append(unpack(v_pos, h, w).float().cpu())
            if neg is not None:
                record.setdefault("noise_pred_nega", []).append(unpack(v_neg, h, w).float().cpu())
            record.setdefault("noise_pred", []).append(v.float().cpu())
            record.setdefault("latents", []).append(x.float().cpu())
        if on_step is not None:
            on_step(i, len(sigmas), x)
    return x
