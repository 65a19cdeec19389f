"""Writes the example workflows in workflows/ (UI format) and the subgraph blueprints in subgraphs/ from compact
specs, with /object_info from a running ComfyUI that has this pack (and ComfyUI-GGUF) loaded:

    python tools/tiny_comfy.py --port 8291 &          # or any ComfyUI with both packs
    python tools/build_workflows.py --server http://127.0.0.1:8291

Each workflow gets a Markdown note (what it does, which file goes where, which VRAM preset), groups
(load / prompt / sample / decode), the frontend's model metadata on the loaders of single-file models (so the
missing-models dialog offers the download), and a saved view at a zoom where the frontend draws text (see
VIEW_SCALE): fitted, the larger graphs opened at 0.48 in a 1366x768 window, as grey boxes. Each also gets a Chinese
copy (<name>_zh.json), and workflows/apps/ the text-to-image workflow as an app. The same-stem .jpg thumbnails are
screenshots of the real frontend taken by tools/screenshot_workflows.js, which also checks the layout (missing
nodes, overlaps, groups, initial view).
"""
from __future__ import annotations

import argparse
import json
import re
import sys
import urllib.request
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "comfyui"))
from workflow_format import extra_values, input_specs, is_widget  # noqa: E402

OUT = ROOT / "workflows"
BLUEPRINTS = ROOT / "subgraphs"
PACK_ID = "comfyui-nexus-gen"
PACK_VER = re.search(r'^version = "([^"]+)"', (ROOT / "pyproject.toml").read_text(), re.M).group(1)
GGUF_PROPS = {"cnr_id": "comfyui-gguf", "aux_id": "city96/ComfyUI-GGUF"}  # the Registry id (its pyproject name)

HF_NEXUS = "https://huggingface.co/modelscope/Nexus-GenV2"
HF_TE = "https://huggingface.co/comfyanonymous/flux_text_encoders"
HF_FLUX = "https://huggingface.co/black-forest-labs/FLUX.1-dev"
MODEL_URLS = {  # what the frontend's missing-models dialog offers: {name, url, directory} (hashes are optional)
    "ae.safetensors": (HF_FLUX + "/resolve/main/ae.safetensors", "vae"),
    "clip_l.safetensors": (HF_TE + "/resolve/main/clip_l.safetensors", "text_encoders"),
    "t5xxl_fp16.safetensors": (HF_TE + "/resolve/main/t5xxl_fp16.safetensors", "text_encoders"),
}
# The mixing workflows' FLUX add-ons: an example LoRA (diffusers layout, for FLUX.1-dev), Redux and its vision tower
LORA_FILE = "FLUX.1-Turbo-Alpha.safetensors"
REDUX_FILE = "flux1-redux-dev.safetensors"
SIGLIP_FILE = "sigclip_vision_patch14_384.safetensors"
HF_TURBO = "https://huggingface.co/alimama-creative/FLUX.1-Turbo-Alpha"
HF_REDUX = "https://huggingface.co/black-forest-labs/FLUX.1-Redux-dev"
HF_SIGLIP = "https://huggingface.co/Comfy-Org/sigclip_vision_384"
MODEL_URLS.update({
    LORA_FILE: (HF_TURBO + "/resolve/main/diffusion_pytorch_model.safetensors", "loras"),
    REDUX_FILE: (HF_REDUX + "/resolve/main/flux1-redux-dev.safetensors", "style_models"),
    SIGLIP_FILE: (HF_SIGLIP + "/resolve/main/sigclip_vision_patch14_384.safetensors", "clip_vision"),
})

AR = ("ar", "NexusGenARLoader", {"model": "Nexus-GenV2", "dtype": "auto"}, {})
GEN_DEC = ("dec", "NexusGenDecoderLoader", {"decoder": "Nexus-GenV2/generation_decoder.bin", "weight_dtype": "default"}, {})
EDIT_DEC = ("dec", "NexusGenDecoderLoader", {"decoder": "Nexus-GenV2/edit_decoder.bin", "weight_dtype": "default"}, {})
TE = ("te", "NexusGenTextEncoderLoader", {"clip_l": "clip_l.safetensors", "t5xxl": "none"}, {})
TE_T5 = ("te", "NexusGenTextEncoderLoader", {"clip_l": "clip_l.safetensors", "t5xxl": "t5xxl_fp16.safetensors"}, {})
VAE = ("vae", "VAELoader", {"vae_name": "ae.safetensors"}, {})
IMG = ("img", "LoadImage", {"image": "example.png"}, {})
GGUF_FILE = "nexus_gen_generation_decoder-Q8_0.gguf"


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

