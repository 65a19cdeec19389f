"""Nexus-Gen mixed with the FLUX toolbox on the real route: the real-width decoders (real_width.py) loaded by the
host's own FLUX loader, with ComfyUI's own nodes on top.
  * LoRAs in every layout people download (ComfyUI/BFL, kohya, diffusers/PEFT, XLabs) through LoraLoaderModelOnly,
    on both decoders; a LoRA that matches nothing reaches the user on the node, not only in the log;
  * Redux (StyleModelApply with a real-layout Redux model and SigLIP vision tower) on generation and editing
    conditioning: the editing position ids cope with the 729 tokens it appends;
  * an XLabs FLUX ControlNet (1 double block) through ControlNetLoader + ControlNetApplyAdvanced;
  * the simple combinations (img2img, a latent mask, DifferentialDiffusion, conditioning combine/average, timestep
    ranges, a second pass after an upscale) once.
Each case asserts a property: the same output where identity is predicted, a changed one where a change is.

The default run keeps one case per add-on and decoder kind that the rest do not already cover; NEXUS_MIXING=full
adds the variants (single-block-only LoRAs, diffusers LoRA and ControlNet on the editing decoder, Redux on the
generation decoder, the two mixing workflows as saved), so that this file adds under a quarter to the host suite."""
import json
import os
from pathlib import Path

import pytest
import torch

from client import messages
from workflow_format import models_named
from real_width import edit_graph, generation_graph, rel, run, run_watched, saved_latents, wire_text

pytestmark = pytest.mark.comfyui
full_only = pytest.mark.skipif(os.environ.get("NEXUS_MIXING") != "full",
                               reason="a variant the default run covers otherwise: NEXUS_MIXING=full runs it")


# --- LoRAs in the layouts people download, on the real route (ComfyUI's own FLUX model and LoRA loader) ---------

H = 3072  # the wide DiT: 1 double block, 1 single block, MLP ratio 4


def _pair(rank: int, n_in: int, n_out: int, gen) -> tuple[torch.Tensor, torch.Tensor]:
    """(down (r, in), up (out, r)) large enough to move 2 sampling steps."""
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


def ensure_lora(base, layout: str, only: str = "") -> str:
    """The name of the test LoRA in `layout` in the server's loras folder, written on first use."""
    from safetensors.torch import save_file

    name = f"nexus_test_{layout}{'_' + only if only else ''}.safetensors"
    path = base / "models" / "loras" / name
    if not path.exists():
        path.parent.mkdir(exist_ok=True)
        save_file(lora_file(layout, only), str(path))
    return name


def with_lora(name: str, strength: float, editing: bool = False) -> dict:
    g = edit_graph() if editing else generation_graph()
    g["lora"] = {"class_type": "LoraLoaderModelOnly",
                 "inputs": {"model": ["m", 0], "lora_name": name, "strength_model": strength}}
    g["s"]["inputs"]["model"] = ["lora", 0]
    return g


@pytest.mark.parametrize("layout,only,editing", [
    ("comfyui", "", False), ("kohya", "", False), ("diffusers", "", False), ("kohya", "", True),
    pytest.param("kohya", "single_blocks", False, marks=full_only),
    pytest.param("diffusers", "single_transformer_blocks", False, marks=full_only),
    pytest.param("diffusers", "", True, marks=full_only)])
def test_lora_layouts_apply_every_key_on_the_real_route(request, wide, comfy_server, layout, only, editing):
    """A FLUX LoRA in each layout people download, through ComfyUI's own LoraLoaderModelOnly onto the MODEL of
    Nexus-Gen Decoder Loader: no key is left unloaded (the host would only log it) and the LoRA node shows no
    notice, strength 0 gives the base latents bit for bit, strength 1 changes them (also when the LoRA touches
    the single blocks only)."""
    client, base = wide
    _, _, log = comfy_server
    name = ensure_lora(base, layout, only)
    base_latents = request.getfixturevalue("edit_latents" if editing else "bf16_latents")
    before = len(log.read_text(errors="replace"))
    if (layout, editing) in (("comfyui", False), ("kohya", True)):  # strength 0 is not the layout's: once a decoder
        assert torch.equal(run(client, base, with_lora(name, 0.0, editing)), base_latents)
    texts, entry = run_watched(client, with_lora(name, 1.0, editing))
    one = saved_latents(entry, base)
    new_log = log.read_text(errors="replace")[before:]
    assert "lora key not loaded" not in new_log, new_log[-3000:]
    assert not [t for t in texts if t["node"] == "lora"], texts  # a LoRA that applies gets no notice
    r = rel(base_latents, one)
    print(f"LoRA {layout} {only or 'all'} {'editing' if editing else 'generation'} decoder: strength 1 moves the "
          f"latents by {r:.2e} (max|diff| / max|base|)")
    assert r > 1e-3


