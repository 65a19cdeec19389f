"""What a host-side FLUX conditioning carries for Nexus-Gen, host-independent so it is tested without a host.

A positive is (context (B, N, ctx), {"pooled_output", "guidance", and for the editing decoder the grids}); the
grids (1, 2, 3): target and reference grid in unmerged patches, zeros for no reference) travel with the
conditioning and become the editing decoder's txt_ids for whatever latent size is sampled (upscale passes too).
ComfyUI's ModelSamplingFlux shifts t by exp(mu)/(exp(mu) + 1/t - 1), the reference by s*t/(1 + (s-1)*t): the same
function for mu = ln s.
"""
from __future__ import annotations

import math

import torch

from ..decoder import EDITING
from ..decoder.ids import editing_text_ids
from ..decoder.loaded import project
from ..decoder.schedule import SHIFT, sigmas

COMFY_FLUX_MU = math.log(SHIFT)  # ModelSamplingFlux's "shift" parameter that reproduces the reference's shift 3
GRIDS_KEY = "nexus_edit_grids"


def grids_tensor(target_grid, reference_grid=None) -> torch.Tensor:
    """(1, 2, 3) float32: the target grid and the reference grid (zeros when there is none), unmerged patches."""
    return torch.tensor([list(target_grid), list(reference_grid or (0, 0, 0))], dtype=torch.float32).unsqueeze(0)


def ids_for_latent(grids: torch.Tensor, latent_h: int, latent_w: int, device=None) -> torch.Tensor:
    """(N, 3) float32 editing txt_ids for a latent of latent_h x latent_w, from a grids tensor (its first row)."""
    g = [[int(round(v)) for v in row] for row in grids[0].float().tolist()]
    ref = tuple(g[1]) if g[1][0] > 0 else None
    return editing_text_ids(latent_h * 8, latent_w * 8, tuple(g[0]), ref or (1, 36, 36), ref is not None,
                            dtype=torch.float32, device=device)


def place_ids(txt_ids: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
    """txt_ids (B, L, A) with the first len(ids) rows set to `ids`; tokens other nodes appended keep zero ids."""
    out = txt_ids.clone()
    n = min(ids.shape[0], out.shape[1])
    out[:, :n, : ids.shape[1]] = ids[:n].to(out)
    return out


def positive(kind: str, projector, target: torch.Tensor, reference, pooled: torch.Tensor, guidance: float,
             use_reference: bool = True, device=None, out_device="cpu") -> tuple[torch.Tensor, dict, torch.Tensor | None]:
    """(context float32, {"pooled_output", "guidance"}, grids or None) of a Nexus-Gen positive."""
    ref = reference if (use_reference and kind == EDITING) else None
    ctx, tgrid, rgrid = project(kind, projector, target, ref, device=device)
    ctx = ctx.to(out_device, torch.float32)
    cond = {"pooled_output": pooled.to(out_device, torch.float32).expand(ctx.shape[0], -1), "guidance": guidance}
    return ctx, cond, grids_tensor(tgrid, rgrid) if kind == EDITING else None


def scheduler_sigmas(steps: int, denoise: float = 1.0, shift: float = SHIFT) -> torch.Tensor:
    """steps + 1 sigmas ending at 0: what SamplerCustom takes to reproduce the reference's schedule."""
    s = sigmas(steps, shift, denoise)
    return torch.cat([s, s.new_zeros(1)])


def split_prompts(text: str, one_per_line: bool) -> list[str]:
    """One prompt, or one per non-empty line (a batch); surrounding spaces dropped."""
    if not one_per_line:
        return [text]
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines or [text]
