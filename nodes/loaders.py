"""Loader nodes: the AR model, a decoder (native MODEL + projector), a projector alone (for a DiT from another
loader, e.g. GGUF), the patch that makes any FLUX MODEL sample like Nexus-Gen, and the text encoders."""
from __future__ import annotations

import json
import logging
import os

import folder_paths
import comfy.model_management as mm
from comfy_api.latest import io

from ..nexus_core.decoder.checkpoint import DecoderFile, read_decoder, read_projector
from ..nexus_core.decoder.dit import comfyui_state
from ..nexus_core.decoder.projectors import build_projector
from ..nexus_core.memory.devices import DTYPES
from ..nexus_core.errors import NexusError
from ..nexus_core.memory.fp8 import can_hold_fp8
from .inputs import checks, paths
from .host.ar_handle import ARHandle
from .host.flux_model import WEIGHT_DTYPES, annotate, apply_nexus, diffusion_widths, load_dit
from .host.memory import compute_dtype, device_options, ensure_loaded, patcher_for, resolve_device
from .host.progress import warn
from .host.schema import schema
from .types import CATEGORY, NexusAR, NexusProjector, NexusTextEncoders, Projector

log = logging.getLogger("nexus_gen")
AR_WEIGHT_DTYPES = ["default", "fp8_e4m3fn", "fp8_e5m2"]
DEVICE_TIP = ("default = ComfyUI's GPU; cpu keeps this model off the GPU entirely (slow, but frees VRAM for the "
              "DiT); gpu:N = another GPU on multi-GPU machines")


