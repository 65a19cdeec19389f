"""Routes that need FLUX's real widths, on a real-width synthetic decoder (DiT 3072 wide, 1 double + 1 single
block, context 4096, pooled 768) that every host's FLUX detection accepts:
  * the DiT as a Q8_0 GGUF through city96's ComfyUI-GGUF (UnetLoaderGGUF) + Nexus-Gen Model Patch and Projector
    Loader, against the same decoder in bf16 through Nexus-Gen Decoder Loader;
  * ComfyUI's own CLIP (CLIPLoader, a full-size random CLIP-L) instead of the pack's text encoders;
  * a GGUF MODEL whose widths don't match the projector is refused with a clear node error;
  * the AR with fp8 weights on the CPU device and the DiT in fp8 on the default device;
  * FLUX LoRAs in the ComfyUI/BFL, kohya and diffusers (PEFT) layouts through ComfyUI's own LoraLoaderModelOnly."""
import json

import pytest
import torch
from safetensors.torch import load_file

from client import messages

pytestmark = pytest.mark.comfyui
WIDE = "Wide/generation_decoder.bin"
WIDE_EDIT = "Nexus-GenV2/edit_decoder_wide.bin"  # beside the (tiny) AR's config.json, which its merger needs
WIDE_GGUF = "nexus_gen_wide-Q8_0.gguf"
CLIP_FULL = "clip_l_full.safetensors"


@pytest.fixture(scope="module")
def wide(comfy_server):
    """Writes the real-width decoder, its GGUF and a full-size random CLIP-L into the running server's models."""
    from transformers import CLIPTextConfig, CLIPTextModel
    from safetensors.torch import save_file

    from nexus_core.decoder.convert import convert_to_gguf
    from nexus_core.synthetic.decoders import write_edit_decoder, write_generation_decoder

    client, base, _ = comfy_server
    models = base / "models"
    dec = models / "nexus_gen" / WIDE
    if not dec.exists():
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
    return client, base


def graph(model: dict, projector, text: dict, ar=None) -> dict:
    """Prompt -> embeddings (fast mode) -> conditioning -> 3 reference steps at 128x96 -> SaveLatent."""
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
        "sched": {"class_type": "NexusGenScheduler", "inputs": {"steps": 3, "denoise": 1.0, "shift": 3.0}},
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


def run(client, base, g: dict) -> torch.Tensor:
    if "te" in g:
        g["cond"]["inputs"]["text_encoders"] = ["te", 0]
    if "clip" in g:
        g["cond"]["inputs"]["clip"] = ["clip", 0]
    entry = client.run(g, timeout=900)
    err = messages(entry).get("execution_error", {})
    assert entry["status"]["status_str"] == "success", json.dumps(err)[:3000]
    ref = entry["outputs"]["save"]["latents"][0]
    return load_file(str(base / "output" / ref["subfolder"] / ref["filename"]))["latent_tensor"].float()


def rel(a, b) -> float:
    return float((a - b).abs().max() / a.abs().max())


def bf16_model():
    return {"class_type": "NexusGenDecoderLoader", "inputs": {"decoder": WIDE, "weight_dtype": "default"}}


@pytest.fixture(scope="module")
def bf16_latents(wide):
    client, base = wide
    return run(client, base, graph(bf16_model(), ["m", 1], pack_text()))


def test_gguf_q8_dit_close_to_bf16(wide, object_info, bf16_latents):
    client, base = wide
    if "UnetLoaderGGUF" not in client.get("/object_info"):
        pytest.skip("ComfyUI-GGUF is not loaded (set COMFYUI_GGUF to a city96/ComfyUI-GGUF checkout)")
    g = graph({"class_type": "NexusGenModelPatch", "inputs": {"model": ["gguf", 0], "projector": ["proj", 0]}},
              ["proj", 0], pack_text())
    g["gguf"] = {"class_type": "UnetLoaderGGUF", "inputs": {"unet_name": WIDE_GGUF}}
    g["proj"] = {"class_type": "NexusGenProjectorLoader", "inputs": {"decoder": WIDE_GGUF}}
    q8 = run(client, base, g)
    r = rel(bf16_latents, q8)
    print(f"GGUF Q8_0 DiT vs bf16 DiT: max|diff| / max|bf16| = {r:.2e} (latents, 3 steps)")
    assert 0 < r < 0.05


