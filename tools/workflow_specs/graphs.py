"""Each workflow's nodes, links and groups (and its note), by name."""
from __future__ import annotations

from .links import AR, EDIT_DEC, GEN_DEC, GGUF_FILE, IMG, LORA_FILE, REDUX_FILE, SIGLIP_FILE, TE, TE_T5, VAE
from .notes import DISTRIBUTED_HOWTO, GGUF_HOWTO, LORA_HOWTO, REDUX_HOWTO, VRAM, VRAM_AR, files_md, note

def sampler_custom(steps, cfg, seed, latent="latent", negative=("neg", 0), model=("dec", 0)):
    return [
        ("sched", "NexusGenScheduler", {"steps": steps, "denoise": 1.0, "shift": 3.0}, {}),
        ("ksel", "KSamplerSelect", {"sampler_name": "euler"}, {}),
        ("sampler", "SamplerCustom", {"add_noise": True, "noise_seed": seed, "cfg": cfg},
         {"model": model, "positive": ("cond", 0), "negative": negative, "sampler": ("ksel", 0),
          "sigmas": ("sched", 0), "latent_image": (latent, 0)}),
        ("decode", "VAEDecode", {}, {"samples": ("sampler", 0), "vae": ("vae", 0)}),
    ]


def t2i_graph(loaders, projector=("dec", 1), model=("dec", 0), prefix="nexus_gen/t2i"):
    """The reference's text to image: prompt embeddings, T5 negative, its sigmas, euler, cfg 3, seed 52."""
    return [
        *loaders,
        ("embeds", "NexusGenPromptEmbeds", {"prompt": "A red fox sitting in the snow at sunset.", "language": "en",
                                            "mode": "reference", "one_per_line": False, "seed": 0,
                                            "max_new_tokens": 1024}, {"nexus_ar": ("ar", 0)}),
        ("cond", "NexusGenConditioning", {"guidance": 3.5, "use_reference": True},
         {"embeds": ("embeds", 0), "projector": projector, "text_encoders": ("te", 0)}),
        ("neg", "NexusGenNegative", {"text": "", "guidance": 3.5}, {"text_encoders": ("te", 0)}),
        ("latent", "EmptySD3LatentImage", {"width": 512, "height": 512, "batch_size": 1}, {}),
        *sampler_custom(50, 3.0, 52, model=model),
        ("save", "SaveImage", {"filename_prefix": prefix}, {"images": ("decode", 0)}),
        ("reply", "PreviewAny", {}, {"source": ("embeds", 1)}),
    ]


def edit_graph(decoder, instruction, prefix, with_reply=False):
    return [
        AR, decoder, TE, VAE, IMG,
        ("embeds", "NexusGenEditEmbeds", {"instruction": instruction, "mode": "reference", "seed": 0,
                                          "max_new_tokens": 1024}, {"nexus_ar": ("ar", 0), "image": ("img", 0)}),
        ("cond", "NexusGenConditioning", {"guidance": 3.5, "use_reference": True},
         {"embeds": ("embeds", 0), "projector": ("dec", 1), "text_encoders": ("te", 0)}),
        ("neg", "ConditioningZeroOut", {}, {"conditioning": ("cond", 0)}),
        ("latent", "EmptySD3LatentImage", {"width": 512, "height": 512, "batch_size": 1}, {}),
        *sampler_custom(50, 1.0, 42),
        ("save", "SaveImage", {"filename_prefix": prefix}, {"images": ("decode", 0)}),
    ] + ([("reply", "PreviewAny", {}, {"source": ("embeds", 1)})] if with_reply else [])


# -- layout: groups hold columns of nodes; the loaders form a band above the graph, each above what it feeds ----
T2I_LAYOUT = {"Load models": [["ar"], ["te"], ["dec"], ["vae"]],
              "Prompt": [["embeds", "reply"], ["cond", "neg"]],
              "Sample": [["latent", "sched", "ksel"], ["sampler"]],
              "Decode": [["decode", "save"]]}
EDIT_LAYOUT = {"Load models": [["ar"], ["te"], ["dec"], ["vae"]],  # the output size beside the image: a lower graph
               "Prompt: image + instruction": [["img", "latent"], ["embeds", "reply"], ["cond", "neg"]],
               "Sample": [["sched", "ksel", "sampler"]],
               "Decode": [["decode", "save"]]}