VRAM = ("**VRAM preset** (AR = AR Model Loader, DiT = Decoder Loader):\n"
        "- 8 GB: AR `weight_dtype` fp8_e4m3fn (ComfyUI streams what does not fit; or `device` cpu, about 9 GB of "
        "RAM); DiT GGUF Q4_0 (see the GGUF workflow; `nexus-gen convert` makes it, for either decoder)\n"
        "- 12 GB: AR fp8_e4m3fn; DiT fp8_e4m3fn (its last part streams) or GGUF Q4_0\n"
        "- 16 GB: AR fp8_e4m3fn; DiT fp8_e4m3fn\n"
        "- 24 GB: AR default (bf16); DiT fp8_e4m3fn\n"
        "- 48 GB or more: everything default (bf16)\n\n"
        "Details, and the RAM each needs (measured): the README's *VRAM presets* and *Resources*.")
VRAM_AR = ("**VRAM preset**: the AR model alone needs about 17 GB in bf16. Below that, set the AR Model Loader's "
           "`weight_dtype` to fp8_e4m3fn (about 9 GB); on 8 GB cards ComfyUI streams the rest (or set `device` cpu). "
           "Details: the README's "
           "*VRAM presets* table.")


FILES_TEXT = {  # the note's file list, per language: {name} fields are filled in by files_md
    "en": dict(head="**Files** (then press R in ComfyUI to refresh the lists):",
               ar="- [Nexus-GenV2]({hf}): the whole folder (config, 4 model shards, tokenizer files) into "
                  "`models/nexus_gen/Nexus-GenV2/`",
               decoder=", with `{decoder}` inside it",
               gguf="- `{gguf}` into `models/diffusion_models/`, made from generation_decoder.bin (below)",
               t5=" and t5xxl_fp16.safetensors (for the negative prompt)",
               te="- [{te}]({hf}) into `models/text_encoders/`",
               vae="- ae.safetensors of [FLUX.1-dev]({hf}) (accept its licence first) into `models/vae/`"),
    "zh": dict(head="**文件**（放好后在 ComfyUI 中按 R 刷新列表）：",
               ar="- [Nexus-GenV2]({hf})：整个文件夹（config、4 个模型分片、分词器文件）放到 "
                  "`models/nexus_gen/Nexus-GenV2/`",
               decoder="，`{decoder}` 也放在其中",
               gguf="- `{gguf}` 放到 `models/diffusion_models/`，由 generation_decoder.bin 生成（见下）",
               t5=" 和 t5xxl_fp16.safetensors（用于负面提示词）",
               te="- [{te}]({hf}) 放到 `models/text_encoders/`",
               vae="- [FLUX.1-dev]({hf}) 的 ae.safetensors（需先接受其许可）放到 `models/vae/`"),
}


def files_md(decoder: str | None, t5: bool = False, vae: bool = True, gguf: bool = False, lang: str = "en") -> str:
    text = FILES_TEXT[lang]
    lines = [text["head"], text["ar"].format(hf=HF_NEXUS)]
    if decoder:
        lines[-1] += text["decoder"].format(decoder=decoder)
    if gguf:
        lines.append(text["gguf"].format(gguf=GGUF_FILE))
    if decoder or gguf:
        lines.append(text["te"].format(te="clip_l.safetensors" + (text["t5"] if t5 else ""), hf=HF_TE))
    if vae:
        lines.append(text["vae"].format(hf=HF_FLUX))
    return "\n".join(lines)


def note(title: str, what: str, files: str, vram: str = VRAM, extra: str = "") -> str:
    return "\n\n".join(p for p in (f"## {title}", what, files, extra, vram) if p)


GGUF_HOWTO = ("**GGUF**: install [ComfyUI-GGUF](https://github.com/city96/ComfyUI-GGUF) (ComfyUI-Manager: "
              "\"ComfyUI-GGUF\"), then make the file once:\n"
              "```\nnexus-gen convert generation_decoder.bin --layout gguf --dtype Q8_0 "
              f"--out models/diffusion_models/{GGUF_FILE}\n```\n"
              "Unet Loader (GGUF) loads the quantized DiT; Projector Loader reads the adapter from the same file; "
              "Model Patch gives the DiT Nexus-Gen's flow shift.")

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


LORA_HOWTO = ("**The LoRA**: the example is FLUX.1-Turbo-Alpha (diffusers layout, made for 8 steps): put its "
              f"[diffusion_pytorch_model.safetensors]({HF_TURBO}) into `models/loras/` as `{LORA_FILE}`. "
              "Any FLUX.1-dev LoRA works the same way in the ComfyUI/BFL, kohya or diffusers layout; with a LoRA for the usual 20-50 "
              "steps, raise both KSamplers' steps. An XLabs LoRA (keys `double_blocks.N.processor...`) is skipped by "
              "ComfyUI's loaders, which the LoRA node then says: convert it once with "
              "`nexus-gen convert-lora FILE --out models/loras/NEW.safetensors`. The decoders are fine-tuned "
              "FLUX.1-dev DiTs, so a LoRA's effect can be weaker or different than on FLUX.1-dev itself.")
