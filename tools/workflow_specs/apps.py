"""The text-to-image workflow as an app, and the subgraph blueprints."""
from __future__ import annotations

from .graphs import edit_graph, t2i_graph
from .links import AR, EDIT_DEC, GEN_DEC, TE_T5, VAE

# -- apps (frontend 1.41+: a workflow with extra.linearMode opens as an app, the graph hidden) -------------------------
APPS = {  # name: (the workflow it is made from, the widgets it shows, the outputs it shows)
    "nexus_gen_text_to_image_app": dict(
        workflow="nexus_gen_text_to_image",
        inputs=[("embeds", "prompt"), ("embeds", "language"), ("sampler", "noise_seed"), ("latent", "width"),
                ("latent", "height"), ("sched", "steps")],
        outputs=["save"]),
}


# -- subgraph blueprints (ComfyUI 0.8+: a pack's subgraphs/*.json are offered as single nodes) -------------------
# promoted: (node key, widget, subgraph input name, label)
BLUEPRINT_T2I_WIDGETS = [("embeds", "prompt", "prompt", None), ("sampler", "noise_seed", "seed", None),
                         ("latent", "width", "width", None), ("latent", "height", "height", None),
                         ("sched", "steps", "steps", None), ("sampler", "cfg", "cfg", None),
                         ("ar", "model", "model", "AR model"), ("ar", "weight_dtype", "ar_weight_dtype", "AR weight_dtype"),
                         ("ar", "device", "ar_device", "AR device"), ("dec", "decoder", "decoder", None),
                         ("dec", "weight_dtype", "dit_weight_dtype", "DiT weight_dtype"),
                         ("te", "clip_l", "clip_l", None), ("te", "t5xxl", "t5xxl", None),
                         ("vae", "vae_name", "vae_name", "vae")]
BLUEPRINT_EDIT_WIDGETS = [("embeds", "instruction", "instruction", None), ("sampler", "noise_seed", "seed", None),
                          ("latent", "width", "width", None), ("latent", "height", "height", None),
                          ("sched", "steps", "steps", None), ("sampler", "cfg", "cfg", None),
                          ("ar", "model", "model", "AR model"),
                          ("ar", "weight_dtype", "ar_weight_dtype", "AR weight_dtype"),
                          ("ar", "device", "ar_device", "AR device"), ("dec", "decoder", "decoder", None),
                          ("dec", "weight_dtype", "dit_weight_dtype", "DiT weight_dtype"),
                          ("te", "clip_l", "clip_l", None), ("vae", "vae_name", "vae_name", "vae")]


def _without(graph, *keys):
    return [n for n in graph if n[0] not in keys]


BLUEPRINTS_SPEC = {
    "Nexus-Gen Text to Image": dict(
        graph=_without(t2i_graph([AR, GEN_DEC, TE_T5, VAE]), "save", "reply"),
        layout={"Load models": [["ar"], ["te"], ["dec"], ["vae"]], "Prompt": [["embeds"], ["cond", "neg"]],
                "Sample": [["latent", "sched", "ksel"], ["sampler"]], "Decode": [["decode"]]},
        widgets=BLUEPRINT_T2I_WIDGETS, image_input=None, outputs=[("decode", 0, "IMAGE")],
        description="Nexus-Gen V2 text to image with the reference's settings: the AR model (Qwen2.5-VL) predicts "
                    "81 image embeddings from the prompt, the generation decoder's FLUX DiT paints them. Files: "
                    "Nexus-GenV2 in models/nexus_gen, clip_l/t5xxl in models/text_encoders, FLUX.1-dev ae in "
                    "models/vae.",
        aliases=["nexus", "nexus-gen", "text to image", "qwen", "flux"]),
    "Nexus-Gen Edit": dict(
        graph=_without(edit_graph(EDIT_DEC, "Add a pair of sunglasses.", "nexus_gen/edit"), "save", "img"),
        layout={"Load models": [["ar"], ["te"], ["dec"], ["vae"]], "Prompt": [["embeds"], ["cond", "neg"]],
                "Sample": [["latent", "sched", "ksel"], ["sampler"]], "Decode": [["decode"]]},
        widgets=BLUEPRINT_EDIT_WIDGETS, image_input=("embeds", "image"), outputs=[("decode", 0, "IMAGE")],
        description="Nexus-Gen V2 image editing: the AR model (Qwen2.5-VL) predicts the edited image's embeddings "
                    "from the image and the instruction, the editing decoder's FLUX DiT paints them with the "
                    "image's reference embeddings. Files: Nexus-GenV2 (with edit_decoder.bin) in models/nexus_gen, "
                    "clip_l in models/text_encoders, FLUX.1-dev ae in models/vae.",
        aliases=["nexus", "nexus-gen", "edit", "image edit", "qwen", "flux"]),
}
