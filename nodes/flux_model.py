"""The decoder's DiT as a native ComfyUI FLUX MODEL, plus the editing decoder's position ids.

Dimensions come from the checkpoint (ComfyUI's detection is used, with the head count and widths corrected from
the tensor shapes so any size loads). The model samples with the reference's flow shift: ModelSamplingFlux's
exp(mu)/(exp(mu) + 1/t - 1) equals the reference's 3t/(1+2t) for mu = ln 3.

Editing conditioning carries its grids in model_conds["nexus_edit_grids"]; the DIFFUSION_MODEL wrapper turns them
into txt_ids for the actual latent size through a post_input patch. Conditioning without the key (every normal
FLUX prompt, CFG negatives) keeps ComfyUI's zero ids: the MODEL behaves exactly like a plain FLUX model then.
"""
from __future__ import annotations

import math

import torch

import comfy.model_detection
import comfy.model_management as mm
import comfy.model_patcher
import comfy.patcher_extension
import comfy.supported_models
import comfy.utils

from ..nexus_core.decoder.ids import editing_text_ids

REFERENCE_SHIFT = math.log(3.0)
WRAPPER_KEY = "nexus_gen_edit_ids"
GRIDS_KEY = "nexus_edit_grids"
WEIGHT_DTYPES = {"default": None, "fp8_e4m3fn": torch.float8_e4m3fn, "fp8_e4m3fn_fast": torch.float8_e4m3fn,
                 "fp8_e5m2": torch.float8_e5m2}


def unet_config_from_bfl(sd: dict) -> dict:
    cfg = comfy.model_detection.detect_unet_config(sd, "")
    if cfg is None or cfg.get("image_model") != "flux":
        raise ValueError("the decoder's DiT was not recognised as FLUX by ComfyUI")
    hidden = sd["img_in.weight"].shape[0]
    head_dim = sd["double_blocks.0.img_attn.norm.key_norm.scale"].shape[0]
    cfg.update(hidden_size=hidden, num_heads=hidden // head_dim, context_in_dim=sd["txt_in.weight"].shape[1],
               vec_in_dim=sd["vector_in.in_layer.weight"].shape[1])
    return cfg


def build_model(sd: dict, weight_dtype: str = "default"):
    """A ModelPatcher around ComfyUI's own FLUX model class, weights from the BFL-layout state dict `sd`."""
    model_config = comfy.supported_models.Flux(unet_config_from_bfl(sd))
    model_config.sampling_settings = {"shift": REFERENCE_SHIFT}  # instance attribute: the class dict stays intact
    load_device, offload_device = mm.get_torch_device(), mm.unet_offload_device()
    dtype = WEIGHT_DTYPES[weight_dtype]
    if dtype is None:
        dtype = mm.unet_dtype(model_params=comfy.utils.calculate_parameters(sd),
                              supported_dtypes=list(model_config.supported_inference_dtypes),
                              weight_dtype=comfy.utils.weight_dtype(sd))
    model_config.set_inference_dtype(dtype, mm.unet_manual_cast(dtype, load_device,
                                                                model_config.supported_inference_dtypes))
    if weight_dtype == "fp8_e4m3fn_fast":
        model_config.optimizations["fp8"] = True
    model = model_config.get_model(sd, "").to(offload_device)
    model.load_model_weights(sd, "")
    patcher = comfy.model_patcher.ModelPatcher(model, load_device=load_device, offload_device=offload_device)
    patcher.add_wrapper_with_key(comfy.patcher_extension.WrappersMP.DIFFUSION_MODEL, WRAPPER_KEY, edit_ids_wrapper)
    return patcher


def grids_tensor(target_grid, reference_grid=None) -> torch.Tensor:
    """(1, 2, 3): the target grid and the reference grid (zeros when there is none), unmerged patches."""
    return torch.tensor([list(target_grid), list(reference_grid or (0, 0, 0))], dtype=torch.float32).unsqueeze(0)


def edit_ids_wrapper(executor, x, timestep, context, y=None, guidance=None, ref_latents=None, control=None,
                     transformer_options={}, **kwargs):
    grids = kwargs.pop(GRIDS_KEY, None)
    if grids is not None:
        g = [[int(round(v)) for v in row] for row in grids[0].float().tolist()]
        ref = tuple(g[1]) if g[1][0] > 0 else None
        ids = editing_text_ids(x.shape[-2] * 8, x.shape[-1] * 8, tuple(g[0]), ref or (1, 36, 36), ref is not None,
                               dtype=x.dtype, device=x.device).float()

        def set_ids(d):
            txt_ids = d["txt_ids"].clone()
            n = min(ids.shape[0], txt_ids.shape[1])  # extra tokens concatenated by other nodes keep zero ids
            txt_ids[:, :n, : ids.shape[1]] = ids[:n].to(txt_ids)
            return {**d, "txt_ids": txt_ids}

        transformer_options = dict(transformer_options)
        patches = dict(transformer_options.get("patches", {}))
        patches["post_input"] = list(patches.get("post_input", [])) + [set_ids]
        transformer_options["patches"] = patches
    return executor(x, timestep, context, y, guidance, ref_latents, control, transformer_options, **kwargs)