REDUX_HOWTO = ("**Redux files**: [flux1-redux-dev.safetensors]({redux}) (accept its licence first) into "
               "`models/style_models/`, and [sigclip_vision_patch14_384.safetensors]({siglip}) into "
               "`models/clip_vision/`.").format(redux=HF_REDUX, siglip=HF_SIGLIP)
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

# -- Chinese copies (<name>_zh.json): the same graphs with Chinese notes, group titles and prompts ----------------
# Nexus-Gen is trained on Chinese and English prompts; the frontend translates our node names itself
# (locales/zh/nodeDefs.json), the notes, titles and prompt texts are the workflow's own.
VRAM_ZH = ("**显存预设**（AR = AR 模型加载器，DiT = 解码器加载器）：\n"
           "- 8 GB：AR 的 `weight_dtype` 设为 fp8_e4m3fn（放不下的部分由 ComfyUI 流式传输；或 `device` 设为 cpu，"
           "约需 9 GB 内存）；DiT 用 GGUF Q4_0（见 GGUF 工作流；由 `nexus-gen convert` 生成，两种解码器都可以）\n"
           "- 12 GB：AR fp8_e4m3fn；DiT fp8_e4m3fn（最后一部分流式传输）或 GGUF Q4_0\n"
           "- 16 GB：AR fp8_e4m3fn；DiT fp8_e4m3fn\n"
           "- 24 GB：AR 默认（bf16）；DiT fp8_e4m3fn\n"
           "- 48 GB 及以上：全部默认（bf16）\n\n"
           "详情及各档所需内存（实测）：见 README 的 *VRAM presets* 和 *Resources* 两节。")
VRAM_AR_ZH = ("**显存预设**：AR 模型单独在 bf16 下约需 17 GB。显存不够时，把 AR 模型加载器的 `weight_dtype` 设为 "
              "fp8_e4m3fn（约 9 GB）；8 GB 显卡上其余部分由 ComfyUI 流式传输（或把 `device` 设为 cpu）。"
              "详情：README 的 *VRAM presets* 表。")
GGUF_HOWTO_ZH = ("**GGUF**：先安装 [ComfyUI-GGUF](https://github.com/city96/ComfyUI-GGUF)（ComfyUI-Manager 中搜索 "
                 "\"ComfyUI-GGUF\"），再生成一次文件：\n"
                 "```\nnexus-gen convert generation_decoder.bin --layout gguf --dtype Q8_0 "
                 f"--out models/diffusion_models/{GGUF_FILE}\n```\n"
                 "Unet Loader (GGUF) 加载量化后的 DiT；投影器加载器从同一个文件读取适配器；模型补丁为 DiT 加上 "
                 "Nexus-Gen 的流偏移。")
GROUPS_ZH = {"Load models": "加载模型", "Load model": "加载模型", "Prompt": "提示词",
             "Prompt: image + instruction": "提示：图像 + 指令", "Image + question": "图像 + 问题", "Answer": "回答",
             "Prompt: image embeddings": "提示：图像嵌入", "Prompt: text + image blend": "提示：文本与图像混合",
             "Sample": "采样", "Sample, upscale, sample again": "采样、放大、再采样", "Decode": "解码",
             "Prompt: text + style image (Redux)": "提示：文本 + 风格图像（Redux）"}
TEXTS_ZH = {  # widget values people read and change: prompts, instructions, questions
    "A red fox sitting in the snow at sunset.": "夕阳下，一只红狐狸坐在雪地里。",
    "Add a pair of sunglasses.": "给人物戴上一副墨镜。",
    "Turn it into a watercolor painting.": "把它变成一幅水彩画。",
    "Please give a brief description of the image.": "请简要描述这张图片。",
    "A castle on a hill at dawn.": "黎明时分，山丘上的一座城堡。",
    "A lighthouse on a rocky coast, stormy sea.": "暴风雨中的大海，岩石海岸上的一座灯塔。",
    "A cottage by a lake in autumn.": "秋天湖边的一座小屋。",
}


