"""VRAM presets: which storage and device to choose per card size, with PREDICTED peak VRAM and time per image.

Weight bytes are exact: every full-size model (Qwen2.5-VL-7B + the Nexus tensors, the 12B FLUX DiT, T5-XXL, CLIP-L,
the AE) is built on the meta device and its tensors are counted in each storage format (fp8 = 1 byte per Linear
weight + per-row scales; GGUF Q8_0 = 34 bytes per 32 weights, Q4_0 = 18; norms, biases and embeddings 16-bit).
Everything else is a model, stated here and in the output, to be replaced by measurements on a GPU:
  * ComfyUI keeps one big model at a time when VRAM is short; a model that doesn't fit is loaded partially and the
    rest streamed over PCIe every pass (that is what the cast-on-demand layers allow);
  * activations + CUDA context: 1.2 GB at 512^2, 2.5 GB at 1024^2 (VAE decode dominates at 1024^2);
  * time = DiT FLOPs / (card's dense bf16 TFLOP/s x 45 %) + streamed bytes / 20 GB/s per pass, plus the AR (its
    weights read once per reply token, from VRAM or over PCIe) and the VAE.
Run: python benchmarks/vram_presets.py
"""
from __future__ import annotations

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from gpu_pipeline import AE, CLIP_L, FLUX_DIT, QWEN_7B, T5_XXL  # noqa: E402

GB = 1e9
PCIE = 20e9  # effective host->GPU bytes/s (PCIe 4.0 x16)
MFU = 0.45
STEPS, REPLY_TOKENS = 50, 16
# (VRAM GB, example card, the card's FP32 TFLOP/s (the rate this model assumes for bf16 work), VRAM TB/s). Time
# follows the card, not its VRAM: the 16 GB example is the 4070's bigger sibling, so rows do not read as "more VRAM,
# slower" (a 4060 Ti 16 GB, 22 TFLOP/s, would sit between the 8 and 12 GB rows).
CARDS = [(8, "RTX 4060", 15, 0.27), (12, "RTX 4070", 29, 0.5), (16, "RTX 4070 Ti SUPER", 44, 0.67),
         (24, "RTX 4090", 83, 1.0), (48, "RTX 6000 Ada", 91, 0.96)]
# per card: (AR weights, AR device, DiT weights, negative's T5)
PRESETS = {8: ("fp8_e4m3fn", "default (streamed)", "GGUF Q4_0", "t5xxl fp8 via DualCLIPLoader"),
           12: ("fp8_e4m3fn", "default (streamed)", "fp8_e4m3fn (streamed) or GGUF Q4_0",
                "t5xxl fp8 via DualCLIPLoader"),
           16: ("fp8_e4m3fn", "default", "fp8_e4m3fn", "t5xxl fp8 via DualCLIPLoader"),
           24: ("default (bf16)", "default", "fp8_e4m3fn", "t5xxl_fp16 (pack or native)"),
           48: ("default (bf16)", "default", "default (bf16)", "t5xxl_fp16 (pack or native)")}
ACTIVATIONS = {512: 1.2 * GB, 1024: 2.5 * GB}


def tensor_bytes(module: torch.nn.Module, linear_bytes: float) -> float:
    """Bytes with every nn.Linear weight at `linear_bytes` per value (+ 4-byte row scales below 2) and the rest bf16."""
    total = 0.0
    for m in module.modules():
        for name, p in m.named_parameters(recurse=False):
            if isinstance(m, torch.nn.Linear) and name == "weight":
                total += p.numel() * linear_bytes + (p.shape[0] * 4 if linear_bytes < 2 else 0)
            else:
                total += p.numel() * 2
    return total