@pytest.mark.parametrize("decoder", ["generation_decoder.bin", "edit_decoder.bin"])
def test_gguf_model_with_a_foreign_projector_is_a_node_error(wide, decoder):
    """Both projector kinds report the context width they make (adapter and merger read it from different layers)."""
    client, base = wide
    if "UnetLoaderGGUF" not in client.get("/object_info"):
        pytest.skip("ComfyUI-GGUF is not loaded (set COMFYUI_GGUF to a city96/ComfyUI-GGUF checkout)")
    g = {"gguf": {"class_type": "UnetLoaderGGUF", "inputs": {"unet_name": WIDE_GGUF}},
         "proj": {"class_type": "NexusGenProjectorLoader",
                  "inputs": {"decoder": f"Nexus-GenV2/{decoder}"}},  # a tiny decoder: 32-wide context
         "m": {"class_type": "NexusGenModelPatch", "inputs": {"model": ["gguf", 0], "projector": ["proj", 0]}},
         "lat": {"class_type": "EmptySD3LatentImage", "inputs": {"width": 128, "height": 96, "batch_size": 1}},
         "ks": {"class_type": "KSampler", "inputs": {"model": ["m", 0], "seed": 1, "steps": 1, "cfg": 1.0,
                                                     "sampler_name": "euler", "scheduler": "simple", "denoise": 1.0,
                                                     "positive": ["c", 0], "negative": ["c", 0],
                                                     "latent_image": ["lat", 0]}},
         "c": {"class_type": "ConditioningZeroOut", "inputs": {"conditioning": ["enc", 0]}},
         "enc": {"class_type": "CLIPTextEncode", "inputs": {"clip": ["clip", 0], "text": ""}},
         "clip": {"class_type": "CLIPLoader", "inputs": {"clip_name": CLIP_FULL, "type": "stable_diffusion"}},
         "save": {"class_type": "SaveLatent",
                  "inputs": {"samples": ["ks", 0], "filename_prefix": f"wide/bad_{decoder}"}}}
    entry = client.run(g)
    err = messages(entry).get("execution_error", {})
    assert entry["status"]["status_str"] == "error", entry["status"]
    assert "4096-wide context" in err["exception_message"] and "32-wide" in err["exception_message"], err
    assert client.get("/system_stats")


def test_native_clip_route_close_to_pack_text_encoders(wide, bf16_latents):
    client, base = wide
    native = run(client, base, graph(bf16_model(), ["m", 1], native_text()))
    r = rel(bf16_latents, native)
    print(f"native CLIPLoader pooled CLIP-L vs the pack's text encoders: max|diff| / max = {r:.2e} (latents)")
    assert r < 0.02


def test_fp8_ar_on_cpu_and_fp8_dit(wide, bf16_latents):
    """The 12 GB preset's choices: AR weights in fp8 on the CPU device, DiT weights in fp8 (computed in the
    model's dtype). Runs through and stays near the full-precision latents."""
    client, base = wide
    model = {"class_type": "NexusGenDecoderLoader", "inputs": {"decoder": WIDE, "weight_dtype": "fp8_e4m3fn"}}
    got = run(client, base, graph(model, ["m", 1], pack_text(), ar={"weight_dtype": "fp8_e4m3fn", "device": "cpu"}))
    r = rel(bf16_latents, got)
    print(f"AR fp8 on cpu + DiT fp8_e4m3fn vs full precision: max|diff| / max = {r:.2e} (latents)")
    assert 0 < r < 0.25


# --- LoRAs in the layouts people download, on the real route (ComfyUI's own FLUX model and LoRA loader) ---------

H = 3072  # the wide DiT: 1 double block, 1 single block, MLP ratio 4


def _pair(rank: int, n_in: int, n_out: int, gen) -> tuple[torch.Tensor, torch.Tensor]:
    """(down (r, in), up (out, r)) large enough to move 3 sampling steps."""
    return (torch.randn(rank, n_in, generator=gen) * 0.05).to(torch.bfloat16), \
        (torch.randn(n_out, rank, generator=gen) * 0.05).to(torch.bfloat16)


# Each layout: (target, in, out) per module, named as that layout names it; the modules cover both block kinds.
LORA_MODULES = {  # FLUX name: (in, out)
    "double_blocks.0.img_attn.qkv": (H, 3 * H), "double_blocks.0.txt_mlp.2": (4 * H, H),
    "single_blocks.0.linear1": (H, 7 * H), "single_blocks.0.linear2": (5 * H, H),
}


