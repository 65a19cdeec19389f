"""Put foreign torch modules (the Qwen2.5-VL AR, projectors, text encoders) under ComfyUI's memory manager.

ModelPatcher sets `model.device`, which HF models do not allow, so each module sits in a thin container. Every
use calls load_models_gpu first: ComfyUI may have offloaded the module to make room for the DiT, or the reverse.
"""
from __future__ import annotations

import torch

import comfy.model_management as mm
import comfy.model_patcher


class Container(torch.nn.Module):
    def __init__(self, module: torch.nn.Module, extra: dict[str, torch.Tensor] | None = None):
        super().__init__()
        self.inner = module
        for name, t in (extra or {}).items():
            self.register_buffer(name, t)
        self.device = torch.device("cpu")


def patcher_for(module: torch.nn.Module, extra: dict[str, torch.Tensor] | None = None):
    return comfy.model_patcher.ModelPatcher(Container(module, extra), load_device=mm.get_torch_device(),
                                            offload_device=mm.unet_offload_device())


def ensure_loaded(patcher) -> torch.device:
    mm.load_models_gpu([patcher], force_full_load=True)
    return patcher.load_device


def compute_dtype(choice: str, device) -> torch.dtype:
    """'auto' = bfloat16 where the device supports it, else float32 (Qwen2.5-VL overflows in float16)."""
    if choice == "auto":
        return torch.bfloat16 if mm.should_use_bf16(device) else torch.float32
    return {"bfloat16": torch.bfloat16, "float16": torch.float16, "float32": torch.float32}[choice]
