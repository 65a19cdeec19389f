"""The decoder's DiT as a native ComfyUI FLUX MODEL, plus what makes any FLUX MODEL sample like the reference.

Loading goes through ComfyUI's own `load_diffusion_model_state_dict` (the native UNET loader's route: the host's
patcher class, Dynamic VRAM, its fp8 and quantized-weight handling) whenever the host's detection describes the
checkpoint. Only where it cannot (hosts that hard-code FLUX's width, and our tiny test models) is the model built
from the shapes, with the same patcher class.

`apply_nexus` works on any FLUX MODEL, ours or another loader's (city96's GGUF): it sets the reference's flow
shift (ModelSamplingFlux's exp(mu)/(exp(mu) + 1/t - 1) equals the reference's 3t/(1+2t) for mu = ln 3) and adds
the editing ids wrapper. Editing conditioning carries its grids in model_conds["nexus_edit_grids"]; the wrapper
turns them into txt_ids for the actual latent size through a post_input patch. Conditioning without the key
(every normal FLUX prompt, CFG negatives) keeps ComfyUI's zero ids: the MODEL behaves like a plain FLUX model.
"""
from __future__ import annotations

import logging

import torch

import comfy.model_detection
import comfy.model_management as mm
import comfy.model_patcher
import comfy.model_sampling
import comfy.patcher_extension
import comfy.sd
import comfy.supported_models
import comfy.utils

from ...nexus_core.embeddings.conditioning import COMFY_FLUX_MU, GRIDS_KEY, ids_for_latent, place_ids
from ...nexus_core.errors import NexusError
from .memory import patcher_class

log = logging.getLogger("nexus_gen")
REFERENCE_SHIFT = COMFY_FLUX_MU
WRAPPER_KEY = "nexus_gen_edit_ids"
WEIGHT_DTYPES = ["default", "fp8_e4m3fn", "fp8_e4m3fn_fast", "fp8_e5m2"]


def model_options(weight_dtype: str) -> dict:
    """The native UNET loader's options for a weight_dtype choice."""
    if weight_dtype not in WEIGHT_DTYPES:
        raise NexusError(f"weight_dtype must be one of {WEIGHT_DTYPES}, got {weight_dtype!r}")
    opts = {}
    if weight_dtype.startswith("fp8_e4m3fn"):
        opts["dtype"] = torch.float8_e4m3fn
    elif weight_dtype == "fp8_e5m2":
        opts["dtype"] = torch.float8_e5m2
    if weight_dtype == "fp8_e4m3fn_fast":
        opts["fp8_optimizations"] = True
    return opts


def shape_config(sd: dict, detected: dict | None = None) -> dict:
    """The FLUX config the checkpoint's shapes describe (the host's detection, widths corrected from shapes)."""
    cfg = detected if detected is not None else comfy.model_detection.detect_unet_config(sd, "")
    if cfg is None or cfg.get("image_model") != "flux":
        raise NexusError("the decoder's DiT was not recognised as FLUX by ComfyUI")
    cfg = dict(cfg)
    hidden = sd["img_in.weight"].shape[0]
    head_dim = sd["double_blocks.0.img_attn.norm.key_norm.scale"].shape[0]
    cfg.update(hidden_size=hidden, num_heads=hidden // head_dim, context_in_dim=sd["txt_in.weight"].shape[1],
               vec_in_dim=sd["vector_in.in_layer.weight"].shape[1])
    return cfg


def host_describes(sd: dict) -> bool:
    """Whether the host's own detection gets every width of this checkpoint right."""
    detected = comfy.model_detection.detect_unet_config(sd, "")
    return detected == shape_config(sd, detected)


def annotate(sd: dict, path) -> dict:
    """Tell the host's storage layer where `sd`'s tensors come from (hosts after 0.33: comfy.storage decides its
    fast-disk policy from it, as for the state dicts it loads itself); unchanged elsewhere."""
    try:
        import comfy.storage
    except ImportError:
        return sd
    if path is not None and hasattr(comfy.storage, "annotate_state_dict"):
        comfy.storage.annotate_state_dict(sd, str(path))
    return sd


def load_dit(sd: dict, weight_dtype: str = "default", disable_dynamic: bool = False):
    """A patcher around ComfyUI's FLUX model with the BFL-layout weights `sd` (the projector already removed).
    disable_dynamic: the plain ModelPatcher even where Dynamic VRAM is on (the host asks for it when it moves a
    model to the CPU)."""
    opts = model_options(weight_dtype)
    if host_describes(sd):
        kw = {"disable_dynamic": True} if disable_dynamic else {}
        patcher = comfy.sd.load_diffusion_model_state_dict(sd, model_options=opts, **kw)
        if patcher is None:
            raise NexusError("ComfyUI could not load the decoder's DiT")
        return patcher
    return _build_from_shapes(sd, opts, disable_dynamic)