# --- XLabs LoRAs: ComfyUI's loaders skip them whole; the user is told on the node, and `nexus-gen convert-lora` --
# --- turns them into the ComfyUI layout, which then applies exactly as the same matrices written that way ----------

def xlabs_pair_files(gen_seed: int = 11) -> tuple[dict, dict]:
    """The same random matrices as an XLabs LoRA and as the ComfyUI-layout LoRA that means the same: XLabs'
    qkv_lora of a single block is the first 3 x H rows of linear1 (the oracle spells it out with zero MLP rows)."""
    gen = torch.Generator().manual_seed(gen_seed)
    xlabs, comfy = {}, {}
    targets = {"double_blocks.0.processor.qkv_lora1": ("double_blocks.0.img_attn.qkv", H, 3 * H, 3 * H),
               "double_blocks.0.processor.proj_lora2": ("double_blocks.0.txt_attn.proj", H, H, H),
               "single_blocks.0.processor.qkv_lora": ("single_blocks.0.linear1", H, 3 * H, 7 * H),
               "single_blocks.0.processor.proj_lora": ("single_blocks.0.linear2", 5 * H, H, H)}
    for name, (flux, n_in, n_out, full_out) in targets.items():
        down, up = _pair(8, n_in, n_out, gen)
        xlabs[name + ".down.weight"], xlabs[name + ".up.weight"] = down, up
        padded = torch.zeros(full_out, 8, dtype=up.dtype)
        padded[:n_out] = up
        comfy["diffusion_model." + flux + ".lora_A.weight"] = down
        comfy["diffusion_model." + flux + ".lora_B.weight"] = padded
    return xlabs, comfy


@pytest.fixture(scope="module")
def xlabs_loras(wide):
    from safetensors.torch import save_file

    _, base = wide
    folder = base / "models" / "loras"
    folder.mkdir(exist_ok=True)
    xlabs, comfy = xlabs_pair_files()
    if not (folder / "nexus_test_xlabs.safetensors").exists():
        # with a metadata block, as the published files have: it is not a key (a count that took it for one failed)
        save_file(xlabs, str(folder / "nexus_test_xlabs.safetensors"), metadata={"format": "pt"})
        save_file(comfy, str(folder / "nexus_test_xlabs_oracle.safetensors"))
    return folder


def test_xlabs_lora_skipped_by_the_host_is_said_on_the_node(wide, comfy_server, xlabs_loras, bf16_latents):
    """ComfyUI's LoRA loaders read no XLabs key (each is only logged as 'lora key not loaded'): the LoRA node
    shows that none of the file's keys matched, and says how to convert it."""
    client, base = wide
    g = with_lora("nexus_test_xlabs.safetensors", 1.0)
    g["save"]["inputs"]["filename_prefix"] = "wide/xlabs_skipped"
    texts, entry = run_watched(client, g)
    assert entry["status"]["status_str"] == "success"
    on_lora = " ".join(t["text"] for t in texts if t["node"] == "lora")
    assert "8 of 8 keys" in on_lora and "nexus-gen convert-lora" in on_lora and "XLabs" in on_lora, texts
    assert torch.equal(saved_latents(entry, base), bf16_latents)  # nothing applied: what the user would not notice


