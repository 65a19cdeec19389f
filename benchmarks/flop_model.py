"""FLOP and byte model of every Nexus-Gen stage at full size, counted exactly on the meta device (no GPU, no
memory), with the floor times they imply on a given card (defaults: H100 SXM's dense bf16 peak and HBM bandwidth;
the GPU benchmark measures the real peak). Run: python benchmarks/flop_model.py [--tflops 989 --tbps 3.35]
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, str(Path(__file__).resolve().parent))
from gpu_pipeline import AE, CLIP_L, FLUX_DIT, QWEN_7B, T5_XXL  # noqa: E402

BF16 = torch.bfloat16


def count(fn) -> float:
    with FlopCounterMode(display=False) as fc:
        fn()
    return float(fc.get_total_flops())


def nbytes(module, dtype_bytes=2) -> int:
    return sum(p.numel() for p in module.parameters()) * dtype_bytes


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--tflops", type=float, default=989.0, help="dense bf16 peak of the card (TFLOP/s)")
    p.add_argument("--tbps", type=float, default=3.35, help="memory bandwidth of the card (TB/s)")
    p.add_argument("--steps", type=int, default=50)
    a = p.parse_args(argv)
    from diffusers import AutoencoderKL, FluxTransformer2DModel
    from transformers import CLIPTextConfig, CLIPTextModel, Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration
    from transformers import T5Config, T5EncoderModel

    rows = []
    with torch.device("meta"):
        qwen = Qwen2_5_VLForConditionalGeneration(Qwen2_5_VLConfig(**QWEN_7B)).to(BF16)
        lm, head = qwen.model.language_model, qwen.lm_head
        w_lm = nbytes(lm) - lm.embed_tokens.weight.numel() * 2 + nbytes(head)  # bytes read per decoding step

        def ar(n):
            h = lm(inputs_embeds=torch.randn(1, n, 3584, dtype=BF16), use_cache=False).last_hidden_state
            head(h[:, -1:])

        rows.append(("AR prefill, 60 tokens", count(lambda: ar(60)), w_lm, 1))
        rows.append(("AR decode, per token (weights-bound)", count(lambda: ar(1)), w_lm, 1))
        rows.append(("AR image span, one forward (83 tokens)", count(lambda: ar(83)), w_lm, 1))
        rows.append(("AR image span, reference loop (83 steps)", 83 * count(lambda: ar(1)), 83 * w_lm, 1))
        t5 = T5EncoderModel(T5Config(**T5_XXL)).to(BF16)
        rows.append(("T5-XXL, 512 tokens (CFG negative; cached)", count(lambda: t5(torch.zeros(1, 512, dtype=torch.long))),
                     nbytes(t5), 1))
        clip = CLIPTextModel(CLIPTextConfig(**CLIP_L)).to(BF16)
        rows.append(("CLIP-L pooled (cached)", count(lambda: clip(torch.zeros(1, 77, dtype=torch.long))), nbytes(clip), 1))
        dit = FluxTransformer2DModel(**FLUX_DIT).to(BF16)
        w_dit = nbytes(dit)

        def dit_pass(size, ctx):
            n = (size // 16) ** 2
            dit(torch.randn(1, n, 64, dtype=BF16), torch.randn(1, ctx, 4096, dtype=BF16), torch.randn(1, 768, dtype=BF16),
                torch.tensor([0.5]), torch.zeros(n, 3), torch.zeros(ctx, 3), torch.tensor([3.5]), return_dict=False)

        per_pass = {}
        for size in (512, 1024):
            for ctx, what in ((81, "positive (81 ctx)"), (512, "CFG negative (512 ctx)")):
                per_pass[(size, ctx)] = count(lambda: dit_pass(size, ctx))
                rows.append((f"DiT pass {size}^2, {what}", per_pass[(size, ctx)], w_dit, 1))
        per_pass[(512, 405)] = count(lambda: dit_pass(512, 405))
        rows.append(("DiT pass 512^2, editing (405 ctx)", per_pass[(512, 405)], w_dit, 1))
        vae = AutoencoderKL(**AE).to(BF16)
        for size in (512, 1024):
            rows.append((f"VAE decode {size}^2", count(lambda: vae.decode(torch.randn(1, 16, size // 8, size // 8,
                                                                                      dtype=BF16))), nbytes(vae), 1))
    s = a.steps
    rows += [
        (f"generation 512^2: {s} steps, cfg 3", s * (per_pass[(512, 81)] + per_pass[(512, 512)]), s * 2 * w_dit, 0),
        (f"generation 1024^2: {s} steps, cfg 3", s * (per_pass[(1024, 81)] + per_pass[(1024, 512)]), s * 2 * w_dit, 0),
        (f"editing 512^2: {s} steps, cfg 1", s * per_pass[(512, 405)], s * w_dit, 0),
    ]
    peak, bw = a.tflops * 1e12, a.tbps * 1e12
    print(f"Full-size FLOP model (exact counts on the meta device); floors at {a.tflops:g} TFLOP/s and {a.tbps:g} TB/s")
    print("| stage | TFLOP | weight bytes read (GB) | compute floor | bandwidth floor | at 70 % MFU |")
    print("|---|---|---|---|---|---|")
    for name, fl, by, _ in rows:
        cf, bf = fl / peak, by / bw
        print(f"| {name} | {fl / 1e12:.3g} | {by / 1e9:.3g} | {_ms(cf)} | {_ms(bf)} | {_ms(max(fl / (0.7 * peak), bf))} |")
    print(f"\nweights (bf16): AR LM {w_lm / 2**30:.1f} GiB, DiT {w_dit / 2**30:.1f} GiB "
          f"(fp8 storage: {w_dit / 2**31:.1f} GiB), T5 {nbytes(t5) / 2**30:.1f} GiB, VAE {nbytes(vae) / 2**30:.2f} GiB")
    return 0


def _ms(seconds: float) -> str:
    return f"{seconds * 1e3:.1f} ms" if seconds < 10 else f"{seconds:.1f} s"


if __name__ == "__main__":
    sys.exit(main())