def _build_from_shapes(sd: dict, opts: dict, disable_dynamic: bool = False):
    model_config = comfy.supported_models.Flux(shape_config(sd))
    load_device, offload_device = mm.get_torch_device(), mm.unet_offload_device()
    dtype = opts.get("dtype") or mm.unet_dtype(model_params=comfy.utils.calculate_parameters(sd),
                                               supported_dtypes=list(model_config.supported_inference_dtypes),
                                               weight_dtype=comfy.utils.weight_dtype(sd))
    model_config.set_inference_dtype(dtype, mm.unet_manual_cast(dtype, load_device,
                                                                model_config.supported_inference_dtypes))
    if opts.get("fp8_optimizations"):
        model_config.optimizations["fp8"] = True
    model = model_config.get_model(sd, "").to(offload_device)
    cls = comfy.model_patcher.ModelPatcher if disable_dynamic else patcher_class()
    patcher = cls(model, load_device=load_device, offload_device=offload_device)
    # as core does: the patcher first, then the weights, assigned (not copied) where it is a Dynamic VRAM one
    dynamic = getattr(patcher, "is_dynamic", lambda: False)()
    if dynamic:
        model.load_model_weights(sd, "", assign=True)
    else:
        model.load_model_weights(sd, "")
    return patcher


def diffusion_widths(patcher) -> tuple[int, int]:
    """(context width, pooled width) a FLUX MODEL takes, read from its input layers (GGUF tensors included)."""
    dm = patcher.model.diffusion_model
    return _in_features(dm.txt_in), _in_features(dm.vector_in.in_layer)


def _in_features(linear) -> int:
    shape = getattr(linear.weight, "tensor_shape", None) or linear.weight.shape  # GGMLTensor keeps the real shape
    return int(shape[-1])


def apply_nexus(patcher):
    """A clone of the FLUX MODEL `patcher` that samples with the reference's shift and applies editing ids."""
    if not hasattr(patcher.model, "diffusion_model") or not hasattr(patcher.model.diffusion_model, "txt_in"):
        raise NexusError("this MODEL is not a FLUX diffusion model (no txt_in layer): connect a Nexus-Gen decoder "
                         "loaded by Nexus-Gen Decoder Loader or a GGUF/UNET loader")
    m = patcher.clone()

    class ReferenceSampling(comfy.model_sampling.ModelSamplingFlux, comfy.model_sampling.CONST):
        pass

    sampling = ReferenceSampling(m.model.model_config)
    sampling.set_parameters(shift=REFERENCE_SHIFT)
    m.add_object_patch("model_sampling", sampling)
    m.add_wrapper_with_key(comfy.patcher_extension.WrappersMP.DIFFUSION_MODEL, WRAPPER_KEY, edit_ids_wrapper)
    return m


_WARNED_SIZES: set = set()


def _say_odd_size(x):
    """FLUX works on 2x2 latent patches: sides that are not multiples of 16 px are padded inside the model (the
    reference rounds them up instead). Said once per size, so the change is never silent."""
    h, w = x.shape[-2:]
    if (h % 2 or w % 2) and (h, w) not in _WARNED_SIZES:
        _WARNED_SIZES.add((h, w))
        log.warning("Nexus-Gen: the latent is %dx%d px, not a multiple of 16; FLUX pads it to %dx%d px inside the "
                    "model (the reference would round the size up to that)", w * 8, h * 8, (w + w % 2) * 8,
                    (h + h % 2) * 8)


def edit_ids_wrapper(executor, x, timestep, context, y=None, guidance=None, ref_latents=None, control=None,
                     transformer_options={}, **kwargs):
    _say_odd_size(x)
    grids = kwargs.pop(GRIDS_KEY, None)
    if grids is not None:
        ids = ids_for_latent(grids, x.shape[-2], x.shape[-1], x.device).to(x.dtype).float()  # cast like the latents

        def set_ids(d):
            return {**d, "txt_ids": place_ids(d["txt_ids"], ids)}

        transformer_options = dict(transformer_options)
        patches = dict(transformer_options.get("patches", {}))
        patches["post_input"] = list(patches.get("post_input", [])) + [set_ids]
        transformer_options["patches"] = patches
    return executor(x, timestep, context, y, guidance, ref_latents, control, transformer_options, **kwargs)
