"""The decoder's FLUX DiT as diffusers' FluxTransformer2DModel, built from the checkpoint's own shapes."""
from __future__ import annotations

import re

import torch

from ..errors import NexusError
from ..loading.meta_init import from_state
from .checkpoint import DecoderFile
from .keymap import bfl_to_diffsynth, convert_state_dict

FLUX_AXES = (16, 56, 56)  # RoPE split of FLUX's 128-wide heads (not stored in the weights)


def diffusers_state(dec: DecoderFile) -> dict[str, torch.Tensor]:
    if dec.layout == "diffsynth":
        return convert_state_dict(dec.dit, "diffusers")
    if dec.layout == "diffusers":
        return dict(dec.dit)
    if dec.layout == "comfyui":  # diffusers' own converter assumes width 3072; ours reads it from the shapes
        return convert_state_dict(bfl_to_diffsynth(dec.dit), "diffusers")
    raise NexusError(f"{dec.path}: unknown layout {dec.layout!r}")


def comfyui_state(dec: DecoderFile) -> dict[str, torch.Tensor]:
    """The DiT in the BFL/ComfyUI layout (what ComfyUI's FLUX model class loads)."""
    if dec.layout == "comfyui":
        return dict(dec.dit)
    if dec.layout == "diffsynth":
        return convert_state_dict(dec.dit, "comfyui")
    raise NexusError(f"{dec.path}: a {dec.layout}-layout file cannot feed ComfyUI's FLUX model; convert the "
                     "original .bin with --layout comfyui")


def config_from_state(sd: dict[str, torch.Tensor]) -> dict:
    def count(pattern):
        idx = {int(m.group(1)) for k in sd if (m := re.match(pattern, k))}
        return max(idx) + 1 if idx else 0

    inner, in_ch = sd["x_embedder.weight"].shape
    head_dim = sd["transformer_blocks.0.attn.norm_q.weight"].shape[0]
    if head_dim != sum(FLUX_AXES):
        raise NexusError(f"DiT head width {head_dim} is not FLUX's {sum(FLUX_AXES)}; cannot infer the RoPE axes")
    return dict(
        patch_size=1, in_channels=in_ch, out_channels=sd["proj_out.weight"].shape[0],
        num_layers=count(r"^transformer_blocks\.(\d+)\."), num_single_layers=count(r"^single_transformer_blocks\.(\d+)\."),
        attention_head_dim=head_dim, num_attention_heads=inner // head_dim,
        joint_attention_dim=sd["context_embedder.weight"].shape[1],
        pooled_projection_dim=sd["time_text_embed.text_embedder.linear_1.weight"].shape[1],
        guidance_embeds=any(k.startswith("time_text_embed.guidance_embedder") for k in sd),
        axes_dims_rope=FLUX_AXES,
    )


def build_dit(dec: DecoderFile, dtype=torch.bfloat16, device="cpu", storage_dtype: torch.dtype | None = None):
    """FluxTransformer2DModel with the decoder's weights. storage_dtype=torch.float8_e4m3fn keeps weights in fp8
    and computes in `dtype` (layer-wise casting; norms and embedders stay in `dtype`)."""
    from diffusers import FluxTransformer2DModel

    sd = diffusers_state(dec)
    cfg = config_from_state(sd)
    model = from_state(lambda: FluxTransformer2DModel(**cfg), sd, dtype,
                       f"{dec.path}: DiT weights do not fit a FLUX transformer")
    model = model.to(device).eval().requires_grad_(False)
    if storage_dtype is not None:
        model.enable_layerwise_casting(storage_dtype=storage_dtype, compute_dtype=dtype)
    return model
