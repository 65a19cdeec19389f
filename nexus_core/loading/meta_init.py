"""Build a module without allocating random weights, then take the checkpoint's tensors as its parameters."""
from __future__ import annotations

import contextlib
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


@contextlib.contextmanager
def parameters_on_meta(dtype: torch.dtype | None = None):
    """Build modules whose parameters live on the meta device (no memory, no initialisation cost) while their
    buffers (rotary tables and the like, computed in __init__ and not stored in checkpoints) stay real.
    `dtype`: the default dtype while building, as transformers' own loader sets it."""
    register = torch.nn.Module.register_parameter

    def on_meta(module, name, param):
        if param is not None and param.device.type != "meta":
            param = torch.nn.Parameter(param.to("meta"), requires_grad=param.requires_grad)
        register(module, name, param)

    default = torch.get_default_dtype()
    torch.nn.Module.register_parameter = on_meta
    if dtype is not None and dtype.is_floating_point:
        torch.set_default_dtype(dtype)
    try:
        yield
    finally:
        torch.nn.Module.register_parameter = register
        torch.set_default_dtype(default)
