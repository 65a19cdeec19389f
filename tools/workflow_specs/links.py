"""The model files the workflows name, where to download them, and the loader nodes that read them."""
from __future__ import annotations

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

# ModelScope copies of the same files, for the Chinese copies (much of Nexus-Gen's audience cannot reach Hugging Face).
# Each address was checked against public sources (DiffSynth-Studio's README and examples, scripts that download from
# them; see the README's file table). SigLIP has no official ModelScope copy: its link stays on Hugging Face. The
# loaders' download metadata stays on Hugging Face too: the frontend downloads only from huggingface.co and civitai.
MS = "https://www.modelscope.cn/models/"
MS_NEXUS = MS + "DiffSynth-Studio/Nexus-GenV2"
MS_TE = MS + "AI-ModelScope/flux_text_encoders"
MS_FLUX = MS + "black-forest-labs/FLUX.1-dev"
MS_REDUX = MS + "black-forest-labs/FLUX.1-Redux-dev"
MS_TURBO = MS + "alimama-creative/FLUX.1-Turbo-Alpha"
MODELSCOPE = {HF_NEXUS: MS_NEXUS, HF_TE: MS_TE, HF_FLUX: MS_FLUX, HF_REDUX: MS_REDUX, HF_TURBO: MS_TURBO}
DOWNLOAD_AR = {"hf": "hf download modelscope/Nexus-GenV2 --local-dir models/nexus_gen/Nexus-GenV2",
               "ms": "modelscope download --model DiffSynth-Studio/Nexus-GenV2 --local_dir models/nexus_gen/Nexus-GenV2"}

AR = ("ar", "NexusGenARLoader", {"model": "Nexus-GenV2", "dtype": "auto"}, {})
GEN_DEC = ("dec", "NexusGenDecoderLoader", {"decoder": "Nexus-GenV2/generation_decoder.bin", "weight_dtype": "default"}, {})
EDIT_DEC = ("dec", "NexusGenDecoderLoader", {"decoder": "Nexus-GenV2/edit_decoder.bin", "weight_dtype": "default"}, {})
TE = ("te", "NexusGenTextEncoderLoader", {"clip_l": "clip_l.safetensors", "t5xxl": "none"}, {})
TE_T5 = ("te", "NexusGenTextEncoderLoader", {"clip_l": "clip_l.safetensors", "t5xxl": "t5xxl_fp16.safetensors"}, {})
VAE = ("vae", "VAELoader", {"vae_name": "ae.safetensors"}, {})
IMG = ("img", "LoadImage", {"image": "example.png"}, {})
GGUF_FILE = "nexus_gen_generation_decoder-Q8_0.gguf"
