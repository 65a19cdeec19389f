"""Random FLUX add-ons in the layouts people download, to mix with Nexus-Gen decoders in tests: an XLabs FLUX
ControlNet and a Redux style model with the SigLIP vision tower it reads. Every name and shape is the published
files' own; only the values are random (seeded)."""
from __future__ import annotations

import math
from pathlib import Path

import torch
from safetensors.torch import save_file

from ..decoder.keymap import convert_state_dict, dit_tensor_shape, expected_dit_keys

# SigLIP so400m, patch 14 at 384 px: the vision tower FLUX Redux was trained on (ComfyUI's sigclip_vision_384).
SIGLIP_384 = dict(hidden=1152, mlp=4304, layers=27, patch=14, positions=729)


class _Noise:
    """Random values for large synthetic weights, cheaply: one pool of seeded normal values, each tensor a copy of
    it from a seeded offset. Hundreds of millions of independent draws would cost seconds per file, and tests need
    values that are random-looking and reproducible, not independent."""

    def __init__(self, seed: int, size: int = 1 << 22):
        self.g = torch.Generator().manual_seed(seed)
        self.pool = torch.randn(size, generator=self.g)
        self.scaled: dict[tuple, torch.Tensor] = {}  # (std, dtype) -> the pool in that scale and dtype

    def __call__(self, shape, std: float, dtype) -> torch.Tensor:
        pool = self.scaled.setdefault((std, dtype), (self.pool * std).to(dtype))
        n = math.prod(shape)
        start = int(torch.randint(0, pool.numel(), (1,), generator=self.g))
        reps = -(-(start + n) // pool.numel())
        flat = pool.repeat(reps)[start:start + n] if reps > 1 else pool[start:start + n].clone()
        return flat.reshape(shape)


def siglip_vision_state(seed: int = 0, dtype=torch.float16, **cfg) -> dict[str, torch.Tensor]:
    """The HF `vision_model.` keys of a SigLIP vision tower (the attention-pooling head included, as in the
    published file), random weights with unit layer norms."""
    c = {**SIGLIP_384, **cfg}
    h, f, noise = c["hidden"], c["mlp"], _Noise(seed)
    shapes = {"embeddings.patch_embedding.weight": (h, 3, c["patch"], c["patch"]),
              "embeddings.patch_embedding.bias": (h,),
              "embeddings.position_embedding.weight": (c["positions"], h), "post_layernorm.weight": (h,),
              "post_layernorm.bias": (h,), "head.probe": (1, 1, h), "head.attention.in_proj_weight": (3 * h, h),
              "head.attention.in_proj_bias": (3 * h,), "head.attention.out_proj.weight": (h, h),
              "head.attention.out_proj.bias": (h,), "head.layernorm.weight": (h,), "head.layernorm.bias": (h,),
              "head.mlp.fc1.weight": (f, h), "head.mlp.fc1.bias": (f,), "head.mlp.fc2.weight": (h, f),
              "head.mlp.fc2.bias": (h,)}
    for i in range(c["layers"]):
        p = f"encoder.layers.{i}."
        for n in ("layer_norm1", "layer_norm2"):
            shapes[p + n + ".weight"], shapes[p + n + ".bias"] = (h,), (h,)
        for n in ("q_proj", "k_proj", "v_proj", "out_proj"):
            shapes[p + f"self_attn.{n}.weight"], shapes[p + f"self_attn.{n}.bias"] = (h, h), (h,)
        shapes[p + "mlp.fc1.weight"], shapes[p + "mlp.fc1.bias"] = (f, h), (f,)
        shapes[p + "mlp.fc2.weight"], shapes[p + "mlp.fc2.bias"] = (h, f), (h,)
    out = {}
    for name, shape in shapes.items():
        is_norm_weight = ("norm" in name) and name.endswith(".weight")
        t = torch.ones(shape, dtype=dtype) if is_norm_weight else noise(shape, 0.02, dtype)
        out["vision_model." + name] = t
    return out


def write_siglip_vision(path, seed: int = 0, **cfg) -> Path:
    save_file(siglip_vision_state(seed, **cfg), str(path))
    return Path(path)


def write_redux(path, seed: int = 0, vision: int = 1152, context: int = 4096, dtype=torch.bfloat16) -> Path:
    """FLUX.1 Redux: redux_up (vision -> 3 x context) and redux_down (3 x context -> context)."""
    noise = _Noise(seed)
    sd = {"redux_up.weight": noise((3 * context, vision), 0.02, dtype),
          "redux_up.bias": noise((3 * context,), 0.01, dtype),
          "redux_down.weight": noise((context, 3 * context), 0.02, dtype),
          "redux_down.bias": noise((context,), 0.01, dtype)}
    save_file(sd, str(path))
    return Path(path)


def xlabs_controlnet_state(seed: int = 0, hidden: int = 3072, n_double: int = 2, context: int = 4096,
                           pooled: int = 768, dtype=torch.bfloat16) -> dict[str, torch.Tensor]:
    """An XLabs FLUX ControlNet (the layout of XLabs-AI/flux-controlnet-*-v3): the FLUX input layers and
    `n_double` double blocks in BFL names, no single blocks or final layer, the image-hint convolutions, the
    hint's patch embedding and one output projection per block (`controlnet_blocks.N`), random."""
    noise = _Noise(seed)
    dit = {}
    for name in sorted(expected_dit_keys(n_double, 0, True)):
        shape = dit_tensor_shape(name, hidden, context, pooled, 64)
        is_norm = "norm_q" in name or "norm_k" in name
        dit[name] = torch.ones(shape, dtype=dtype) if is_norm else noise(shape, 0.02 if len(shape) > 1 else 0.01, dtype)
    sd = {k: v for k, v in convert_state_dict(dit, "comfyui").items() if not k.startswith("final_layer.")}
    for i in range(n_double):
        sd[f"controlnet_blocks.{i}.weight"] = noise((hidden, hidden), 0.02, dtype)
        sd[f"controlnet_blocks.{i}.bias"] = torch.zeros(hidden, dtype=dtype)
    for j, n_in in zip(range(0, 16, 2), (3, 16, 16, 16, 16, 16, 16, 16)):  # Conv2d at even places of a Sequential
        sd[f"input_hint_block.{j}.weight"] = noise((16, n_in, 3, 3), 0.1, dtype)
        sd[f"input_hint_block.{j}.bias"] = torch.zeros(16, dtype=dtype)
    sd["pos_embed_input.weight"] = noise((hidden, 64), 0.02, dtype)
    sd["pos_embed_input.bias"] = torch.zeros(hidden, dtype=dtype)
    return sd


def zero_initialised(controlnet: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The same ControlNet as training starts it: its output projections at zero, so every residual it adds is
    exactly zero."""
    return {k: torch.zeros_like(v) if k.startswith("controlnet_blocks.") else v for k, v in controlnet.items()}