GGUF_LAYOUT = {"Load models": [["ar"], ["te"], ["unet"], ["proj", "patch"], ["vae"]],
               "Prompt": [["embeds", "reply"], ["cond", "neg"]],
               "Sample": [["latent", "sched", "ksel"], ["sampler"]],
               "Decode": [["decode", "save"]]}


WORKFLOWS = {
    "nexus_gen_text_to_image": dict(
        graph=t2i_graph([AR, GEN_DEC, TE_T5, VAE]), layout=T2I_LAYOUT,
        note=note("Nexus-Gen: text to image",
                  "Text to image with the generation decoder and exactly the reference's settings (its sigmas, "
                  "euler, cfg 3 with a T5 negative, seed 52): the same latents as `nexus-gen generate`. The AR "
                  "model writes a short reply (shown below the prompt) and predicts 81 image embeddings; the "
                  "decoder's FLUX DiT paints them.",
                  files_md("generation_decoder.bin", t5=True))),
    "nexus_gen_text_to_image_gguf": dict(
        graph=t2i_graph([AR, ("unet", "UnetLoaderGGUF", {"unet_name": GGUF_FILE}, {}),
                         ("proj", "NexusGenProjectorLoader", {"decoder": GGUF_FILE}, {}),
                         ("patch", "NexusGenModelPatch", {}, {"model": ("unet", 0), "projector": ("proj", 0)}),
                         TE_T5, VAE], projector=("proj", 0), model=("patch", 0), prefix="nexus_gen/t2i_gguf"),
        layout=GGUF_LAYOUT,
        note=note("Nexus-Gen: text to image, GGUF DiT",
                  "The text-to-image workflow with the generation decoder's DiT quantized to GGUF Q8_0 (about "
                  "12.7 GB instead of 24): for 12 GB cards, where its last part streams. On 8 GB cards make Q4_0 "
                  "(6.7 GB: `--dtype Q4_0`) and pick that file in Unet Loader (GGUF) and Projector Loader.",
                  files_md(None, t5=True, gguf=True), extra=GGUF_HOWTO,
                  vram=VRAM.replace("DiT = Decoder Loader", "DiT = Unet Loader (GGUF)"))),
    "nexus_gen_edit": dict(
        graph=edit_graph(EDIT_DEC, "Add a pair of sunglasses.", "nexus_gen/edit", with_reply=True),
        layout=EDIT_LAYOUT,
        note=note("Nexus-Gen: image editing",
                  "Edits the loaded image by an instruction with the editing decoder: the AR model predicts the "
                  "edited image's 81 embeddings, the decoder also sees the image's 324 reference embeddings and "
                  "editing position ids; cfg 1 as in the reference. Load your own image, and set the output size "
                  "below it, in the Prompt group.",
                  files_md("edit_decoder.bin"))),
    "nexus_gen_edit_generation_decoder": dict(
        graph=edit_graph(GEN_DEC, "Turn it into a watercolor painting.", "nexus_gen/edit_gendec"),
        layout=EDIT_LAYOUT,
        note=note("Nexus-Gen: edit through the generation decoder",
                  "Editing through the generation decoder (the AR model's 81 embeddings only, no reference "
                  "embeddings): looser than the editing decoder, suited to large conceptual edits such as a change "
                  "of style.",
                  files_md("generation_decoder.bin"))),
    "nexus_gen_understanding": dict(
        graph=[AR, IMG,
               ("ask", "NexusGenUnderstand", {"question": "Please give a brief description of the image.",
                                              "max_new_tokens": 1024, "seed": 0},
                {"nexus_ar": ("ar", 0), "image": ("img", 0)}),
               ("show", "PreviewAny", {}, {"source": ("ask", 0)})],
        layout={"Load model": [["ar"]], "Image + question": [["img"], ["ask"]], "Answer": [["show"]]},
        note=note("Nexus-Gen: image understanding",
                  "Ask the AR model about an image; the answer streams onto the Understand node while it is "
                  "written and ends up in Preview Any. Leave the image out for a plain chat.",
                  files_md(None, vae=False), vram=VRAM_AR)),
    "nexus_gen_variation": dict(
        graph=[AR, GEN_DEC, TE, VAE, IMG,
               ("embeds", "NexusGenImageEmbeds", {"tokens": "81", "resize": "crop"},
                {"nexus_ar": ("ar", 0), "image": ("img", 0)}),
               ("cond", "NexusGenConditioning", {"guidance": 3.5, "use_reference": True},
                {"embeds": ("embeds", 0), "projector": ("dec", 1), "text_encoders": ("te", 0)}),
               ("neg", "ConditioningZeroOut", {}, {"conditioning": ("cond", 0)}),
               ("latent", "EmptySD3LatentImage", {"width": 512, "height": 512, "batch_size": 1}, {}),
               ("ksampler", "KSampler", {"seed": 7, "steps": 30, "cfg": 1.0, "sampler_name": "euler",
                                         "scheduler": "simple", "denoise": 1.0},
                {"model": ("dec", 0), "positive": ("cond", 0), "negative": ("neg", 0), "latent_image": ("latent", 0)}),
               ("decode", "VAEDecode", {}, {"samples": ("ksampler", 0), "vae": ("vae", 0)}),
               ("save", "SaveImage", {"filename_prefix": "nexus_gen/variation"}, {"images": ("decode", 0)})],
        layout={"Load models": [["ar"], ["te"], ["dec"], ["vae"]],
                "Prompt: image embeddings": [["img"], ["embeds", "cond", "neg"]],
                "Sample": [["latent", "ksampler"]], "Decode": [["decode", "save"]]},
        note=note("Nexus-Gen: image variation",
                  "Variations of an image: its ViT embeddings go straight into the generation decoder (its own "
                  "training task), sampled with the native KSampler. Change the seed for another variation.",
                  files_md("generation_decoder.bin"))),
    "nexus_gen_mix_prompt_image_upscale": dict(
        graph=[AR, GEN_DEC, TE, VAE, IMG,
               ("p", "NexusGenPromptEmbeds", {"prompt": "A castle on a hill at dawn.", "language": "en",
                                              "mode": "fast", "one_per_line": False, "seed": 0,
                                              "max_new_tokens": 1024}, {"nexus_ar": ("ar", 0)}),
               ("i", "NexusGenImageEmbeds", {"tokens": "81", "resize": "crop"},
                {"nexus_ar": ("ar", 0), "image": ("img", 0)}),
               ("mix", "NexusGenEmbedsBlend", {"weight": 0.35, "method": "slerp"}, {"a": ("p", 0), "b": ("i", 0)}),
               ("cond0", "NexusGenConditioning", {"guidance": 3.5, "use_reference": True},
                {"embeds": ("mix", 0), "projector": ("dec", 1), "text_encoders": ("te", 0)}),
               ("cond", "FluxGuidance", {"guidance": 4.0}, {"conditioning": ("cond0", 0)}),
               ("neg", "ConditioningZeroOut", {}, {"conditioning": ("cond", 0)}),
               ("latent", "EmptySD3LatentImage", {"width": 512, "height": 512, "batch_size": 1}, {}),
               ("ks1", "KSampler", {"seed": 11, "steps": 30, "cfg": 1.0, "sampler_name": "euler",
                                    "scheduler": "simple", "denoise": 1.0},
                {"model": ("dec", 0), "positive": ("cond", 0), "negative": ("neg", 0), "latent_image": ("latent", 0)}),
               ("up", "LatentUpscaleBy", {"upscale_method": "bislerp", "scale_by": 1.5}, {"samples": ("ks1", 0)}),
               ("ks2", "KSampler", {"seed": 12, "steps": 20, "cfg": 1.0, "sampler_name": "euler",
                                    "scheduler": "simple", "denoise": 0.45},
                {"model": ("dec", 0), "positive": ("cond", 0), "negative": ("neg", 0), "latent_image": ("up", 0)}),
               ("decode", "VAEDecode", {}, {"samples": ("ks2", 0), "vae": ("vae", 0)}),
               ("save", "SaveImage", {"filename_prefix": "nexus_gen/mix"}, {"images": ("decode", 0)})],
        layout={"Load models": [["ar"], ["te"], ["dec"], ["vae"]],
                "Prompt: text + image blend": [["p", "img"], ["i", "mix", "cond0", "cond"]],
                "Sample, upscale, sample again": [["latent", "ks1", "neg"], ["up", "ks2"]],  # neg: a lower graph
                "Decode": [["decode", "save"]]},
        note=note("Nexus-Gen: prompt + image mix, upscale",
                  "What the reference cannot do: blend a prompt's embeddings with an image's (slerp, weight = "
                  "share of the image), sample with the native KSampler and FluxGuidance, then upscale the latent "
                  "1.5x and sample it again at denoise 0.45.",
                  files_md("generation_decoder.bin"))),
}