NOTES_ZH = {
    "nexus_gen_text_to_image": note(
        "Nexus-Gen：文生图",
        "用生成解码器、完全按参考实现的设置（其 sigma 序列、euler、cfg 3 加 T5 负面条件、种子 52）文生图：与 "
        "`nexus-gen generate` 得到相同的潜变量。AR 模型先写一段简短回复（显示在提示词下方）并预测 81 个图像嵌入，"
        "再由解码器的 FLUX DiT 画出图像。提示词用中文或英文均可（language 设为 zh、en 或 auto）。",
        files_md("generation_decoder.bin", t5=True, lang="zh"), vram=VRAM_ZH),
    "nexus_gen_text_to_image_gguf": note(
        "Nexus-Gen：文生图，GGUF DiT",
        "文生图工作流，生成解码器的 DiT 量化为 GGUF Q8_0（约 12.7 GB，而不是 24 GB）：适合 12 GB 显卡，最后一部分流式"
        "传输。8 GB 显卡请生成 Q4_0（6.7 GB：`--dtype Q4_0`），并在 Unet Loader (GGUF) 和投影器加载器中选择该文件。",
        files_md(None, t5=True, gguf=True, lang="zh"), vram=VRAM_ZH.replace("DiT = 解码器加载器", "DiT = Unet Loader (GGUF)"),
        extra=GGUF_HOWTO_ZH),
    "nexus_gen_edit": note(
        "Nexus-Gen：图像编辑",
        "用编辑解码器按指令编辑加载的图像：AR 模型预测编辑后图像的 81 个嵌入，解码器同时看到原图的 324 个参考嵌入"
        "和编辑用的位置编号；cfg 为 1，与参考实现一致。在“提示”分组中加载你自己的图像，并在其下方设置输出尺寸。",
        files_md("edit_decoder.bin", lang="zh"), vram=VRAM_ZH),
    "nexus_gen_edit_generation_decoder": note(
        "Nexus-Gen：用生成解码器编辑",
        "通过生成解码器编辑（只用 AR 模型的 81 个嵌入，没有参考嵌入）：比编辑解码器更自由，适合风格转换这类"
        "大幅度的概念性修改。",
        files_md("generation_decoder.bin", lang="zh"), vram=VRAM_ZH),
    "nexus_gen_understanding": note(
        "Nexus-Gen：图像理解",
        "向 AR 模型提问关于图像的问题；回答在生成过程中实时显示在“图像理解”节点上，最后保存在 Preview Any 中。"
        "不接图像即为纯文本对话。",
        files_md(None, vae=False, lang="zh"), vram=VRAM_AR_ZH),
    "nexus_gen_variation": note(
        "Nexus-Gen：图像变体",
        "生成图像的变体：图像的 ViT 嵌入直接送入生成解码器（这正是它的训练任务），用原生 KSampler 采样。"
        "换一个种子即得到另一个变体。",
        files_md("generation_decoder.bin", lang="zh"), vram=VRAM_ZH),
    "nexus_gen_mix_prompt_image_upscale": note(
        "Nexus-Gen：提示词 + 图像混合，放大",
        "参考实现做不到的玩法：把提示词的嵌入与图像的嵌入混合（slerp，权重 = 图像所占比例），用原生 KSampler 和 "
        "FluxGuidance 采样，再把潜变量放大 1.5 倍、以 denoise 0.45 再采样一次。",
        files_md("generation_decoder.bin", lang="zh"), vram=VRAM_ZH),
}


LORA_HOWTO_ZH = ("**LoRA**：示例为 FLUX.1-Turbo-Alpha（diffusers 格式，为 8 步设计）：把它的 "
                 f"[diffusion_pytorch_model.safetensors]({HF_TURBO}) 放到 `models/loras/`，命名为 `{LORA_FILE}`。"
                 "任何 ComfyUI/BFL、kohya 或 diffusers 格式的 FLUX.1-dev LoRA 用法相同；若 LoRA 适用于常见的 20-50 步，"
                 "请调高两个 KSampler 的步数。XLabs 格式的 LoRA（键名为 `double_blocks.N.processor...`）会被 ComfyUI "
                 "的加载器整个跳过，LoRA 节点上会提示：先用 "
                 "`nexus-gen convert-lora 文件 --out models/loras/新文件.safetensors` 转换一次。两个解码器是微调过的 FLUX.1-dev DiT，LoRA 的效果可能比在 FLUX.1-dev 上弱或不同。")
REDUX_HOWTO_ZH = ("**Redux 文件**：[flux1-redux-dev.safetensors]({redux})（需先接受其许可）放到 `models/style_models/`，"
                  "[sigclip_vision_patch14_384.safetensors]({siglip}) 放到 `models/clip_vision/`。"
                  ).format(redux=HF_REDUX, siglip=HF_SIGLIP)
NOTES_ZH.update({
    "nexus_gen_lora_hires": note(
        "Nexus-Gen + FLUX LoRA，高清二次采样",
        "通过 ComfyUI 自带的 LoRA 加载节点把 FLUX.1-dev LoRA 加到生成解码器上，再做第二遍：潜变量放大 1.5 倍，"
        "以 denoise 0.45 再采样一次。LoRA 节点位于解码器加载器和两个 KSampler 之间；投影器输出照常接到条件节点。",
        files_md("generation_decoder.bin", lang="zh"), vram=VRAM_ZH, extra=LORA_HOWTO_ZH),
    "nexus_gen_redux": note(
        "Nexus-Gen + Redux：把图像的风格加到提示词上",
        "FLUX Redux 把加载的图像变成 729 个风格 token（先经 SigLIP，再经 Redux 的投影），“应用风格模型”把它们追加到"
        "提示词的 Nexus-Gen 条件之后。strength_type 为 attn_bias、强度 0.5 时以提示词为主；想要更多图像风格就把强度"
        "调向 1，或改用 multiply 得到完整的 Redux 效果。",
        files_md("generation_decoder.bin", lang="zh"), vram=VRAM_ZH, extra=REDUX_HOWTO_ZH),
})


