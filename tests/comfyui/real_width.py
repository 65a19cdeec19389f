"""The real-width route shared by the host tests: a synthetic decoder at FLUX's real widths (DiT 3072 wide,
1 double + 1 single block, context 4096, pooled 768) that every host's FLUX detection accepts and loads with its
own loader, plus the graphs that sample it. Files are written once per server (conftest's `wide` fixture)."""
import json

import torch
from safetensors.torch import load_file

from client import messages

WIDE = "Wide/generation_decoder.bin"
WIDE_EDIT = "Nexus-GenV2/edit_decoder_wide.bin"  # beside the (tiny) AR's config.json, which its merger needs
WIDE_GGUF = "nexus_gen_wide-Q8_0.gguf"
CLIP_FULL = "clip_l_full.safetensors"


def write_wide_models(models):
    """The real-width decoders, the generation decoder's GGUF and a full-size random CLIP-L, into `models`."""
    from safetensors.torch import save_file
    from transformers import CLIPTextConfig, CLIPTextModel

    from nexus_core.decoder.convert import convert_to_gguf
    from nexus_core.synthetic.decoders import write_edit_decoder, write_generation_decoder

    dec = models / "nexus_gen" / WIDE
    if dec.exists():
        return
    dec.parent.mkdir(parents=True, exist_ok=True)
    write_generation_decoder(dec, 64, seed=5, hidden=3072, n_double=1, n_single=1, context=4096, pooled=768)
    ar_config = json.loads((models / "nexus_gen" / "Nexus-GenV2" / "config.json").read_text())
    write_edit_decoder(models / "nexus_gen" / WIDE_EDIT, ar_config, seed=6, hidden=3072, n_double=1, n_single=1,
                       context=4096, pooled=768)
    (models / "diffusion_models").mkdir(exist_ok=True)
    convert_to_gguf(dec, models / "diffusion_models" / WIDE_GGUF, "Q8_0")
    torch.manual_seed(0)
    clip = CLIPTextModel(CLIPTextConfig(vocab_size=49408, hidden_size=768, intermediate_size=3072,
                                        num_hidden_layers=12, num_attention_heads=12, max_position_embeddings=77,
                                        hidden_act="quick_gelu", projection_dim=768))
    sd = {("text_model." + k if not k.startswith("text_model.") else k): v.half().contiguous()
          for k, v in clip.state_dict().items() if not k.endswith("position_ids")}
    sd["text_projection.weight"] = torch.eye(768, dtype=torch.float16)
    save_file(sd, str(models / "text_encoders" / CLIP_FULL))


def graph(model: dict, projector, text: dict, ar=None) -> dict:
    """Prompt -> embeddings (fast mode) -> conditioning -> 2 reference steps at 128x96 -> SaveLatent. Two steps:
    every property the real-width tests check shows after two, and each run of the 3072-wide DiT costs seconds."""
    g = {
        "ar": {"class_type": "NexusGenARLoader",
               "inputs": {"model": "Nexus-GenV2", "dtype": "auto", "weight_dtype": "default", "device": "default",
                          **(ar or {})}},
        "emb": {"class_type": "NexusGenPromptEmbeds",
                "inputs": {"nexus_ar": ["ar", 0], "prompt": "a red fox", "language": "en", "one_per_line": False,
                           "mode": "fast", "seed": 0, "max_new_tokens": 100}},
        "cond": {"class_type": "NexusGenConditioning",
                 "inputs": {"embeds": ["emb", 0], "projector": projector, "guidance": 3.5, "use_reference": True}},
        "neg": {"class_type": "ConditioningZeroOut", "inputs": {"conditioning": ["cond", 0]}},
        "lat": {"class_type": "EmptySD3LatentImage", "inputs": {"width": 128, "height": 96, "batch_size": 1}},
        "sched": {"class_type": "NexusGenScheduler", "inputs": {"steps": 2, "denoise": 1.0, "shift": 3.0}},
        "ks": {"class_type": "KSamplerSelect", "inputs": {"sampler_name": "euler"}},
        "s": {"class_type": "SamplerCustom",
              "inputs": {"model": ["m", 0], "add_noise": True, "noise_seed": 52, "cfg": 1.0, "positive": ["cond", 0],
                         "negative": ["neg", 0], "sampler": ["ks", 0], "sigmas": ["sched", 0],
                         "latent_image": ["lat", 0]}},
        "save": {"class_type": "SaveLatent", "inputs": {"samples": ["s", 0], "filename_prefix": "wide/x"}},
        "m": model,
    }
    g.update(text)
    return g


def pack_text():
    return {"te": {"class_type": "NexusGenTextEncoderLoader",
                   "inputs": {"clip_l": CLIP_FULL, "t5xxl": "none", "device": "default"}}}


def native_text():
    return {"clip": {"class_type": "CLIPLoader", "inputs": {"clip_name": CLIP_FULL, "type": "stable_diffusion"}}}


def bf16_model():
    return {"class_type": "NexusGenDecoderLoader", "inputs": {"decoder": WIDE, "weight_dtype": "default"}}


def generation_graph() -> dict:
    return graph(bf16_model(), ["m", 1], pack_text())


def edit_graph() -> dict:
    """The editing decoder on the real route: image + instruction -> 81 + 324 embeddings -> its merger."""
    g = graph({"class_type": "NexusGenDecoderLoader", "inputs": {"decoder": WIDE_EDIT, "weight_dtype": "default"}},
              ["m", 1], pack_text())
    g["img"] = {"class_type": "LoadImage", "inputs": {"image": "example.png"}}
    g["emb"] = {"class_type": "NexusGenEditEmbeds",
                "inputs": {"nexus_ar": ["ar", 0], "image": ["img", 0], "instruction": "Make it blue.",
                           "mode": "fast", "seed": 0, "max_new_tokens": 100}}
    return g


def wire_text(g: dict) -> dict:
    """Connects the graph's text source (the pack's text encoders "te" or a native CLIP "clip") to the
    conditioning."""
    if "te" in g:
        g["cond"]["inputs"]["text_encoders"] = ["te", 0]
    if "clip" in g:
        g["cond"]["inputs"]["clip"] = ["clip", 0]
    return g


def saved_latents(entry: dict, base, node: str = "save") -> torch.Tensor:
    """The latents a SaveLatent node of a finished prompt wrote (the prompt must have succeeded)."""
    err = messages(entry).get("execution_error", {})
    assert entry["status"]["status_str"] == "success", json.dumps(err)[:3000]
    ref = entry["outputs"][node]["latents"][0]
    return load_file(str(base / "output" / ref["subfolder"] / ref["filename"]))["latent_tensor"].float()


def run(client, base, g: dict) -> torch.Tensor:
    """Queues `g`, waits for it, and returns the latents its SaveLatent node ("save") wrote."""
    return saved_latents(client.run(wire_text(g), timeout=900), base)


def run_watched(client, g: dict) -> tuple[list, dict]:
    """Runs `g` with a websocket open: (its progress-text frames, its history entry)."""
    seen = client.watch(wire_text(g))
    return seen["texts"], client.wait(seen["prompt_id"], 60)


def rel(a, b) -> float:
    return float((a - b).abs().max() / a.abs().max())