def lora_hires_graph(prompt: str):
    """A FLUX LoRA on the Nexus-Gen MODEL (ComfyUI's own loader), a fast first pass, a 1.5x latent upscale and a
    second pass at denoise 0.45, both with the LoRA's 8-step schedule."""
    return [
        AR, GEN_DEC, TE, VAE,
        ("lora", "LoraLoaderModelOnly", {"lora_name": LORA_FILE, "strength_model": 1.0}, {"model": ("dec", 0)}),
        ("embeds", "NexusGenPromptEmbeds", {"prompt": prompt, "language": "en", "mode": "reference",
                                            "one_per_line": False, "seed": 0, "max_new_tokens": 1024},
         {"nexus_ar": ("ar", 0)}),
        ("cond", "NexusGenConditioning", {"guidance": 3.5, "use_reference": True},
         {"embeds": ("embeds", 0), "projector": ("dec", 1), "text_encoders": ("te", 0)}),
        ("neg", "ConditioningZeroOut", {}, {"conditioning": ("cond", 0)}),
        ("latent", "EmptySD3LatentImage", {"width": 512, "height": 512, "batch_size": 1}, {}),
        ("ks1", "KSampler", {"seed": 21, "steps": 8, "cfg": 1.0, "sampler_name": "euler", "scheduler": "simple",
                             "denoise": 1.0},
         {"model": ("lora", 0), "positive": ("cond", 0), "negative": ("neg", 0), "latent_image": ("latent", 0)}),
        ("up", "LatentUpscaleBy", {"upscale_method": "bislerp", "scale_by": 1.5}, {"samples": ("ks1", 0)}),
        ("ks2", "KSampler", {"seed": 22, "steps": 8, "cfg": 1.0, "sampler_name": "euler", "scheduler": "simple",
                             "denoise": 0.45},
         {"model": ("lora", 0), "positive": ("cond", 0), "negative": ("neg", 0), "latent_image": ("up", 0)}),
        ("decode", "VAEDecode", {}, {"samples": ("ks2", 0), "vae": ("vae", 0)}),
        ("save", "SaveImage", {"filename_prefix": "nexus_gen/lora_hires"}, {"images": ("decode", 0)}),
    ]