def lora_file(layout: str, only: str = "") -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(7)
    sd = {}
    if layout == "diffusers":  # PEFT names; q/k/v and the single block's MLP land on slices of the fused weights
        mods = {"transformer.transformer_blocks.0.attn.to_q": (H, H),
                "transformer.transformer_blocks.0.attn.add_v_proj": (H, H),
                "transformer.transformer_blocks.0.ff_context.net.2": (4 * H, H),
                "transformer.single_transformer_blocks.0.attn.to_k": (H, H),
                "transformer.single_transformer_blocks.0.proj_mlp": (H, 4 * H),
                "transformer.single_transformer_blocks.0.proj_out": (5 * H, H)}
        for name, (n_in, n_out) in mods.items():
            if only and only not in name:
                continue
            sd[name + ".lora_A.weight"], sd[name + ".lora_B.weight"] = _pair(8, n_in, n_out, gen)
        return sd
    for name, (n_in, n_out) in LORA_MODULES.items():
        if only and not name.startswith(only):
            continue
        down, up = _pair(8, n_in, n_out, gen)
        if layout == "kohya":
            key = "lora_unet_" + name.replace(".", "_")
            sd[key + ".lora_down.weight"], sd[key + ".lora_up.weight"] = down, up
            sd[key + ".alpha"] = torch.tensor(8.0)
        else:  # ComfyUI / BFL names under diffusion_model.
            key = "diffusion_model." + name
            sd[key + ".lora_A.weight"], sd[key + ".lora_B.weight"] = down, up
    return sd


def edit_graph() -> dict:
    """The editing decoder on the real route: image + instruction -> 81 + 324 embeddings -> its merger."""
    g = graph({"class_type": "NexusGenDecoderLoader", "inputs": {"decoder": WIDE_EDIT, "weight_dtype": "default"}},
              ["m", 1], pack_text())
    g["img"] = {"class_type": "LoadImage", "inputs": {"image": "example.png"}}
    g["emb"] = {"class_type": "NexusGenEditEmbeds",
                "inputs": {"nexus_ar": ["ar", 0], "image": ["img", 0], "instruction": "Make it blue.",
                           "mode": "fast", "seed": 0, "max_new_tokens": 100}}
    return g


def with_lora(name: str, strength: float, editing: bool = False) -> dict:
    g = edit_graph() if editing else graph(bf16_model(), ["m", 1], pack_text())
    g["lora"] = {"class_type": "LoraLoaderModelOnly",
                 "inputs": {"model": ["m", 0], "lora_name": name, "strength_model": strength}}
    g["s"]["inputs"]["model"] = ["lora", 0]
    return g


@pytest.fixture(scope="module")
def edit_latents(wide):
    client, base = wide
    return run(client, base, edit_graph())


@pytest.mark.parametrize("layout,only,editing", [("comfyui", "", False), ("kohya", "", False), ("diffusers", "", False),
                                                 ("kohya", "single_blocks", False),
                                                 ("diffusers", "single_transformer_blocks", False),
                                                 ("kohya", "", True), ("diffusers", "", True)])
def test_lora_layouts_apply_every_key_on_the_real_route(request, wide, comfy_server, layout, only, editing):
    """A FLUX LoRA in each layout people download, through ComfyUI's own LoraLoaderModelOnly onto the MODEL of
    Nexus-Gen Decoder Loader: no key is left unloaded (the host would only log it), strength 0 gives the base
    latents bit for bit, strength 1 changes them, also when the LoRA touches the single blocks only."""
    from safetensors.torch import save_file

    client, base = wide
    _, _, log = comfy_server
    name = f"nexus_test_{layout}{'_' + only if only else ''}.safetensors"
    path = base / "models" / "loras" / name
    if not path.exists():
        path.parent.mkdir(exist_ok=True)
        save_file(lora_file(layout, only), str(path))
    base_latents = request.getfixturevalue("edit_latents" if editing else "bf16_latents")
    before = len(log.read_text(errors="replace"))
    if (layout, editing) in (("comfyui", False), ("kohya", True)):  # strength 0 is not the layout's: once a decoder
        assert torch.equal(run(client, base, with_lora(name, 0.0, editing)), base_latents)
    one = run(client, base, with_lora(name, 1.0, editing))
    new_log = log.read_text(errors="replace")[before:]
    assert "lora key not loaded" not in new_log, new_log[-3000:]
    r = rel(base_latents, one)
    print(f"LoRA {layout} {only or 'all'} {'editing' if editing else 'generation'} decoder: strength 1 moves the "
          f"latents by {r:.2e} (max|diff| / max|base|)")
    assert r > 1e-3