def test_a_lora_with_text_encoder_weights_applies_and_the_node_says_what_was_left(wide, comfy_server, bf16_latents):
    """A kohya FLUX LoRA that also trained CLIP-L (lora_te1_...), as sd-scripts writes them, through
    LoraLoaderModelOnly: the DiT keys apply (the latents move), only the text-encoder keys are skipped, and the node
    says what they are instead of calling the file a LoRA for another model; no toast (the LoRA works)."""
    from safetensors.torch import save_file

    client, base = wide
    _, _, log = comfy_server
    name = "nexus_test_kohya_with_te.safetensors"
    path = base / "models" / "loras" / name
    if not path.exists():
        path.parent.mkdir(exist_ok=True)
        te = "lora_te1_text_model_encoder_layers_0_self_attn_q_proj"
        gen = torch.Generator().manual_seed(3)
        down, up = _pair(8, 768, 768, gen)
        save_file({**lora_file("kohya"), te + ".lora_down.weight": down, te + ".lora_up.weight": up,
                   te + ".alpha": torch.tensor(8.0)}, str(path))
    before = len(log.read_text(errors="replace"))
    texts, entry = run_watched(client, with_lora(name, 1.0))
    moved = rel(bf16_latents, saved_latents(entry, base))
    skipped = [line for line in log.read_text(errors="replace")[before:].splitlines() if "lora key not loaded" in line]
    assert len(skipped) == 3 and all("lora_te1_" in line for line in skipped), skipped
    on_lora = " ".join(t["text"] for t in texts if t["node"] == "lora")
    assert "text-encoder" in on_lora and "other models" not in on_lora, texts
    assert moved > 1e-3


def test_the_notice_keeps_out_of_prompts_without_nexus_gen_nodes(wide, xlabs_loras):
    """The same skipped LoRA on a plain FLUX MODEL (ComfyUI-GGUF's loader, no Nexus-Gen node in the prompt): the
    pack says nothing there; that is the host's business."""
    from real_width import WIDE_GGUF

    client, _ = wide
    nodes = client.get("/object_info")
    assert "NexusGenDecoderLoader" in nodes  # silence from a pack that failed to load would prove nothing
    if "UnetLoaderGGUF" not in nodes:
        pytest.skip("ComfyUI-GGUF is not loaded (set COMFYUI_GGUF to a city96/ComfyUI-GGUF checkout)")
    g = {"unet": {"class_type": "UnetLoaderGGUF", "inputs": {"unet_name": WIDE_GGUF}},
         "lora": {"class_type": "LoraLoaderModelOnly", "inputs": {"model": ["unet", 0], "strength_model": 1.0,
                                                                  "lora_name": "nexus_test_xlabs.safetensors"}},
         "show": {"class_type": "PreviewAny", "inputs": {"source": ["lora", 0]}}}
    texts, entry = run_watched(client, g)
    assert entry["status"]["status_str"] == "success", json.dumps(messages(entry).get("execution_error", {}))[:2000]
    assert texts == []


def test_converted_xlabs_lora_applies_like_the_comfyui_layout(wide, comfy_server, xlabs_loras, bf16_latents):
    """`nexus-gen convert-lora` on the XLabs file: every key applies, and the latents equal, bit for bit, those of
    the same matrices written in the ComfyUI layout by hand (an oracle the converter never saw)."""
    from nexus_core.cli import main

    client, base = wide
    _, _, log = comfy_server
    out = xlabs_loras / "nexus_test_xlabs_converted.safetensors"
    if not out.exists():  # the command itself, in this process (its start-up is not what is tested here)
        assert main(["convert-lora", str(xlabs_loras / "nexus_test_xlabs.safetensors"), "--out", str(out)]) == 0
    before = len(log.read_text(errors="replace"))
    converted = run(client, base, with_lora(out.name, 1.0))
    assert "lora key not loaded" not in log.read_text(errors="replace")[before:]
    oracle = run(client, base, with_lora("nexus_test_xlabs_oracle.safetensors", 1.0))
    assert rel(bf16_latents, oracle) > 1e-3
    assert torch.equal(converted, oracle)


# --- Redux and ControlNet: real-layout random add-ons through ComfyUI's own loaders --------------------------------