class NexusGenARLoader(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        folders = paths.ar_models(folder_paths)
        return schema(
            node_id="NexusGenARLoader", display_name="Nexus-Gen AR Model Loader", category=CATEGORY,
            search_aliases=["nexus", "qwen", "qwen2.5-vl", "unified", "llm", "load"],
            description="Loads the Nexus-Gen Qwen2.5-VL model (understanding, embeddings) under ComfyUI's memory "
                        "manager: it is loaded partially when VRAM is short, the rest streamed, and offloaded when "
                        "the DiT needs the GPU.",
            inputs=[
                io.Combo.Input("model", options=folders or ["(put Nexus-GenV2 in models/nexus_gen)"],
                               tooltip="A Nexus-GenV2 folder (config.json + safetensors shards + tokenizer files) "
                                       "under models/nexus_gen or models/LLM, or the one fp8 file `nexus-gen convert` "
                                       "makes from it (8.9 GB; loads as fp8 whatever weight_dtype says)"),
                io.Combo.Input("dtype", options=["auto", "bfloat16", "float16", "float32"], default="auto",
                               tooltip="Compute dtype. auto = the checkpoint's (bfloat16) where the device runs it "
                                       "well, else float32"),
                io.Combo.Input("weight_dtype", options=AR_WEIGHT_DTYPES, default="default",
                               tooltip="Storage of the Linear weights. fp8_e4m3fn halves the AR (16.6 -> ~8.9 GB) "
                                       "with per-row scales, computing in dtype; e5m2 is less precise"),
                io.Combo.Input("device", options=device_options(), default="default", tooltip=DEVICE_TIP),
            ],
            outputs=[NexusAR.Output(display_name="nexus_ar", tooltip="The Nexus-Gen AR model")],
            hidden=[io.Hidden.unique_id],
        )

    @classmethod
    def validate_inputs(cls, model):
        return checks.ar_folder(folder_paths, model)

    @classmethod
    def execute(cls, model, dtype, weight_dtype, device) -> io.NodeOutput:
        from ..nexus_core.ar import load_ar
        from ..nexus_core.ar.checkpoint import inspect_ar_folder

        checks.require(checks.ar_folder(folder_paths, model))  # a name linked from another node is seen only now
        folder = paths.resolve_model_folder(folder_paths, model)
        load_device = resolve_device(device)
        saved = inspect_ar_folder(folder).config.get("torch_dtype")
        dt = compute_dtype(dtype, load_device, DTYPES.get(saved))
        if weight_dtype != "default" and not can_hold_fp8(load_device):
            msg = f"Nexus-Gen: {load_device} cannot hold {weight_dtype} weights; loading them in {dt} instead"
            warn(msg, cls.hidden.unique_id)
            weight_dtype = "default"
        ar = load_ar(folder, device="cpu", dtype=dt, weight_dtype=weight_dtype)
        return io.NodeOutput(ARHandle.wrap(ar, model, load_device))


def _ar_config_near(path: str) -> dict | None:
    cfg = os.path.join(os.path.dirname(path), "config.json")
    if os.path.isfile(cfg):
        with open(cfg, encoding="utf-8") as f:
            return json.load(f)
    return None


def _projector(dec: DecoderFile, path: str, name: str) -> Projector:
    module = build_projector(dec, _ar_config_near(path), dtype=compute_dtype("auto", mm.get_torch_device()))
    return Projector(dec.kind, module, patcher_for(module), name)


def _reload_dit(source: str, weight_dtype: str, disable_dynamic: bool = False):
    """The host's reload factory (cached_patcher_init): multi-GPU nodes build a fresh copy on another device."""
    return load_dit(annotate(comfyui_state(read_decoder(source)), source), weight_dtype, disable_dynamic)


class NexusGenDecoderLoader(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        files = paths.decoder_files(folder_paths)
        return schema(
            node_id="NexusGenDecoderLoader", display_name="Nexus-Gen Decoder Loader", category=CATEGORY,
            search_aliases=["nexus", "flux", "decoder", "edit", "unified", "load"],
            description="Loads generation_decoder.bin / edit_decoder.bin (or a converted .safetensors): the DiT as a "
                        "native FLUX MODEL through ComfyUI's own diffusion-model loader, and the projector. A .bin is "
                        "read in place (memory-mapped): no converted copy is written.",
            inputs=[
                io.Combo.Input("decoder", options=files or ["(put the decoders in models/nexus_gen)"],
                               tooltip="Decoder file under models/nexus_gen or models/diffusion_models; its kind "
                                       "(generation or editing) is detected from its keys"),
                io.Combo.Input("weight_dtype", options=WEIGHT_DTYPES, default="default",
                               tooltip="Storage dtype of the DiT weights, as in the native diffusion-model loader "
                                       "(fp8 halves the 24 GB DiT)"),
            ],
            outputs=[io.Model.Output(display_name="MODEL", tooltip="The decoder's FLUX DiT: works with KSampler, "
                                     "SamplerCustom, LoRA loaders, FluxGuidance ..."),
                     NexusProjector.Output(display_name="projector",
                                           tooltip="Adapter (generation) or merger (editing) for the conditioning")],
        )

    @classmethod
    def validate_inputs(cls, decoder):
        return checks.decoder_file(folder_paths, decoder)

    @classmethod
    def execute(cls, decoder, weight_dtype) -> io.NodeOutput:
        checks.require(checks.decoder_file(folder_paths, decoder))
        path = paths.resolve_decoder(folder_paths, decoder)
        dec = read_decoder(path)  # a .bin is memory-mapped: the host reads its tensors in place, no copy on disk
        paths.say_unused_cache(path, folder_paths.models_dir)
        base = load_dit(annotate(comfyui_state(dec), path), weight_dtype)
        base.cached_patcher_init = (_reload_dit, (path, weight_dtype))
        return io.NodeOutput(apply_nexus(base), _projector(dec, path, decoder))


class NexusGenProjectorLoader(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        files = paths.decoder_files(folder_paths, gguf=True)
        return schema(
            node_id="NexusGenProjectorLoader", display_name="Nexus-Gen Projector Loader", category=CATEGORY,
            search_aliases=["nexus", "gguf", "adapter", "merger", "projector"],
            description="Only the projector of a decoder file (the DiT is not built): for a DiT loaded by another "
                        "node, e.g. Unet Loader (GGUF) with a GGUF made by `nexus-gen convert --layout gguf`, which "
                        "holds the projector too.",
            inputs=[io.Combo.Input("decoder", options=files or ["(put the decoders in models/nexus_gen)"],
                                   tooltip="A decoder .bin/.safetensors, or a Nexus-Gen GGUF")],
            outputs=[NexusProjector.Output(display_name="projector",
                                           tooltip="Adapter (generation) or merger (editing) for the conditioning")],
        )

    @classmethod
    def validate_inputs(cls, decoder):
        return checks.decoder_file(folder_paths, decoder, gguf=True)

    @classmethod
    def execute(cls, decoder) -> io.NodeOutput:
        checks.require(checks.decoder_file(folder_paths, decoder, gguf=True))
        path = paths.resolve_decoder(folder_paths, decoder)
        return io.NodeOutput(_projector(read_projector(path), path, decoder))


class NexusGenModelPatch(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return schema(
            node_id="NexusGenModelPatch", display_name="Nexus-Gen Model Patch", category=CATEGORY,
            search_aliases=["nexus", "gguf", "patch", "shift", "edit"],
            description="Makes a FLUX MODEL from another loader (Unet Loader (GGUF), Load Diffusion Model) sample "
                        "like Nexus-Gen: the reference's flow shift and the editing decoder's position ids. Models "
                        "from Nexus-Gen Decoder Loader already have it.",
            inputs=[io.Model.Input("model", tooltip="The decoder's DiT, loaded by any FLUX-capable loader"),
                    NexusProjector.Input("projector", tooltip="From Nexus-Gen Projector Loader (same decoder file)")],
            outputs=[io.Model.Output(display_name="MODEL", tooltip="The MODEL, ready for KSampler/SamplerCustom")],
        )

    @classmethod
    def execute(cls, model, projector) -> io.NodeOutput:
        ctx, _ = diffusion_widths(model)
        if ctx != projector.context_width:
            raise NexusError(f"This MODEL takes {ctx}-wide context but the {projector.kind} projector "
                             f"'{projector.path}' makes {projector.context_width}-wide context: load the DiT of the "
                             "same Nexus-Gen decoder file")
        return io.NodeOutput(apply_nexus(model))


class NexusGenTextEncoderLoader(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        files = folder_paths.get_filename_list("text_encoders")
        return schema(
            node_id="NexusGenTextEncoderLoader", display_name="Nexus-Gen Text Encoders", category=CATEGORY,
            search_aliases=["nexus", "clip", "t5", "text encoder"],
            description="CLIP-L (pooled of the empty prompt, as Nexus-Gen was trained) and optionally T5-XXL (only "
                        "for a CFG negative prompt, loaded when first needed), from models/text_encoders.",
            inputs=[
                io.Combo.Input("clip_l", options=files or ["clip_l.safetensors"],
                               tooltip="FLUX's CLIP-L text encoder file (e.g. clip_l.safetensors)"),
                io.Combo.Input("t5xxl", options=["none"] + files, default="none",
                               tooltip="FLUX's T5-XXL file, only needed for a negative prompt with cfg > 1; "
                                       "loaded lazily on first use"),
                io.Combo.Input("device", options=device_options(), default="default", tooltip=DEVICE_TIP),
            ],
            outputs=[NexusTextEncoders.Output(display_name="text_encoders",
                                              tooltip="Text encoders for the Nexus-Gen conditioning nodes")],
        )

    @classmethod
    def validate_inputs(cls, clip_l, t5xxl):
        return _text_encoder_checks(clip_l, t5xxl)

    @classmethod
    def execute(cls, clip_l, t5xxl, device) -> io.NodeOutput:
        checks.require(_text_encoder_checks(clip_l, t5xxl))  # names linked from other nodes are seen only now
        from ..nexus_core.flux.text_encoders import TextEncoders

        clip_path = folder_paths.get_full_path_or_raise("text_encoders", clip_l)
        t5_path = None if t5xxl == "none" else folder_paths.get_full_path_or_raise("text_encoders", t5xxl)
        base = os.path.join(folder_paths.base_path, "comfy")  # ComfyUI's bundled CLIP / T5 tokenizers
        clip_tok = paths.tokenizer_for(clip_path, os.path.join(base, "sd1_tokenizer"))
        t5_tok = paths.tokenizer_for(t5_path, os.path.join(base, "text_encoders", "t5_tokenizer")) if t5_path else None
        load_device = resolve_device(device)
        patchers = {}

        def prepare(name, module):
            if name not in patchers:
                patchers[name] = patcher_for(module, load_device)
            return ensure_loaded(patchers[name])

        dtype = compute_dtype("auto", load_device)
        enc = TextEncoders(clip_path, clip_tok, t5_path, t5_tok, dtype=dtype, device="cpu", prepare=prepare)
        enc.load_device = load_device  # runs happen in the host's context for it (device_context)
        enc.get_models = lambda: list(patchers.values())  # the host's prompt tracker finds our patchers here
        return io.NodeOutput(enc)


def _text_encoder_checks(clip_l, t5xxl):
    """Both names must be files the host lists in models/text_encoders (validate_inputs takes the list check over)."""
    return checks.first(checks.text_encoder_file(folder_paths, clip_l, "clip_l"),
                        True if t5xxl == "none" else checks.text_encoder_file(folder_paths, t5xxl, "t5xxl"))
