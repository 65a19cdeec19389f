"""The reference's flow-matching schedule (DiffSynth FlowMatchScheduler defaults used for FLUX)."""
from __future__ import annotations

import torch

from ..errors import NexusError

SHIFT = 3.0
SIGMA_MIN = 0.003 / 1.002
TRAIN_STEPS = 1000


def sigmas(steps: int, shift: float = SHIFT, denoise: float = 1.0) -> torch.Tensor:
    """(steps,) float32 sigmas: linspace(start, sigma_min) shifted by s*x/(1+(s-1)*x); the step after the last
    goes to 0. `denoise` < 1 starts part-way (img2img)."""
    if steps < 1:
        raise NexusError(f"steps must be at least 1, got {steps}")
    if not 0 < denoise <= 1:
        raise NexusError(f"denoise must be in (0, 1], got {denoise}")
    start = SIGMA_MIN + (1.0 - SIGMA_MIN) * denoise
    s = torch.linspace(start, SIGMA_MIN, steps)
    return shift * s / (1 + (shift - 1) * s)


def timesteps(sig: torch.Tensor) -> torch.Tensor:
    return sig * TRAIN_STEPS