def models():
    from diffusers import AutoencoderKL, FluxTransformer2DModel
    from torch.utils.flop_counter import FlopCounterMode
    from transformers import CLIPTextConfig, CLIPTextModel, Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration
    from transformers import T5Config, T5EncoderModel

    with torch.device("meta"):
        qwen = Qwen2_5_VLForConditionalGeneration(Qwen2_5_VLConfig(**QWEN_7B))
        qwen.vision_head = torch.nn.Linear(3584, 3584, bias=False)
        qwen.image_prefill_embeds = torch.nn.Embedding(81, 3584)
        dit = FluxTransformer2DModel(**FLUX_DIT)
        t5 = T5EncoderModel(T5Config(**T5_XXL))
        clip = CLIPTextModel(CLIPTextConfig(**CLIP_L))
        vae = AutoencoderKL(**AE)

        def dit_flops(size, ctx):
            n = (size // 16) ** 2
            with FlopCounterMode(display=False) as fc:
                dit(torch.randn(1, n, 64), torch.randn(1, ctx, 4096), torch.randn(1, 768), torch.tensor([0.5]),
                    torch.zeros(n, 3), torch.zeros(ctx, 3), torch.tensor([3.5]), return_dict=False)
            return float(fc.get_total_flops())

        flops = {s: dit_flops(s, 81) + dit_flops(s, 512) for s in (512, 1024)}  # positive + CFG negative
    ar = {"default (bf16)": tensor_bytes(qwen, 2), "fp8_e4m3fn": tensor_bytes(qwen, 1)}
    d = {"default (bf16)": tensor_bytes(dit, 2), "fp8_e4m3fn": tensor_bytes(dit, 1),
         "GGUF Q8_0": tensor_bytes(dit, 34 / 32), "GGUF Q4_0": tensor_bytes(dit, 18 / 32)}
    return ar, d, tensor_bytes(t5, 2), tensor_bytes(t5, 1), tensor_bytes(clip, 2), tensor_bytes(vae, 2), flops


def dit_bytes(choice: str, d: dict) -> float:
    first = choice.split(" /")[0].replace(" (streamed)", "")
    return d.get(first, d["fp8_e4m3fn"])


def predicted(vram: int, tflops: float, tbps: float, ar: dict, d: dict, flops: dict) -> dict:
    """{size: (peak VRAM bytes, streams?, seconds per image)} of the preset for a card (the model above)."""
    ar_choice, _ar_dev, dit_choice, _t5 = PRESETS[vram]
    ar_w, dit_w = ar[ar_choice], dit_bytes(dit_choice, d)
    out = {}
    for size in (512, 1024):
        budget = vram * GB - ACTIVATIONS[size]
        resident_dit = min(dit_w, budget)
        streamed_dit = dit_w - resident_dit
        resident_ar = min(ar_w, budget)
        streamed_ar = ar_w - resident_ar
        peak = max(resident_dit, resident_ar) + ACTIVATIONS[size]
        t_dit = STEPS * (flops[size] / (tflops * 1e12 * MFU) + 2 * streamed_dit / PCIE)
        t_ar = (REPLY_TOKENS + 1) * (resident_ar / (tbps * 1e12) + streamed_ar / PCIE)
        t_load = dit_w / PCIE * (streamed_dit == 0) + ar_w / PCIE * (streamed_ar == 0)  # swap in once per image
        out[size] = (peak, bool(streamed_dit or streamed_ar), t_dit + t_ar + t_load)
    return out


def main(argv=None):
    ar, d, t5_16, t5_8, clip, vae, flops = models()
    print("Weights (exact, meta device):")
    for k, v in ar.items():
        print(f"  AR (Qwen2.5-VL-7B + Nexus tensors) {k}: {v / GB:.1f} GB")
    for k, v in d.items():
        print(f"  DiT (12B) {k}: {v / GB:.1f} GB")
    print(f"  T5-XXL bf16 {t5_16 / GB:.1f} GB, fp8 {t5_8 / GB:.1f} GB; CLIP-L {clip / GB:.2f} GB; AE {vae / GB:.2f} GB")
    print(f"  DiT FLOPs per step (positive + CFG negative): 512^2 {flops[512] / 1e12:.1f} TFLOP, "
          f"1024^2 {flops[1024] / 1e12:.1f} TFLOP")
    print("\nVRAM presets (PREDICTED; generation with the reference's settings: 50 steps, cfg 3):")
    print("| VRAM | e.g. (FP32 TFLOP/s) | AR weight_dtype / device | DiT | T5 for the negative | peak VRAM 512² "
          "(predicted) | peak VRAM 1024² (predicted) | s/image 512² (predicted) | s/image 1024² (predicted) |")
    print("|---|---|---|---|---|---|---|---|---|")
    for vram, card, tflops, tbps in CARDS:
        ar_choice, ar_dev, dit_choice, t5_choice = PRESETS[vram]
        rows = predicted(vram, tflops, tbps, ar, d, flops)
        cells = [f"{rows[s][0] / GB:.1f} GB" + (" (streams)" if rows[s][1] else "") for s in (512, 1024)]
        times = [f"{rows[s][2]:.0f}" for s in (512, 1024)]
        print(f"| {vram} GB | {card} ({tflops}) | {ar_choice} / {ar_dev} | {dit_choice} | {t5_choice} | {cells[0]} "
              f"| {cells[1]} | {times[0]} | {times[1]} |")
    print("\nAssumptions: 45 % of the card's dense bf16 peak, 20 GB/s over PCIe, AR and DiT swapped once per image "
          "(ComfyUI keeps both when they fit, then the swap time drops out), T5 encodes once and is cached.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
