"""Embedding nodes: prompt -> embeddings, image + instruction -> embeddings, image -> embeddings, blend."""
from __future__ import annotations

import torch

import comfy.model_management as mm
from comfy_api.latest import io

from ..nexus_core.ar import editing_request, encode_image, generation_request, predict, reference_embeddings
from ..nexus_core.embeddings.blend import blend
from ..nexus_core.embeddings.conditioning import split_prompts
from ..nexus_core.images.tensors import one_image, tensor_to_pils
from ..nexus_core.settings.bounds import MAX_BATCH_PROMPTS, TEXT_BOUND_TIP
from .inputs import checks
from .host.progress import finish, send_text, token_callbacks
from .host.schema import schema
from .types import CATEGORY, Embeds, NexusAR, NexusEmbeds

INSTRUCTION_EMPTY = "it is empty; say what to change in the image"
WEIGHT = dict(min=-1.0, max=2.0)  # the schema's bounds, checked again by validate_inputs (which takes them over)
MODE_TIP = ("reference = the model writes its reply and the 81 image slots are filled when it opens an image (the "
            "reference's results); fast = the training reply is given and the request is one forward pass")


def decode_inputs(budget_tip: str) -> list:
    """The inputs every embeddings-by-decoding node shares: mode, seed, reply budget."""
    return [
        io.Combo.Input("mode", options=["reference", "fast"], default="reference", tooltip=MODE_TIP),
        io.Int.Input("seed", default=0, min=0, max=0xFFFFFFFFFFFFFFFF, control_after_generate=True,
                     tooltip="Only used if the model's generation config samples"),
        io.Int.Input("max_new_tokens", default=1024, min=83, max=8192, tooltip=budget_tip),
    ]


def _out(t: torch.Tensor) -> torch.Tensor:
    return t.to(mm.intermediate_device())


def _decode_kwargs(mode: str, max_new_tokens: int, seed: int, node_id) -> dict:
    """Reference mode runs a token loop: give it a progress bar and the interrupt hook; fast mode is one forward."""
    if mode != "reference":
        return {}
    on_token, stop = token_callbacks(max_new_tokens, node_id)
    return dict(max_new_tokens=max_new_tokens, seed=seed, on_token=on_token, should_stop=stop)