def redux_graph(prompt: str):
    """A prompt's Nexus-Gen conditioning with an image's style appended by FLUX Redux (StyleModelApply)."""
    return [
        AR, GEN_DEC, TE, VAE, IMG,
        ("vision", "CLIPVisionLoader", {"clip_name": SIGLIP_FILE}, {}),
        ("see", "CLIPVisionEncode", {"crop": "center"}, {"clip_vision": ("vision", 0), "image": ("img", 0)}),
        ("redux", "StyleModelLoader", {"style_model_name": REDUX_FILE}, {}),
        ("embeds", "NexusGenPromptEmbeds", {"prompt": prompt, "language": "en", "mode": "reference",
                                            "one_per_line": False, "seed": 0, "max_new_tokens": 1024},
         {"nexus_ar": ("ar", 0)}),
        ("cond0", "NexusGenConditioning", {"guidance": 3.5, "use_reference": True},
         {"embeds": ("embeds", 0), "projector": ("dec", 1), "text_encoders": ("te", 0)}),
        ("cond", "StyleModelApply", {"strength": 0.5, "strength_type": "attn_bias"},
         {"conditioning": ("cond0", 0), "style_model": ("redux", 0), "clip_vision_output": ("see", 0)}),
        ("neg", "ConditioningZeroOut", {}, {"conditioning": ("cond0", 0)}),
        ("latent", "EmptySD3LatentImage", {"width": 512, "height": 512, "batch_size": 1}, {}),
        *sampler_custom(50, 1.0, 52),
        ("save", "SaveImage", {"filename_prefix": "nexus_gen/redux"}, {"images": ("decode", 0)}),
    ]


