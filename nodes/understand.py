"""Understanding: image? + question -> answer, streamed onto the node while it is written."""
from __future__ import annotations

from comfy_api.latest import io

from ..nexus_core.ar import understand
from ..nexus_core.images.tensors import one_image
from ..nexus_core.settings.bounds import TEXT_BOUND_TIP
from .inputs import checks
from .host.progress import send_text, token_callbacks
from .host.schema import schema
from .types import CATEGORY, NexusAR


class NexusGenUnderstand(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return schema(
            node_id="NexusGenUnderstand", display_name="Nexus-Gen Understand", category=CATEGORY,
            search_aliases=["nexus", "qwen", "understand", "vqa", "caption", "describe", "question"],
            description="Answers a question about an image (or a text-only question). The text appears on the node "
                        "while it is produced; connect the output to Preview Any to keep it.",
            inputs=[
                NexusAR.Input("nexus_ar", tooltip="From Nexus-Gen AR Model Loader"),
                io.String.Input("question", multiline=True, default="",
                                tooltip="Empty with an image = 'Please give a brief description of the image.' "
                                        f"{TEXT_BOUND_TIP}"),
                io.Image.Input("image", optional=True, tooltip="Optional image (first of a batch)"),
                io.Int.Input("max_new_tokens", default=1024, min=1, max=8192, tooltip="Answer budget in tokens"),
                io.Int.Input("seed", default=0, min=0, max=0xFFFFFFFFFFFFFFFF, control_after_generate=True,
                             tooltip="Only used if the model's generation config samples"),
            ],
            outputs=[io.String.Output(display_name="answer", tooltip="The model's answer")],
            hidden=[io.Hidden.unique_id],
        )

    @classmethod
    def validate_inputs(cls, question):
        return checks.text(question, "question")

    @classmethod
    def execute(cls, nexus_ar, question, max_new_tokens, seed, image=None) -> io.NodeOutput:
        checks.require(checks.text(question, "question"))
        node = cls.hidden.unique_id
        pil = None if image is None else one_image(image, "image")
        with nexus_ar.running() as ar:
            stream = lambda ids: send_text(ar.tokenizer.decode(ids, skip_special_tokens=True), node)  # noqa: E731
            on_token, stop = token_callbacks(max_new_tokens, node, stream)
            text = understand(ar, question, pil, max_new_tokens=max_new_tokens, seed=seed, on_token=on_token,
                              should_stop=stop)
        on_token.finish()
        send_text(text, node)
        return io.NodeOutput(text)
