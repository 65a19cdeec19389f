"""Build a module without allocating random weights, then take the checkpoint's tensors as its parameters."""
from __future__ import annotations

from typing import Callable

import torch

from ..errors import NexusError


def from_state(factory: Callable[[], torch.nn.Module], state: dict[str, torch.Tensor], dtype, what: str):
    """`factory()` runs on the meta device; `state` must match it exactly (strict), cast to `dtype`."""
    with torch.device("meta"):
        module = factory()
    try:
        module.load_state_dict({k: v.to(dtype) for k, v in state.items()}, strict=True, assign=True)
    except RuntimeError as e:
        raise NexusError(f"{what}: {str(e)[:400]}") from None
    return module