WORKFLOWS.update({
    "nexus_gen_lora_hires": dict(
        graph=lora_hires_graph("A lighthouse on a rocky coast, stormy sea."),
        layout={"Load models": [["ar"], ["te"], ["dec", "lora"], ["vae"]],
                "Prompt": [["embeds"], ["cond", "neg"]],
                "Sample, upscale, sample again": [["latent", "ks1"], ["up", "ks2"]],
                "Decode": [["decode", "save"]]},
        note=note("Nexus-Gen + a FLUX LoRA, hi-res pass",
                  "A FLUX.1-dev LoRA on the generation decoder through ComfyUI's own Load LoRA node, then a "
                  "second pass: the latent upscaled 1.5x and sampled again at denoise 0.45. The LoRA node sits "
                  "between the Decoder Loader and both KSamplers; the projector output goes to the conditioning "
                  "as usual.",
                  files_md("generation_decoder.bin"), extra=LORA_HOWTO)),
    "nexus_gen_redux": dict(
        graph=redux_graph("A cottage by a lake in autumn."),
        layout={"Load models": [["ar"], ["te"], ["dec"], ["vae"], ["vision", "redux"]],
                "Prompt: text + style image (Redux)": [["embeds", "cond0", "see"], ["img", "cond", "neg"]],
                "Sample": [["latent", "sched", "ksel"], ["sampler"]],
                "Decode": [["decode", "save"]]},
        note=note("Nexus-Gen + Redux: an image's style on a prompt",
                  "FLUX Redux turns the loaded image into 729 style tokens (SigLIP, then Redux's projection) and "
                  "Apply Style Model appends them to the prompt's Nexus-Gen conditioning. strength_type attn_bias "
                  "with strength 0.5 keeps the prompt in charge; raise it toward 1 for more of the image, or use "
                  "multiply for the full Redux effect.",
                  files_md("generation_decoder.bin"), extra=REDUX_HOWTO)),
})


def distributed_graph():
    """The text-to-image graph spread over ComfyUI-Distributed's workers: Distributed Seed feeds both the AR's seed
    and the noise seed (the master keeps it, the k-th worker adds k), and Distributed Collector gathers every
    process's image after VAE Decode, so that the master saves them all."""
    graph = []
    for key, cls, widgets, inputs in t2i_graph([AR, GEN_DEC, TE_T5, VAE], prefix="nexus_gen/distributed"):
        if key == "embeds":
            graph.append(("dseed", "DistributedSeed", {"seed": 52}, {}))
            inputs = {**inputs, "seed": ("dseed", 0)}
        elif key == "sampler":
            inputs = {**inputs, "noise_seed": ("dseed", 0)}
        elif key == "save":
            graph.append(("collect", "DistributedCollector", {"load_balance": False}, {"images": ("decode", 0)}))
            inputs = {"images": ("collect", 0)}
        graph.append((key, cls, widgets, inputs))
    return graph


WORKFLOWS.update({
    "nexus_gen_distributed": dict(
        graph=distributed_graph(),
        layout={"Load models": [["ar"], ["te"], ["dec"], ["vae"]],
                "Prompt, seed per worker": [["dseed", "embeds", "reply"], ["cond", "neg"]],
                "Sample": [["latent", "sched", "ksel"], ["sampler"]],
                "Decode, collect": [["decode", "collect", "save"]]},
        note=note("Nexus-Gen on several GPUs (ComfyUI-Distributed)",
                  "The text-to-image workflow run on the master and on every worker of "
                  "[ComfyUI-Distributed](https://github.com/robertvoy/ComfyUI-Distributed) at once, each with its "
                  "own seed: one image per process per run, all saved by the master. Distributed Seed feeds both "
                  "the AR's seed and the noise seed: the master uses the seed as set, worker 1 the seed + 1, "
                  "worker 2 the seed + 2, and so on, so each image is exactly the one a single ComfyUI makes with "
                  "that seed. Distributed Collector gathers the images after VAE Decode. Run it as usual: with "
                  "workers ticked in the Distributed panel the engine sends it to them too (scripts post it to "
                  "the engine's `POST /distributed/queue`); with none it runs here alone.",
                  files_md("generation_decoder.bin", t5=True),
                  extra=DISTRIBUTED_HOWTO)),
})
