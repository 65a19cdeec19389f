"""Conditioning nodes: Nexus embeddings -> native CONDITIONING, the reference's negative, and its sigmas."""
from __future__ import annotations

import torch

import comfy.conds
import comfy.model_management as mm
from comfy_api.latest import io

from ..nexus_core.decoder import EDITING
from ..nexus_core.embeddings.conditioning import GRIDS_KEY, positive, scheduler_sigmas
from ..nexus_core.decoder.schedule import SHIFT
from ..nexus_core.settings.bounds import TEXT_BOUND_TIP
from .inputs import checks
from .host.memory import device_context, ensure_loaded
from .host.progress import warn
from .host.schema import schema
from .host.text_source import negative, pick, pooled_empty
from .types import CATEGORY, NexusEmbeds, NexusProjector, NexusTextEncoders

# The schema's bounds of the FLOAT inputs these nodes validate themselves (the host then skips its own min/max)
GUIDANCE = dict(min=0.0, max=100.0)
DENOISE = dict(min=0.01, max=1.0)
SHIFT_RANGE = dict(min=0.1, max=20.0)

TEXT_INPUTS = [
    NexusTextEncoders.Input("text_encoders", optional=True,
                            tooltip="Nexus-Gen Text Encoders: the reference-exact route (connect this or clip)"),
    io.Clip.Input("clip", optional=True,
                  tooltip="Or ComfyUI's own CLIP: DualCLIPLoader (type flux) or CLIPLoader with clip_l, the files "
                          "you load for FLUX anyway. The negative needs T5 (DualCLIPLoader)"),
]


class NexusGenConditioning(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return schema(
            node_id="NexusGenConditioning", display_name="Nexus-Gen Conditioning", category=CATEGORY,
            search_aliases=["nexus", "flux", "conditioning", "unified"],
            description="Projects Nexus-Gen embeddings to the DiT's context and adds the pooled CLIP-L of the empty "
                        "prompt and the guidance: a standard FLUX CONDITIONING for any sampler.",
            inputs=[
                NexusEmbeds.Input("embeds", tooltip="From a Nexus-Gen embeddings node"),
                NexusProjector.Input("projector", tooltip="From Nexus-Gen Decoder Loader (matches the MODEL)"),
                io.Float.Input("guidance", default=3.5, **GUIDANCE, step=0.1,
                               tooltip="FLUX embedded guidance (the reference uses 3.5)"),
                io.Boolean.Input("use_reference", default=True,
                                 tooltip="Editing decoder: also feed the 324 reference embeddings of the input "
                                         "image (the reference does)"),
                *TEXT_INPUTS,
            ],
            outputs=[io.Conditioning.Output(display_name="positive", tooltip="Positive conditioning")],
            hidden=[io.Hidden.unique_id],
        )

    @classmethod
    def validate_inputs(cls, guidance):
        return checks.number(guidance, "guidance", GUIDANCE)

    @classmethod
    def execute(cls, embeds, projector, guidance, use_reference, text_encoders=None, clip=None) -> io.NodeOutput:
        checks.require(checks.number(guidance, "guidance", GUIDANCE))
        pooled = pooled_empty(pick(text_encoders, clip, "Nexus-Gen Conditioning"))
        if projector.kind == EDITING and embeds.source in ("prompt", "image") and embeds.reference is None:
            warn(f"Nexus-Gen Conditioning: '{projector.path}' is the editing decoder, made for Image + Instruction "
                 "embeddings; for text to image or variations load generation_decoder.bin", cls.hidden.unique_id)
        device = ensure_loaded(projector.patcher)
        with device_context(device):
            ctx, cond, grids = positive(projector.kind, projector.module, embeds.target, embeds.reference, pooled,
                                        guidance, use_reference, device, mm.intermediate_device())
        if grids is not None:  # the MODEL's wrapper turns these grids into the editing position ids
            cond["model_conds"] = {GRIDS_KEY: comfy.conds.CONDRegular(grids)}
        return io.NodeOutput([[ctx, cond]])


class NexusGenNegative(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return schema(
            node_id="NexusGenNegative", display_name="Nexus-Gen Negative Conditioning", category=CATEGORY,
            search_aliases=["nexus", "negative", "t5", "cfg"],
            description="The reference's CFG negative: T5-XXL of the text padded to 512 tokens (no mask) with its "
                        "pooled CLIP-L. Only used when cfg != 1; for cfg 1 any negative works.",
            inputs=[
                io.String.Input("text", multiline=True, default="",
                                tooltip=f"Negative prompt ('' = the reference). {TEXT_BOUND_TIP}"),
                io.Float.Input("guidance", default=3.5, **GUIDANCE, step=0.1,
                               tooltip="FLUX embedded guidance, the same as the positive"),
                *TEXT_INPUTS,
            ],
            outputs=[io.Conditioning.Output(display_name="negative", tooltip="Negative conditioning")],
        )

    @classmethod
    def validate_inputs(cls, text, guidance):
        return checks.first(checks.text(text, "text"), checks.number(guidance, "guidance", GUIDANCE))

    @classmethod
    def execute(cls, text, guidance, text_encoders=None, clip=None) -> io.NodeOutput:
        checks.require(checks.first(checks.text(text, "text"), checks.number(guidance, "guidance", GUIDANCE)))
        ctx, pooled = negative(pick(text_encoders, clip, "Nexus-Gen Negative Conditioning"), text)
        dev = mm.intermediate_device()
        return io.NodeOutput([[ctx.to(dev, torch.float32), {"pooled_output": pooled.to(dev, torch.float32),
                                                             "guidance": guidance}]])


class NexusGenScheduler(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return schema(
            node_id="NexusGenScheduler", display_name="Nexus-Gen Scheduler", category=CATEGORY,
            search_aliases=["nexus", "sigmas", "scheduler", "shift"],
            description="The reference's sigmas (linspace(1, 0.003/1.002) with shift 3, then 0) for SamplerCustom; "
                        "with euler and cfg they reproduce `nexus-gen generate`.",
            inputs=[
                io.Int.Input("steps", default=50, min=1, max=1000, tooltip="Sampling steps (reference: 50)"),
                io.Float.Input("denoise", default=1.0, **DENOISE, step=0.01,
                               tooltip="Below 1 starts part-way down the schedule (img2img)"),
                io.Float.Input("shift", default=SHIFT, **SHIFT_RANGE, step=0.05,
                               tooltip="Flow shift (reference: 3)"),
            ],
            outputs=[io.Sigmas.Output(display_name="SIGMAS", tooltip="steps + 1 sigmas ending at 0")],
        )

    @classmethod
    def validate_inputs(cls, denoise, shift):
        return _schedule_checks(denoise, shift)

    @classmethod
    def execute(cls, steps, denoise, shift) -> io.NodeOutput:
        checks.require(_schedule_checks(denoise, shift))
        return io.NodeOutput(scheduler_sigmas(steps, denoise, shift))


def _schedule_checks(denoise, shift):
    return checks.first(checks.number(denoise, "denoise", DENOISE), checks.number(shift, "shift", SHIFT_RANGE))