class NexusGenPromptEmbeds(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return schema(
            node_id="NexusGenPromptEmbeds", display_name="Nexus-Gen Prompt → Embeddings", category=CATEGORY,
            search_aliases=["nexus", "qwen", "unified", "text to image", "prompt", "generate"],
            description="The AR model turns a prompt into the 81 image embeddings the generation decoder expects.",
            inputs=[
                NexusAR.Input("nexus_ar", tooltip="From Nexus-Gen AR Model Loader"),
                io.String.Input("prompt", multiline=True, default="",
                                tooltip=f"What to generate. {TEXT_BOUND_TIP}"),
                io.Combo.Input("language", options=["en", "zh", "auto"], default="en",
                               tooltip="Prompt template: English, Chinese, or chosen from the prompt's script"),
                io.Boolean.Input("one_per_line", default=False,
                                 tooltip="Each non-empty line is its own prompt (a batch of embeddings), at most "
                                         f"{MAX_BATCH_PROMPTS} lines"),
                *decode_inputs("Reply budget in reference mode (the 83-token image span always fits)"),
            ],
            outputs=[NexusEmbeds.Output(display_name="embeds", tooltip="(B, 81, D) image embeddings"),
                     io.String.Output(display_name="reply", tooltip="The model's reply, the image shown as <image>")],
            hidden=[io.Hidden.unique_id],
        )

    @classmethod
    def validate_inputs(cls, prompt, one_per_line):
        return checks.prompts(prompt, one_per_line)

    @classmethod
    def execute(cls, nexus_ar, prompt, language, one_per_line, mode, seed, max_new_tokens) -> io.NodeOutput:
        checks.require(checks.prompts(prompt, one_per_line))  # a prompt linked from another node arrives only now
        reqs = [generation_request(p, language) for p in split_prompts(prompt, one_per_line)]
        kw = _decode_kwargs(mode, max_new_tokens, seed, cls.hidden.unique_id)
        with nexus_ar.running() as ar:
            res = predict(ar, reqs, mode, **kw)
        finish(kw)
        reply = "\n".join(res.texts)
        send_text(reply, cls.hidden.unique_id)  # the model's reply shows on the node itself
        return io.NodeOutput(Embeds(_out(res.embeddings), None, res.texts, "prompt"), reply)


class NexusGenEditEmbeds(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return schema(
            node_id="NexusGenEditEmbeds", display_name="Nexus-Gen Image + Instruction → Embeddings",
            search_aliases=["nexus", "qwen", "unified", "edit", "instruction", "image edit"],
            category=CATEGORY,
            description="Editing: the AR model predicts the edited image's 81 embeddings from the image and the "
                        "instruction; the 324 reference embeddings of the image are attached for the editing decoder.",
            inputs=[
                NexusAR.Input("nexus_ar", tooltip="From Nexus-Gen AR Model Loader"),
                io.Image.Input("image", tooltip="The image to edit (first image of a batch)"),
                io.String.Input("instruction", multiline=True, default="",
                                tooltip="What to change; '<image>' marks where the image goes (optional). "
                                        f"{TEXT_BOUND_TIP}"),
                *decode_inputs("Reply budget in reference mode"),
            ],
            outputs=[NexusEmbeds.Output(display_name="embeds",
                                        tooltip="(1, 81, D) target embeddings + (1, 324, D) reference embeddings"),
                     io.String.Output(display_name="reply", tooltip="The model's reply")],
            hidden=[io.Hidden.unique_id],
        )

    @classmethod
    def validate_inputs(cls, instruction):
        return checks.text(instruction, "instruction", INSTRUCTION_EMPTY)

    @classmethod
    def execute(cls, nexus_ar, image, instruction, mode, seed, max_new_tokens) -> io.NodeOutput:
        checks.require(checks.text(instruction, "instruction", INSTRUCTION_EMPTY))
        pil = one_image(image, "image")
        with nexus_ar.running() as ar:
            res = predict(ar, [editing_request(ar, pil, instruction)], mode,
                          **(kw := _decode_kwargs(mode, max_new_tokens, seed, cls.hidden.unique_id)))
            finish(kw)
            ref = reference_embeddings(ar, pil).unsqueeze(0)
        send_text(res.texts[0], cls.hidden.unique_id)
        return io.NodeOutput(Embeds(_out(res.embeddings), _out(ref), res.texts, "edit"), res.texts[0])


class NexusGenImageEmbeds(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return schema(
            node_id="NexusGenImageEmbeds", display_name="Nexus-Gen Image → Embeddings", category=CATEGORY,
            search_aliases=["nexus", "qwen", "vit", "variation", "image embeddings"],
            description="ViT embeddings of an image in the decoders' space: 81 tokens feed the generation decoder "
                        "directly (image variation), or mix with prompt embeddings through Blend.",
            inputs=[
                NexusAR.Input("nexus_ar", tooltip="From Nexus-Gen AR Model Loader"),
                io.Image.Input("image", tooltip="One embedding set per image of the batch"),
                io.Combo.Input("tokens", options=["81", "324"], default="81",
                               tooltip="81 = 252x252 (decoder input), 324 = 504x504 (editing reference)"),
                io.Combo.Input("resize", options=["crop", "squash"], default="crop",
                               tooltip="crop = shortest side + centre crop (the decoder's training); squash = the "
                                       "reference's resize, aspect ignored"),
            ],
            outputs=[NexusEmbeds.Output(display_name="embeds", tooltip="(B, tokens, D) embeddings")],
        )

    @classmethod
    def execute(cls, nexus_ar, image, tokens, resize) -> io.NodeOutput:
        with nexus_ar.running() as ar:
            embs = [encode_image(ar, pil, int(tokens), resize) for pil in tensor_to_pils(image, "image")]
        target = torch.stack(embs)
        if int(tokens) == 324:  # reference-only set: usable as an editing reference
            return io.NodeOutput(Embeds(_out(target[:, :0]), _out(target), [], "image"))
        return io.NodeOutput(Embeds(_out(target), None, [], "image"))


class NexusGenEmbedsBlend(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return schema(
            node_id="NexusGenEmbedsBlend", display_name="Nexus-Gen Embeddings Blend", category=CATEGORY,
            search_aliases=["nexus", "blend", "mix", "slerp", "interpolate"],
            description="Mix two embedding sets (prompt with prompt, prompt with image): weight 0 = a, 1 = b.",
            inputs=[
                NexusEmbeds.Input("a", tooltip="First embeddings"),
                NexusEmbeds.Input("b", tooltip="Second embeddings (same token count)"),
                io.Float.Input("weight", default=0.5, **WEIGHT, step=0.01,
                               tooltip="0 = a, 1 = b; outside 0..1 extrapolates"),
                io.Combo.Input("method", options=["slerp", "lerp"], default="slerp",
                               tooltip="slerp turns each token's direction along the sphere and moves its norm "
                                       "linearly; lerp is plain linear"),
            ],
            outputs=[NexusEmbeds.Output(display_name="embeds", tooltip="Blended embeddings")],
        )

    @classmethod
    def validate_inputs(cls, weight):
        return checks.number(weight, "weight", WEIGHT)

    @classmethod
    def execute(cls, a, b, weight, method) -> io.NodeOutput:
        checks.require(checks.number(weight, "weight", WEIGHT))
        target = blend(a.target, b.target, weight, method)
        ref = a.reference if a.reference is not None else b.reference
        return io.NodeOutput(Embeds(target, ref, a.texts + b.texts, "blend"))
