"""The workflows' notes in English: the VRAM presets, the file list, how-tos."""
from __future__ import annotations

from .links import GGUF_FILE, HF_FLUX, HF_NEXUS, HF_REDUX, HF_SIGLIP, HF_TE, HF_TURBO, LORA_FILE, MODELSCOPE

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


def hub(url: str, lang: str) -> str:
    """Where a file is linked for a language: ModelScope's copy in the Chinese notes where there is one."""
    return MODELSCOPE.get(url, url) if lang == "zh" else url


def files_md(decoder: str | None, t5: bool = False, vae: bool = True, gguf: bool = False, lang: str = "en") -> str:
    text = FILES_TEXT[lang]
    lines = [text["head"], text["ar"].format(hf=hub(HF_NEXUS, lang))]
    if decoder:
        lines[-1] += text["decoder"].format(decoder=decoder)
    if gguf:
        lines.append(text["gguf"].format(gguf=GGUF_FILE))
    if decoder or gguf:
        lines.append(text["te"].format(te="clip_l.safetensors" + (text["t5"] if t5 else ""), hf=hub(HF_TE, lang)))
    if vae:
        lines.append(text["vae"].format(hf=hub(HF_FLUX, lang)))
    return "\n".join(lines)


def note(title: str, what: str, files: str, vram: str = VRAM, extra: str = "") -> str:
    return "\n\n".join(p for p in (f"## {title}", what, files, extra, vram) if p)


GGUF_HOWTO = ("**GGUF**: install [ComfyUI-GGUF](https://github.com/city96/ComfyUI-GGUF) (ComfyUI-Manager: "
              "\"ComfyUI-GGUF\"), then make the file once:\n"
              "```\nnexus-gen convert generation_decoder.bin --layout gguf --dtype Q8_0 "
              f"--out models/diffusion_models/{GGUF_FILE}\n```\n"
              "Unet Loader (GGUF) loads the quantized DiT; Projector Loader reads the adapter from the same file; "
              "Model Patch gives the DiT Nexus-Gen's flow shift.")


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


DISTRIBUTED_HOWTO = (
    "**Every worker needs the same files** in its own model folders (the list above: 16.6 GB for the AR folder, "
    "or 8.9 GB as one fp8 file, 24 GB for the decoder or 6.8 GB as GGUF Q4_0, 0.6 GB for CLIP-L and the AE, "
    "9.5 GB for T5) and this pack; input images are sent to remote workers by the engine. **Adding a worker**: "
    "start ComfyUI on it with `--listen --enable-cors-header` (the master needs `--enable-cors-header` too), then "
    "in the master's Distributed panel *Add Worker* (another GPU of this machine: local; another machine: remote, "
    "its address and port) and tick it. The AR's reply "
    "below the prompt is the master's own; understanding workflows (text only) run on the master alone, as the "
    "collector gathers images.")
