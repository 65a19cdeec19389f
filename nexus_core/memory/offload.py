"""Where weights live while a stage runs, for GPU users without ComfyUI (whose own memory manager does this).

  none        every stage stays on the device (fastest; needs AR + DiT + encoders at once)
  model       stage by stage: a model moves to the device for its stage and back to the CPU after (peak = the
              largest stage)
  sequential  layer by layer: weights stay in CPU memory and each layer is copied in just before it runs, for
              cards smaller than one stage (diffusers' group offloading does this too, but needs accelerate)
"""
from __future__ import annotations

import contextlib

import torch

from ..errors import NexusError
from ..settings.defaults import OFFLOAD_MODES


def check_mode(mode) -> str:
    mode = {True: "model", False: "none"}.get(mode, mode)  # the old boolean form
    if mode not in OFFLOAD_MODES:
        raise NexusError(f"offload must be one of {', '.join(OFFLOAD_MODES)}, got {mode!r}")
    return mode


def stream_layers(module: torch.nn.Module, device) -> torch.nn.Module:
    """Keep `module`'s weights in CPU memory (pinned when copying to CUDA) and copy each layer's own parameters
    and buffers to `device` just before its forward, dropping them right after. Calling again is a no-op."""
    if getattr(module, "_nexus_streamed_to", None) is not None:
        return module
    device = torch.device(device)
    module.to("cpu")
    pin = device.type == "cuda"
    for m in module.modules():
        own = {k: v for k, v in _tensors(m).items() if v is not None}
        if not own:
            continue
        home = {k: (v.data.pin_memory() if pin else v.data) for k, v in own.items()}
        m.register_forward_pre_hook(_bring(home, device))
        m.register_forward_hook(_send_back(home))
    module._nexus_streamed_to = device
    return module


def _tensors(m):
    return {**dict(m.named_parameters(recurse=False)), **dict(m.named_buffers(recurse=False))}


def _to_device(t: torch.Tensor, device) -> torch.Tensor:
    return t.to(device, non_blocking=True)


def _bring(home, device):
    def hook(m, args):
        for name, t in _tensors(m).items():
            if name in home:
                t.data = _to_device(home[name], device)
    return hook


def _send_back(home):
    def hook(m, args, out):
        for name, t in _tensors(m).items():
            if name in home:
                t.data = home[name]
    return hook


@contextlib.contextmanager
def on_device(modules, device, offload="model"):
    """Run a stage with `modules` on `device` in the given offload mode."""
    offload = check_mode(offload)
    device = torch.device(device)
    if offload == "sequential" and device.type != "cpu":
        for m in modules:
            stream_layers(m, device)
        yield
        return
    for m in modules:
        m.to(device)
    try:
        yield
    finally:
        if offload != "none" and device.type != "cpu":
            for m in modules:
                m.to("cpu")
            torch.cuda.empty_cache()