def chinese(wf: dict, name: str) -> dict:
    """The Chinese copy of a workflow spec: the same nodes and links."""
    graph = []
    for key, cls, widgets, inputs in wf["graph"]:
        widgets = {k: TEXTS_ZH.get(v, v) if isinstance(v, str) else v for k, v in widgets.items()}
        if cls == "NexusGenPromptEmbeds":
            widgets["language"] = "zh"
        graph.append((key, cls, widgets, inputs))
    return dict(graph=graph, layout={GROUPS_ZH[t]: cols for t, cols in wf["layout"].items()}, note=NOTES_ZH[name])


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

# -- geometry ---------------------------------------------------------------------------------------------------
TITLE = 30          # a node's title bar, drawn above its pos
GROUP_TITLE = 44    # a group's title bar (font 24)
PAD = 16            # inside a group, around its nodes
GAP_Y = 26          # between stacked nodes (plus the title bar)
GAP_X = 24          # between columns
GAP_GROUP = 18      # between groups (at 30 the edit graph was 31 units too wide for 1.27's canvas at 1366x768)
NOTE_W = 400
# Below a zoom of about 0.57 (1.58: 8 px of its 14 px node font; older frontends: 0.6) the frontend draws nodes
# without text. Fitted to a 1366x768 window a graph of 2100 x 1000 opens at 0.48, so each workflow saves its view:
# VIEW_SCALE, its top-left corner at VIEW_AT (canvas pixels; the canvas fills the window under the side bar, the tabs
# and 1.5x's floating toolbar, so that is right of the bar and below the toolbar).
# A graph stays within about 2150 x 1050 to fit that window at that zoom.
VIEW_SCALE = 0.6
VIEW_AT = (64, 96)
WIDTHS = {"NexusGenPromptEmbeds": 360, "NexusGenEditEmbeds": 360, "NexusGenNegative": 290, "NexusGenUnderstand": 360,
          "LoadImage": 300, "SaveImage": 300, "PreviewAny": 300}
HEIGHTS = {"LoadImage": 340, "SaveImage": 330, "NexusGenPromptEmbeds": 280, "NexusGenEditEmbeds": 250,
           "NexusGenUnderstand": 250, "NexusGenNegative": 150, "PreviewAny": 160}
GROUP_COLORS = ["#3f789e", "#b58b2a", "#8a8a3a", "#a1309b", "#3f9e78"]


def node_size(cls: str, info: dict) -> list[int]:
    """The frontend's own size for a node (slot rows of 20, widgets of 24; measured in 1.27-1.58), a bit more."""
    if cls in HEIGHTS:
        return [WIDTHS.get(cls, 270), HEIGHTS[cls]]
    specs = input_specs(info)
    widgets = sum(1 + extra_values(sp) for _n, sp in specs if is_widget(sp))
    sockets = sum(1 for _n, sp in specs if not is_widget(sp))
    return [WIDTHS.get(cls, 270), 20 + 20 * max(sockets, len(info["output"]), 1) + 24 * widgets]


def layout(spec: list, groups: dict, sizes: dict, x0: float) -> tuple[dict, list]:
    """Positions: the first group (the loaders) is a band on top, from x=0, each loader up and left of the first
    node it feeds, so that wires run down and right; the other groups sit side by side below it, from x0.
    Returns ({key: [x, y]}, [(title, [x, y, w, h])])."""
    groups = {t: [c for c in ([k for k in col if k in sizes] for col in cols) if c] for t, cols in groups.items()}
    titles = list(groups)
    consumers = {}
    for key, _cls, _w, inputs in spec:
        for src, _slot in inputs.values():
            consumers.setdefault(src, []).append(key)
    pos, boxes = {}, []
    band_y = GROUP_TITLE + TITLE + PAD
    x = x0
    for title in titles[1:]:  # the lower row, placed at y=0 for now
        gx = x
        x += PAD
        for col in groups[title]:
            y = band_y
            for key in col:
                pos[key] = [x, y]
                y += sizes[key][1] + TITLE + GAP_Y
            x += max(sizes[k][0] for k in col) + GAP_X
        x += PAD - GAP_X
        boxes.append([title, gx, x])
        x += GAP_GROUP
    x, top = PAD, {}
    for col in groups[titles[0]]:
        width = max(sizes[k][0] for k in col)
        want = min((pos[c][0] for k in col for c in consumers.get(k, []) if c in pos), default=x + width + 60)
        x = max(x, want - width - 60)
        y = band_y
        for key in col:
            top[key] = [x, y]
            y += sizes[key][1] + TITLE + GAP_Y
        x += width + GAP_X
    band_right = max(x - GAP_X + PAD, boxes[-1][2] if boxes else 0)
    band_h = max(p[1] + sizes[k][1] for k, p in top.items()) + PAD
    lower_top = band_h + GAP_GROUP
    for key in pos:
        pos[key][1] += lower_top
    lower_h = max(p[1] + sizes[k][1] for k, p in pos.items()) + PAD - lower_top
    pos.update(top)
    out = [(titles[0], [0, 0, band_right, band_h])]
    out += [(t, [a, lower_top, b - a, lower_h]) for t, a, b in boxes]
    return pos, out


