"""Loader nodes: the AR model, a decoder (native MODEL + projector), and the FLUX text encoders Nexus-Gen uses."""
from __future__ import annotations

import json
import os

import folder_paths
import comfy.model_management as mm
from comfy_api.latest import io

from ..nexus_core.decoder.checkpoint import read_decoder
from ..nexus_core.decoder.dit import comfyui_state
from ..nexus_core.decoder.projectors import build_projector
from . import paths
from .ar_handle import ARHandle
from .decoder_cache import cached_comfyui_file
from .flux_model import WEIGHT_DTYPES, build_model
from .memory import compute_dtype, ensure_loaded, patcher_for
from .types import CATEGORY, NexusAR, NexusProjector, NexusTextEncoders, Projector


class NexusGenARLoader(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        folders = paths.model_folders(paths.search_roots(folder_paths, (paths.FOLDER, "LLM")))
        return io.Schema(
            node_id="NexusGenARLoader", display_name="Nexus-Gen AR Model Loader", category=CATEGORY,
            description="Loads the Nexus-Gen Qwen2.5-VL model (understanding, embeddings) under ComfyUI's memory "
                        "manager, so it is offloaded when the DiT needs the GPU.",
            inputs=[
                io.Combo.Input("model", options=folders or ["(put Nexus-GenV2 in models/nexus_gen)"],
                               tooltip="A Nexus-GenV2 folder (config.json + safetensors shards + tokenizer files) "
                                       "under models/nexus_gen or models/LLM"),
                io.Combo.Input("dtype", options=["auto", "bfloat16", "float16", "float32"], default="auto",
                               tooltip="auto = bfloat16 where the device supports it, else float32"),
            ],
            outputs=[NexusAR.Output(display_name="nexus_ar", tooltip="The Nexus-Gen AR model")],
        )

    @classmethod
    def execute(cls, model, dtype) -> io.NodeOutput:
        from ..nexus_core.ar import load_ar

        folder = paths.resolve_model_folder(folder_paths, model)
        ar = load_ar(folder, device="cpu", dtype=compute_dtype(dtype, mm.get_torch_device()))
        return io.NodeOutput(ARHandle.wrap(ar, model))


def _ar_config_near(path: str) -> dict | None:
    cfg = os.path.join(os.path.dirname(path), "config.json")
    if os.path.isfile(cfg):
        with open(cfg, encoding="utf-8") as f:
            return json.load(f)
    return None


class NexusGenDecoderLoader(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        files = paths.decoder_files(folder_paths)
        return io.Schema(
            node_id="NexusGenDecoderLoader", display_name="Nexus-Gen Decoder Loader", category=CATEGORY,
            description="Loads generation_decoder.bin / edit_decoder.bin (or a converted .safetensors): the DiT as a "
                        "native FLUX MODEL and the projector. A .bin is converted once to a cached safetensors file.",
            inputs=[
                io.Combo.Input("decoder", options=files or ["(put the decoders in models/nexus_gen)"],
                               tooltip="Decoder file under models/nexus_gen or models/diffusion_models; its kind "
                                       "(generation or editing) is detected from its keys"),
                io.Combo.Input("weight_dtype", options=list(WEIGHT_DTYPES), default="default",
                               tooltip="Storage dtype of the DiT weights, like the native diffusion-model loader"),
            ],
            outputs=[io.Model.Output(display_name="MODEL", tooltip="The decoder's FLUX DiT: works with KSampler, "
                                     "SamplerCustom, LoRA loaders, FluxGuidance ..."),
                     NexusProjector.Output(display_name="projector",
                                           tooltip="Adapter (generation) or merger (editing) for the conditioning")],
        )

    @classmethod
    def execute(cls, decoder, weight_dtype) -> io.NodeOutput:
        path = paths.resolve_decoder(folder_paths, decoder)
        source = cached_comfyui_file(path, folder_paths)
        dec = read_decoder(source)
        model = build_model(comfyui_state(dec), weight_dtype)
        module = build_projector(dec, _ar_config_near(path), dtype=compute_dtype("auto", mm.get_torch_device()))
        return io.NodeOutput(model, Projector(dec.kind, module, patcher_for(module), decoder))


class NexusGenTextEncoderLoader(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        files = folder_paths.get_filename_list("text_encoders")
        return io.Schema(
            node_id="NexusGenTextEncoderLoader", display_name="Nexus-Gen Text Encoders", category=CATEGORY,
            description="CLIP-L (pooled of the empty prompt, as Nexus-Gen was trained) and optionally T5-XXL (only "
                        "for a CFG negative prompt, loaded when first needed), from models/text_encoders.",
            inputs=[
                io.Combo.Input("clip_l", options=files or ["clip_l.safetensors"],
                               tooltip="FLUX's CLIP-L text encoder file (e.g. clip_l.safetensors)"),
                io.Combo.Input("t5xxl", options=["none"] + files, default="none",
                               tooltip="FLUX's T5-XXL file, only needed for a negative prompt with cfg > 1; "
                                       "loaded lazily on first use"),
            ],
            outputs=[NexusTextEncoders.Output(display_name="text_encoders",
                                              tooltip="Text encoders for the Nexus-Gen conditioning nodes")],
        )

    @classmethod
    def execute(cls, clip_l, t5xxl) -> io.NodeOutput:
        from ..nexus_core.flux.text_encoders import TextEncoders

        clip_path = folder_paths.get_full_path_or_raise("text_encoders", clip_l)
        t5_path = None if t5xxl == "none" else folder_paths.get_full_path_or_raise("text_encoders", t5xxl)
        base = os.path.join(folder_paths.base_path, "comfy")  # ComfyUI's bundled CLIP / T5 tokenizers
        clip_tok = paths.tokenizer_for(clip_path, os.path.join(base, "sd1_tokenizer"))
        t5_tok = paths.tokenizer_for(t5_path, os.path.join(base, "text_encoders", "t5_tokenizer")) if t5_path else None
        patchers = {}

        def prepare(name, module):
            if name not in patchers:
                patchers[name] = patcher_for(module)
            ensure_loaded(patchers[name])

        dtype = compute_dtype("auto", mm.get_torch_device())
        enc = TextEncoders(clip_path, clip_tok, t5_path, t5_tok, dtype=dtype, device="cpu", prepare=prepare)
        return io.NodeOutput(enc)