# under the names the Redux workflow uses, so that it runs on them as saved
_REDUX_FILES = models_named(json.loads((Path(__file__).parents[2] / "workflows" / "nexus_gen_redux.json").read_text()))
SIGLIP, REDUX = _REDUX_FILES["clip_vision"], _REDUX_FILES["style_models"]
CONTROLNET = "flux-canny-controlnet-v3.safetensors"  # XLabs layout, 1 double block (the published ones: 2)
CONTROLNET_ZERO = "flux-controlnet-zero-init.safetensors"  # the same, with the residual projections at zero


@pytest.fixture(scope="module")
def addons(wide):
    from safetensors.torch import save_file

    from nexus_core.synthetic.flux_addons import (write_redux, write_siglip_vision, xlabs_controlnet_state,
                                                  zero_initialised)

    client, base = wide
    models = base / "models"
    for folder in ("clip_vision", "style_models", "controlnet"):
        (models / folder).mkdir(exist_ok=True)
    if not (models / "controlnet" / CONTROLNET_ZERO).exists():
        write_siglip_vision(models / "clip_vision" / SIGLIP, seed=1)
        write_redux(models / "style_models" / REDUX, seed=2)
        controlnet = xlabs_controlnet_state(seed=3, n_double=1)  # built once, saved as trained and as initialised
        save_file(controlnet, str(models / "controlnet" / CONTROLNET))
        save_file(zero_initialised(controlnet), str(models / "controlnet" / CONTROLNET_ZERO))
    return client, base


def with_redux(g: dict, strength: float = 1.0, strength_type: str = "multiply") -> dict:
    """The positive goes through StyleModelApply with example.png's SigLIP features: 729 tokens appended."""
    g["img"] = {"class_type": "LoadImage", "inputs": {"image": "example.png"}}
    g["cvl"] = {"class_type": "CLIPVisionLoader", "inputs": {"clip_name": SIGLIP}}
    g["cve"] = {"class_type": "CLIPVisionEncode", "inputs": {"clip_vision": ["cvl", 0], "image": ["img", 0],
                                                              "crop": "center"}}
    g["sml"] = {"class_type": "StyleModelLoader", "inputs": {"style_model_name": REDUX}}
    g["sty"] = {"class_type": "StyleModelApply",
                "inputs": {"conditioning": ["cond", 0], "style_model": ["sml", 0], "clip_vision_output": ["cve", 0],
                           "strength": strength, "strength_type": strength_type}}
    g["s"]["inputs"]["positive"] = ["sty", 0]
    return g


@pytest.mark.parametrize("editing", [pytest.param(False, marks=full_only), True], ids=["generation", "editing"])
def test_redux_on_nexus_conditioning(addons, comfy_server, request, editing):
    """Redux appends 729 image tokens to the Nexus-Gen context (81, or 81 + 324 for editing, whose position ids
    the MODEL sets from the conditioning's grids): it samples, the log has no missing-weight line, and the style
    moves the latents."""
    client, base = addons
    _, _, log = comfy_server
    base_latents = request.getfixturevalue("edit_latents" if editing else "bf16_latents")
    before = len(log.read_text(errors="replace"))
    got = run(client, base, with_redux(edit_graph() if editing else generation_graph()))
    new_log = log.read_text(errors="replace")[before:]
    assert "missing clip vision" not in new_log and "Traceback" not in new_log, new_log[-3000:]
    r = rel(base_latents, got)
    print(f"Redux on {'editing' if editing else 'generation'} conditioning moves the latents by {r:.2e}")
    assert r > 1e-3


def with_controlnet(g: dict, name: str, strength: float = 1.0) -> dict:
    """ControlNetApplyAdvanced on the Nexus-Gen positive and its zeroed negative, example.png as the hint."""
    g["img"] = {"class_type": "LoadImage", "inputs": {"image": "example.png"}}
    g["cnl"] = {"class_type": "ControlNetLoader", "inputs": {"control_net_name": name}}
    g["cna"] = {"class_type": "ControlNetApplyAdvanced",
                "inputs": {"positive": ["cond", 0], "negative": ["neg", 0], "control_net": ["cnl", 0],
                           "image": ["img", 0], "strength": strength, "start_percent": 0.0, "end_percent": 1.0}}
    g["s"]["inputs"]["positive"], g["s"]["inputs"]["negative"] = ["cna", 0], ["cna", 1]
    return g