def make_node(nid, key, cls, widgets, inputs, info, link_ids, order, pos, size, all_widget_inputs=False):
    """One UI-format node. `link_ids[(key, input name)]` is the link feeding that input; with all_widget_inputs
    every widget is also listed as an input (the subgraph format)."""
    node_inputs, values = [], []
    for name_, ispec in input_specs(info):
        widget = is_widget(ispec)
        if widget and not all_widget_inputs and (key, name_) not in link_ids:
            continue
        entry = {"name": name_, "type": ispec[0] if isinstance(ispec[0], str) else "COMBO",
                 "link": link_ids.get((key, name_))}
        if widget:
            entry["widget"] = {"name": name_}
        elif len(ispec) > 1 and isinstance(ispec[1], dict) and name_ in info["input"].get("optional", {}):
            entry["shape"] = 7  # optional socket, as the frontend saves it
        node_inputs.append(entry)
    if all_widget_inputs:  # the frontend lists sockets first, then the widgets
        node_inputs.sort(key=lambda e: "widget" in e)
    for name_, ispec in input_specs(info):
        if is_widget(ispec) and name_ not in inputs:
            default = ispec[1].get("default") if len(ispec) > 1 and isinstance(ispec[1], dict) else None
            if default is None and name_ not in widgets:  # a file list can be empty on the building server
                opts = ispec[0] if isinstance(ispec[0], list) else ispec[1].get("options", [None])
                default = opts[0]
            values.append(widgets.get(name_, default))
            if extra_values(ispec):
                values.append(widgets.get("control_after_generate", "fixed")
                              if ispec[1].get("control_after_generate") else "image")
    props = {"Node name for S&R": cls}
    if cls.startswith("NexusGen"):
        props.update(cnr_id=PACK_ID, ver=PACK_VER)
    elif cls.endswith("GGUF"):
        props.update(GGUF_PROPS)
    else:
        props["cnr_id"] = "comfy-core"
    models = [{"name": v, "url": MODEL_URLS[v][0], "directory": MODEL_URLS[v][1]}
              for v in widgets.values() if isinstance(v, str) and v in MODEL_URLS]
    if models:
        props["models"] = models
    return {"id": nid, "type": cls, "pos": [round(pos[0]), round(pos[1])], "size": [round(s) for s in size],
            "flags": {}, "order": order, "mode": 0, "inputs": node_inputs,
            "outputs": [{"name": n, "type": t, "links": [], "slot_index": i}
                        for i, (n, t) in enumerate(zip(info["output_name"], info["output"]))],
            "properties": props, "widgets_values": values, "title": info.get("display_name") or cls}


def graph_parts(spec, groups, info, x0=0.0, all_widget_inputs=False, external=None, first_link=1):
    """Nodes, links (as [id, from, slot, to, slot, type]) and groups of a spec; `external` maps
    (key, input) -> link id for inputs fed from outside (a subgraph's inputs)."""
    external = external or {}
    ids = {key: i + 1 for i, (key, *_rest) in enumerate(spec)}
    classes = {key: cls for key, cls, *_ in spec}
    link_ids, raw, lid = dict(external), [], first_link
    for key, cls, _w, inputs in spec:
        for name_, (src, slot) in inputs.items():
            link_ids[(key, name_)] = lid
            raw.append((lid, src, slot, key, name_, info[classes[src]]["output"][slot]))
            lid += 1
    sizes = {key: node_size(cls, info[cls]) for key, cls, *_ in spec}
    for key, name_ in external:  # a text box fed from a subgraph input is not drawn: no room for it
        spec_ = dict(input_specs(info[classes[key]])).get(name_)
        if spec_ and len(spec_) > 1 and isinstance(spec_[1], dict) and spec_[1].get("multiline"):
            sizes[key][1] -= 110
    pos, boxes = layout(spec, groups, sizes, x0)
    nodes = [make_node(ids[key], key, cls, w, inputs, info[cls], link_ids, order, pos[key], sizes[key],
                       all_widget_inputs)
             for order, (key, cls, w, inputs) in enumerate(spec)]
    by_id = {n["id"]: n for n in nodes}
    links = []
    for lid_, src, slot, dst, name_, typ in raw:
        target = by_id[ids[dst]]
        tslot = next(i for i, e in enumerate(target["inputs"]) if e["name"] == name_)
        links.append([lid_, ids[src], slot, ids[dst], tslot, typ])
        by_id[ids[src]]["outputs"][slot]["links"].append(lid_)
    gboxes = [{"id": i + 1, "title": t, "bounding": [round(v) for v in b], "color": GROUP_COLORS[i % 5],
               "font_size": 24, "flags": {}} for i, (t, b) in enumerate(boxes)]
    return nodes, links, gboxes, ids, lid


