"""Routes that need FLUX's real widths, on a real-width synthetic decoder (DiT 3072 wide, 1 double + 1 single
block, context 4096, pooled 768) that every host's FLUX detection accepts:
  * the DiT as a Q8_0 GGUF through city96's ComfyUI-GGUF (UnetLoaderGGUF) + Nexus-Gen Model Patch and Projector
    Loader, against the same decoder in bf16 through Nexus-Gen Decoder Loader;
  * ComfyUI's own CLIP (CLIPLoader, a full-size random CLIP-L) instead of the pack's text encoders;
  * a GGUF MODEL whose widths don't match the projector is refused with a clear node error;
  * the AR with fp8 weights on the CPU device and the DiT in fp8 on the default device.
Mixing with LoRAs, Redux and ControlNet on this route: test_mixing_real_route.py."""
import pytest

from real_width import CLIP_FULL, WIDE, WIDE_GGUF, bf16_model, graph, native_text, pack_text, rel, run
from client import messages

pytestmark = pytest.mark.comfyui


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
    print(f"GGUF Q8_0 DiT vs bf16 DiT: max|diff| / max|bf16| = {r:.2e} (latents, 2 steps)")
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