@pytest.mark.parametrize("editing", [False, pytest.param(True, marks=full_only)], ids=["generation", "editing"])
def test_controlnet_on_nexus_conditioning(addons, comfy_server, request, editing):
    """An XLabs FLUX ControlNet on Nexus-Gen conditioning: with its residual projections at zero (as training
    starts) the latents are the base's bit for bit, so the control path adds exactly nothing else; with random
    ones it steers them. No key is left over or missing."""
    client, base = addons
    _, _, log = comfy_server
    base_latents = request.getfixturevalue("edit_latents" if editing else "bf16_latents")
    make = edit_graph if editing else generation_graph
    before = len(log.read_text(errors="replace"))
    if not editing:  # identity once: it does not depend on the decoder
        assert torch.equal(run(client, base, with_controlnet(make(), CONTROLNET_ZERO)), base_latents)
    got = run(client, base, with_controlnet(make(), CONTROLNET))
    new_log = log.read_text(errors="replace")[before:]
    assert "leftover keys" not in new_log and "missing" not in new_log.lower(), new_log[-3000:]
    r = rel(base_latents, got)
    print(f"ControlNet on {'editing' if editing else 'generation'} conditioning moves the latents by {r:.2e}")
    assert r > 1e-3


# --- The simple combinations, once on the real route --------------------------------------------------------------

def test_conditioning_identities_on_the_real_route(wide, bf16_latents):
    """Nexus-Gen conditioning through ComfyUI's conditioning nodes where the result must not change: the two
    halves of the schedule (ConditioningSetTimestepRange 0-0.5 and 0.5-1, combined) and the average of the
    conditioning with itself both give the base latents bit for bit."""
    client, base = wide
    g = generation_graph()
    g["r1"] = {"class_type": "ConditioningSetTimestepRange", "inputs": {"conditioning": ["cond", 0], "start": 0.0,
                                                                        "end": 0.5}}
    g["r2"] = {"class_type": "ConditioningSetTimestepRange", "inputs": {"conditioning": ["cond", 0], "start": 0.5,
                                                                        "end": 1.0}}
    g["both"] = {"class_type": "ConditioningCombine", "inputs": {"conditioning_1": ["r1", 0],
                                                                 "conditioning_2": ["r2", 0]}}
    g["s"]["inputs"]["positive"] = ["both", 0]
    assert torch.equal(run(client, base, g), bf16_latents)
    g = generation_graph()
    g["avg"] = {"class_type": "ConditioningAverage",
                "inputs": {"conditioning_to": ["cond", 0], "conditioning_from": ["cond", 0],
                           "conditioning_to_strength": 0.5}}
    g["s"]["inputs"]["positive"] = ["avg", 0]
    assert torch.equal(run(client, base, g), bf16_latents)