def opening_view(nodes: list, groups: list) -> dict:
    """The saved view (extra.ds) a workflow opens with: the graph's top-left corner just below the frontend's
    floating toolbar, at VIEW_SCALE, so that text is drawn and the graph fits a 1366x768 window. Without one the
    frontend fits the graph with wide margins: 0.48 at 1366x768, where it draws grey boxes without text."""
    x0 = min([n["pos"][0] for n in nodes] + [g["bounding"][0] for g in groups])
    y0 = min([n["pos"][1] - TITLE for n in nodes] + [g["bounding"][1] for g in groups])
    return {"scale": VIEW_SCALE, "offset": [round(VIEW_AT[0] / VIEW_SCALE - x0, 1), round(VIEW_AT[1] / VIEW_SCALE - y0, 1)]}


def build(name: str, wf: dict, info: dict, note_title: str = "Read me", app: dict | None = None) -> dict:
    spec = wf["graph"]
    nodes, links, groups, ids, lid = graph_parts(spec, wf["layout"], info, x0=NOTE_W + GAP_GROUP)
    for n in nodes:  # untitled, a node shows its display name in the frontend's language (locales/zh/nodeDefs.json)
        del n["title"]
    _x, top, _w, height = groups[1]["bounding"]  # the note: left of the lower row, under the loaders
    nodes.append({"id": len(nodes) + 1, "type": "MarkdownNote", "pos": [0, top + TITLE], "size": [NOTE_W, height - TITLE],
                  "flags": {}, "order": len(nodes), "mode": 0, "inputs": [], "outputs": [], "properties": {},
                  "widgets_values": [wf["note"]], "title": note_title, "color": "#432", "bgcolor": "#653"})
    extra = {"ds": opening_view(nodes, groups), "nexus_gen": {"description": wf["note"].split("\n\n")[1]}}
    if app:  # frontend 1.41+ opens it as an app: these widgets and outputs, the graph hidden; older ones as a graph
        extra["linearMode"] = True
        extra["linearData"] = {"inputs": [[ids[key], widget] for key, widget in app["inputs"]],
                               "outputs": [ids[key] for key in app["outputs"]]}
    return {"id": str(uuid.uuid5(uuid.NAMESPACE_URL, "nexus-gen/" + name)), "revision": 0,
            "last_node_id": len(nodes), "last_link_id": lid - 1, "nodes": nodes, "links": links, "groups": groups,
            "config": {}, "extra": extra, "version": 0.4}


