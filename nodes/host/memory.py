"""Put foreign torch modules (the Qwen2.5-VL AR, projectors, text encoders) under ComfyUI's memory manager.

They get the host's current patcher class (`CoreModelPatcher`: Dynamic VRAM on newer hosts, looked up at call time
because main.py rebinds it at start-up) and cast-on-demand layers, so the host loads them partially and streams
the rest, as it does its own models. ModelPatcher sets `model.device`, which HF models do not allow, so each
module sits in a thin container. Every use calls load_models_gpu first: ComfyUI may have offloaded the module to
make room for the DiT, or the reverse.
"""
from __future__ import annotations

import contextlib
import logging

import torch

import comfy.model_management as mm
import comfy.model_patcher

from ...nexus_core.memory.devices import DTYPES
from .cast_ops import cast_on_demand

log = logging.getLogger("nexus_gen")
# Room kept free for activations, the KV cache and ViT attention when the AR or a projector runs.
WORKING_MEMORY = 1024 ** 3


class Container(torch.nn.Module):
    def __init__(self, module: torch.nn.Module):
        super().__init__()
        self.inner = module
        self.device = torch.device("cpu")


def patcher_class():
    return getattr(comfy.model_patcher, "CoreModelPatcher", comfy.model_patcher.ModelPatcher)


_DEVICE_OPTIONS: list = []


def device_options() -> list[str]:
    """The host's device choices ("default", "cpu", "gpu:N") where it has them (multi-GPU hosts), else ours. Asked
    once: the devices do not change while the host runs, and schemas are built for every queued prompt."""
    if not _DEVICE_OPTIONS:
        _DEVICE_OPTIONS.extend(mm.get_gpu_device_options() if hasattr(mm, "get_gpu_device_options")
                               else ["default", "cpu"])
    return list(_DEVICE_OPTIONS)


def resolve_device(option: str) -> torch.device:
    """The load device for a device option; 'default' is ComfyUI's compute device. Unknown GPUs (a workflow from
    a bigger machine) fall back to the default with a message, as the host's own device selectors do."""
    if option in (None, "", "default"):
        return mm.get_torch_device()
    if option == "cpu":
        return torch.device("cpu")
    if hasattr(mm, "resolve_gpu_device_option"):
        dev = mm.resolve_gpu_device_option(option)
        if dev is not None:
            return dev
    log.warning("Nexus-Gen: device %r is not available here; using %s", option, mm.get_torch_device())
    return mm.get_torch_device()


def offload_device_for(load_device: torch.device) -> torch.device:
    return torch.device("cpu") if load_device.type == "cpu" else mm.unet_offload_device()


def patcher_for(module: torch.nn.Module, load_device: torch.device | None = None):
    """The host's patcher around `module`, whose layers become cast-on-demand so the host may stream them."""
    left = cast_on_demand(module)
    if left:
        log.info("Nexus-Gen: %d module(s) stay whole-loaded (no cast-on-demand class): %s", len(left), left[:4])
    load_device = load_device or mm.get_torch_device()
    cls = patcher_class()
    return cls(Container(module), load_device=load_device, offload_device=offload_device_for(load_device))


def ensure_loaded(patcher, memory_required: int = WORKING_MEMORY) -> torch.device:
    """Load what fits on the patcher's device (the host streams the rest); returns the compute device."""
    mm.load_models_gpu([patcher], memory_required=memory_required)
    dev = patcher.load_device
    _buffers_to(patcher.model, dev)
    return dev


def device_context(device):
    """The host's context for running on `device` (0.23+: makes a chosen GPU the current one, as core does around
    its CLIP and VAE runs, so kernels that use the current device see the right one); nothing elsewhere."""
    ctx = getattr(mm, "cuda_device_context", None)
    if ctx is None or device is None:
        return contextlib.nullcontext()
    return ctx(device)


def _buffers_to(root: torch.nn.Module, device: torch.device):
    """Buffers of parameter-free modules (rotary tables) are not moved by the old patcher's partial load."""
    for m in root.modules():
        for name, buf in m._buffers.items():
            if buf is not None and buf.device != device:
                m._buffers[name] = buf.to(device)


def compute_dtype(choice: str, device, checkpoint_dtype: torch.dtype | None = None) -> torch.dtype:
    """'auto' = bfloat16 where the device computes it well, else float32 (Qwen2.5-VL overflows in float16).
    Given the checkpoint's own dtype (the AR), 'auto' keeps a float32 checkpoint in float32 and runs a bfloat16
    one in bfloat16 on the CPU too: 16.6 GB of RAM instead of 33 GB for the real AR."""
    if choice != "auto":
        return DTYPES[choice]
    if checkpoint_dtype == torch.float32:
        return torch.float32
    if checkpoint_dtype == torch.bfloat16 and torch.device(device).type == "cpu":
        return torch.bfloat16
    return torch.bfloat16 if mm.should_use_bf16(device) else torch.float32