def test_img2img_mask_differential_diffusion_and_a_hires_pass_on_editing(wide, edit_latents):
    """The editing decoder (whose position ids follow the latent size) in the usual inpaint + hi-res chain:
    example.png encoded, the right half masked, DifferentialDiffusion, 60 % denoise; then the latents upscaled
    1.5x and sampled again at 50 %. The unmasked half keeps the encoded latents (to float rounding); the second
    pass runs at the new size."""
    client, base = wide
    g = edit_graph()
    g["scale"] = {"class_type": "ImageScale", "inputs": {"image": ["img", 0], "upscale_method": "bilinear",
                                                         "width": 128, "height": 96, "crop": "center"}}
    g["vae"] = {"class_type": "VAELoader", "inputs": {"vae_name": "ae.safetensors"}}
    g["enc"] = {"class_type": "VAEEncode", "inputs": {"pixels": ["scale", 0], "vae": ["vae", 0]}}
    g["solid"] = {"class_type": "SolidMask", "inputs": {"value": 0.0, "width": 128, "height": 96}}
    g["half"] = {"class_type": "SolidMask", "inputs": {"value": 1.0, "width": 64, "height": 96}}
    g["mask"] = {"class_type": "MaskComposite", "inputs": {"destination": ["solid", 0], "source": ["half", 0],
                                                           "x": 64, "y": 0, "operation": "add"}}
    g["masked"] = {"class_type": "SetLatentNoiseMask", "inputs": {"samples": ["enc", 0], "mask": ["mask", 0]}}
    g["dd"] = {"class_type": "DifferentialDiffusion", "inputs": {"model": ["m", 0]}}
    g["sched"]["inputs"]["denoise"] = 0.6
    g["s"]["inputs"].update(model=["dd", 0], latent_image=["masked", 0])
    g["first"] = {"class_type": "SaveLatent", "inputs": {"samples": ["s", 0], "filename_prefix": "wide/first"}}
    g["up"] = {"class_type": "LatentUpscaleBy", "inputs": {"samples": ["s", 0], "upscale_method": "nearest-exact",
                                                           "scale_by": 1.5}}
    g["sched2"] = {"class_type": "NexusGenScheduler", "inputs": {"steps": 2, "denoise": 0.5, "shift": 3.0}}
    g["s2"] = {"class_type": "SamplerCustom",
               "inputs": {"model": ["m", 0], "add_noise": True, "noise_seed": 3, "cfg": 1.0, "positive": ["cond", 0],
                          "negative": ["neg", 0], "sampler": ["ks", 0], "sigmas": ["sched2", 0],
                          "latent_image": ["up", 0]}}
    g["save"]["inputs"]["samples"] = ["s2", 0]
    g["enc_save"] = {"class_type": "SaveLatent", "inputs": {"samples": ["enc", 0], "filename_prefix": "wide/enc"}}
    entry = client.run(wire_text(g), timeout=900)
    encoded, first, second = (saved_latents(entry, base, n) for n in ("enc_save", "first", "save"))
    assert first.shape == encoded.shape == (1, 16, 12, 16)
    # The unmasked (left) half is kept: equal up to the latent format's scale and shift, applied and undone
    assert torch.allclose(first[..., :8], encoded[..., :8], rtol=1e-5, atol=1e-5), rel(encoded[..., :8], first[..., :8])
    assert rel(encoded[..., 8:], first[..., 8:]) > 1e-2  # the masked half was sampled
    assert second.shape == (1, 16, 18, 24)
    assert torch.isfinite(second).all() and rel(second[..., ::3, ::3], first[..., ::2, ::2]) > 1e-3


# --- The two mixing workflows, as saved, on the real route ---------------------------------------------------------

@full_only
@pytest.mark.parametrize("name", ["nexus_gen_lora_hires", "nexus_gen_redux_zh"])
def test_mixing_workflows_run_on_the_real_route(addons, object_info, name):
    """workflows/<name>.json converted as the frontend queues it, made small (3 steps, 128x96, a short reply), with
    the real-width decoder, the full-size CLIP-L and the test add-ons in place of the downloads: it runs, and the
    hi-res pass gives a 1.5x image."""
    from pathlib import Path

    from PIL import Image
    import io

    from real_width import CLIP_FULL, WIDE
    from workflow_format import shrink, ui_to_api

    client, base = addons
    wf = json.loads((Path(__file__).parents[2] / "workflows" / f"{name}.json").read_text())
    prompt = shrink(ui_to_api(wf, object_info))
    for node in prompt.values():
        inp, cls = node["inputs"], node["class_type"]
        if cls == "NexusGenDecoderLoader":
            inp["decoder"] = WIDE
        if cls == "NexusGenTextEncoderLoader":
            inp["clip_l"] = CLIP_FULL
        if cls == "LoraLoaderModelOnly":  # the example LoRA is in the diffusers layout
            inp["lora_name"] = ensure_lora(base, "diffusers")
    entry = client.run(prompt, wf, timeout=900)
    assert entry["status"]["status_str"] == "success", json.dumps(messages(entry).get("execution_error", {}))[:3000]
    images = [img for out in entry["outputs"].values() for img in out.get("images", [])]
    scale = 1.5 if "hires" in name else 1
    assert [Image.open(io.BytesIO(client.image(ref))).size for ref in images] == [(int(128 * scale), int(96 * scale))]