def build_blueprint(name: str, bp: dict, info: dict) -> dict:
    """A subgraph blueprint as the frontend publishes one: a root graph of one subgraph node whose widgets are the
    subgraph's inputs, each linked to an inner node's widget. No properties.proxyWidgets: 1.35 would show those
    beside the inputs' own widgets, 1.58 migrates them to such inputs anyway."""
    spec = bp["graph"]
    sg_id = str(uuid.uuid5(uuid.NAMESPACE_URL, "nexus-gen/blueprint/" + name))
    sg_inputs, external = [], {}
    lid = 1
    wired = list(bp["widgets"])
    if bp["image_input"]:
        wired = [(bp["image_input"][0], bp["image_input"][1], "image", None)] + wired
    for key, widget, iname, _label in wired:
        external[(key, widget)] = lid
        lid += 1
    # an image fed from outside replaces the inner input's link; the sampler's seed changes on every run
    spec = [(k, c, {**w, "control_after_generate": "randomize"} if k == "sampler" else w,
             {n: s for n, s in inp.items() if (k, n) not in external}) for k, c, w, inp in spec]
    nodes, links, groups, ids, lid = graph_parts(spec, bp["layout"], info, x0=0, all_widget_inputs=True,
                                                 external=external, first_link=lid)
    by_id = {n["id"]: n for n in nodes}
    classes = {k: c for k, c, *_ in spec}
    sg_links = [{"id": l[0], "origin_id": l[1], "origin_slot": l[2], "target_id": l[3], "target_slot": l[4],
                 "type": l[5]} for l in links]
    outer_inputs = []
    x_in = -260
    for slot, (key, widget, iname, label) in enumerate(wired):
        target = by_id[ids[key]]
        tslot = next(i for i, e in enumerate(target["inputs"]) if e["name"] == widget)
        typ = target["inputs"][tslot]["type"]
        link = external[(key, widget)]
        sg_links.append({"id": link, "origin_id": -10, "origin_slot": slot, "target_id": ids[key],
                         "target_slot": tslot, "type": typ})
        entry = {"id": str(uuid.uuid5(uuid.NAMESPACE_URL, f"nexus-gen/{name}/in/{iname}")), "name": iname,
                 "type": typ, "linkIds": [link], "pos": [x_in + 100, 20 + 20 * slot]}
        outer = {"name": iname, "type": typ, "link": None}
        if label:
            entry["label"] = outer["label"] = label
        if typ != "IMAGE":
            outer["widget"] = {"name": iname}
        sg_inputs.append(entry)
        outer_inputs.append(outer)
    sg_outputs, outer_outputs = [], []
    right = max(n["pos"][0] + n["size"][0] for n in nodes) + 80
    for slot, (key, oslot, oname) in enumerate(bp["outputs"]):
        typ = info[classes[key]]["output"][oslot]
        sg_links.append({"id": lid, "origin_id": ids[key], "origin_slot": oslot, "target_id": -20,
                         "target_slot": slot, "type": typ})
        by_id[ids[key]]["outputs"][oslot]["links"].append(lid)
        sg_outputs.append({"id": str(uuid.uuid5(uuid.NAMESPACE_URL, f"nexus-gen/{name}/out/{oname}")),
                           "name": oname, "type": typ, "linkIds": [lid], "pos": [right + 20, 40 + 20 * slot]})
        outer_outputs.append({"name": oname, "type": typ, "links": []})
        lid += 1
    n_in = len(sg_inputs)
    subgraph = {
        "id": sg_id, "version": 1,
        "state": {"lastGroupId": len(groups), "lastNodeId": len(nodes), "lastLinkId": lid - 1, "lastRerouteId": 0},
        "revision": 0, "config": {}, "name": name,
        "inputNode": {"id": -10, "bounding": [x_in, 0, 120, 40 + 20 * n_in]},
        "outputNode": {"id": -20, "bounding": [right, 20, 120, 60]},
        "inputs": sg_inputs, "outputs": sg_outputs, "widgets": [], "nodes": nodes, "groups": groups,
        "links": sorted(sg_links, key=lambda l: l["id"]), "extra": {}, "category": "Nexus-Gen",
        "description": bp["description"]}
    outer = {"id": len(nodes) + 1, "type": sg_id, "pos": [0, 0], "size": [420, 160 + 24 * len(outer_inputs)], "flags": {},
             "order": 0, "mode": 0, "inputs": outer_inputs, "outputs": outer_outputs, "title": name,
             "properties": {"cnr_id": PACK_ID, "ver": PACK_VER}, "widgets_values": []}
    return {"revision": 0, "last_node_id": len(nodes) + 1, "last_link_id": 0, "nodes": [outer], "links": [],
            "version": 0.4, "definitions": {"subgraphs": [subgraph]},
            "extra": {"BlueprintDescription": bp["description"], "BlueprintSearchAliases": bp["aliases"]}}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--server", default="http://127.0.0.1:8188")
    a = p.parse_args(argv)
    with urllib.request.urlopen(a.server + "/object_info", timeout=60) as r:
        info = json.loads(r.read())
    missing = sorted({c for wf in WORKFLOWS.values() for _k, c, *_ in wf["graph"]} - set(info))
    if missing:
        p.error(f"the server lacks {missing}: load this pack and ComfyUI-GGUF")
    OUT.mkdir(exist_ok=True)
    BLUEPRINTS.mkdir(exist_ok=True)
    for name, wf in WORKFLOWS.items():
        (OUT / f"{name}.json").write_text(json.dumps(build(name, wf, info), indent=1, ensure_ascii=False) + "\n")
        zh = build(name + "_zh", chinese(wf, name), info, note_title="说明")
        (OUT / f"{name}_zh.json").write_text(json.dumps(zh, indent=1, ensure_ascii=False) + "\n")
        print("wrote", OUT / f"{name}.json", "and", OUT / f"{name}_zh.json")
    (OUT / "apps").mkdir(exist_ok=True)
    for name, app in APPS.items():
        wf = build(name, WORKFLOWS[app["workflow"]], info, app=app)
        (OUT / "apps" / f"{name}.json").write_text(json.dumps(wf, indent=1, ensure_ascii=False) + "\n")
        print("wrote", OUT / "apps" / f"{name}.json")
    for name, bp in BLUEPRINTS_SPEC.items():
        path = BLUEPRINTS / f"{name}.json"
        path.write_text(json.dumps(build_blueprint(name, bp, info), indent=1, ensure_ascii=False) + "\n")
        print("wrote", path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
