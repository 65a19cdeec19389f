"""Full-size Nexus-Gen pipeline on a GPU with random weights: time, FLOPs, memory per stage, next to the floor.

Builds the real architectures (Qwen2.5-VL-7B + the two Nexus tensors, the 12B FLUX DiT with 19 double / 38 single
blocks, the FLUX AE, CLIP-L, T5-XXL) with random weights directly on the device and measures what nexus_core runs:
    python benchmarks/gpu_pipeline.py --device cuda [--repeats 5] [--json out.json] [--compile] [--fuse-qkv]
    python benchmarks/gpu_pipeline.py --small --device cpu     # the same code at toy sizes (checks the script)
Each stage's FLOPs are counted by torch's FlopCounterMode on one run; the table shows time, achieved TFLOP/s and
the fraction of the measured bf16 matmul peak (MFU), or of the measured copy bandwidth for memory-bound stages.
Timing: warm-up first, CUDA events around each region, median of the repeats (min/max in the JSON).
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from contextlib import contextmanager

import torch

# ---------------------------------------------------------------------------- configs (full size and toy size)
QWEN_7B = dict(hidden_size=3584, intermediate_size=18944, num_hidden_layers=28, num_attention_heads=28,
               num_key_value_heads=4, vocab_size=152064, rms_norm_eps=1e-6, rope_theta=1e6, max_position_embeddings=128000,
               rope_scaling={"type": "default", "rope_type": "default", "mrope_section": [16, 24, 24]},
               vision_config=dict(depth=32, hidden_size=1280, intermediate_size=3420, num_heads=16, out_hidden_size=3584,
                                  fullatt_block_indexes=[7, 15, 23, 31], window_size=112, tokens_per_second=2),
               image_token_id=151655, vision_start_token_id=151652, vision_end_token_id=151653,
               tie_word_embeddings=False)
QWEN_TOY = dict(QWEN_7B, hidden_size=128, intermediate_size=256, num_hidden_layers=2, num_attention_heads=4,
                num_key_value_heads=2, vocab_size=151680,
                rope_scaling={"type": "default", "rope_type": "default", "mrope_section": [4, 6, 6]},
                vision_config=dict(depth=2, hidden_size=32, intermediate_size=64, num_heads=2, out_hidden_size=128,
                                   fullatt_block_indexes=[1], window_size=112, tokens_per_second=2))
FLUX_DIT = dict(patch_size=1, in_channels=64, num_layers=19, num_single_layers=38, attention_head_dim=128,
                num_attention_heads=24, joint_attention_dim=4096, pooled_projection_dim=768, guidance_embeds=True,
                axes_dims_rope=(16, 56, 56))
FLUX_TOY = dict(FLUX_DIT, num_layers=1, num_single_layers=1, num_attention_heads=2, joint_attention_dim=64,
                pooled_projection_dim=32)
AE = dict(block_out_channels=[128, 256, 512, 512], latent_channels=16, layers_per_block=2, norm_num_groups=32,
          down_block_types=["DownEncoderBlock2D"] * 4, up_block_types=["UpDecoderBlock2D"] * 4,
          use_quant_conv=False, use_post_quant_conv=False, scaling_factor=0.3611, shift_factor=0.1159)
AE_TOY = dict(AE, block_out_channels=[32, 32, 32, 32])
CLIP_L = dict(vocab_size=49408, hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12,
              max_position_embeddings=77, hidden_act="quick_gelu", eos_token_id=2)
CLIP_TOY = dict(CLIP_L, hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=1)
T5_XXL = dict(vocab_size=32128, d_model=4096, d_kv=64, d_ff=10240, num_layers=24, num_heads=64,
              feed_forward_proj="gated-gelu", is_encoder_decoder=False)
T5_TOY = dict(T5_XXL, d_model=64, d_kv=16, d_ff=128, num_layers=1, num_heads=4)


def build(cls_factory, device, dtype, std=0.02):
    """Instantiate on the meta device, then allocate on `device` and fill with random values (fast, no CPU copy)."""
    with torch.device("meta"):
        model = cls_factory()
    model = model.to_empty(device=device).to(dtype)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.dim() > 1:
                p.normal_(0, std)
            elif "norm" in name or "ln" in name or name.endswith("scale"):
                p.fill_(1.0)
            else:
                p.zero_()
        # Computed buffers were never filled on the meta device: recompute the ones the measured stages use
        # (the LM's rotary table, CLIP's position ids). The vision tower's rotary is left as allocated: the
        # benchmark never runs the vision tower.
        for name, b in model.named_buffers():
            if "inv_freq" in name and hasattr(model.get_submodule(name.rsplit(".", 1)[0]), "config"):
                mod = model.get_submodule(name.rsplit(".", 1)[0])
                mod.inv_freq = type(mod)(config=mod.config).inv_freq.to(device)
            elif name.endswith("position_ids"):
                b.copy_(torch.arange(b.shape[-1], device=device).expand_as(b))
    return model.eval().requires_grad_(False)


# ----------------------------------------------------------------------------------------------- measurement
class Meter:
    def __init__(self, device):
        self.device = torch.device(device)
        self.cuda = self.device.type == "cuda"

    def sync(self):
        if self.cuda:
            torch.cuda.synchronize()

    def time(self, fn, repeats: int, warmup: int = 1) -> dict:
        for _ in range(warmup):
            fn()
        self.sync()
        times = []
        for _ in range(repeats):
            if self.cuda:
                a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                a.record()
                fn()
                b.record()
                torch.cuda.synchronize()
                times.append(a.elapsed_time(b) / 1e3)
            else:
                t = time.perf_counter()
                fn()
                times.append(time.perf_counter() - t)
        return {"median_s": statistics.median(times), "min_s": min(times), "max_s": max(times), "n": len(times)}

    @contextmanager
    def peak(self, out: dict, key: str):
        if self.cuda:
            torch.cuda.reset_peak_memory_stats()
        yield
        if self.cuda:
            out[key] = torch.cuda.max_memory_allocated() / 2**30


def flops_of(fn) -> float:
    from torch.utils.flop_counter import FlopCounterMode
    with FlopCounterMode(display=False) as fc:
        fn()
    return float(fc.get_total_flops())


def matmul_peak(device, dtype, n: int) -> float:
    m = Meter(device)
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    t = m.time(lambda: a @ b, 10, 3)["median_s"]
    return 2 * n ** 3 / t


def copy_bandwidth(device, n_bytes: int) -> float:
    m = Meter(device)
    src = torch.empty(n_bytes, dtype=torch.uint8, device=device)
    dst = torch.empty_like(src)
    t = m.time(lambda: dst.copy_(src), 10, 3)["median_s"]
    return 2 * n_bytes / t  # read + write


# ----------------------------------------------------------------------------------------------------- stages
def run(a) -> dict:
    from diffusers import AutoencoderKL, FluxTransformer2DModel
    from transformers import CLIPTextConfig, CLIPTextModel, Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration
    from transformers import T5Config, T5EncoderModel

    from nexus_core.ar import DecodeOptions, NexusAR, decode
    from nexus_core.decoder.ids import editing_text_ids, zero_text_ids
    from nexus_core.decoder.projectors import Adapter
    from nexus_core.decoder.sampler import Conditioning, initial_noise, sample
    from nexus_core.decoder.schedule import sigmas
    from nexus_core.flux.vae import decode_latents

    dev, dt = torch.device(a.device), torch.bfloat16 if a.device != "cpu" else torch.float32
    small = a.small
    m = Meter(dev)
    res = {"device": torch.cuda.get_device_name() if m.cuda else "cpu", "dtype": str(dt), "small": small,
           "stages": {}, "peaks_gib": {}}
    n_peak = 2048 if small else 8192
    res["matmul_peak_tflops"] = matmul_peak(dev, dt, n_peak) / 1e12
    res["copy_gbps"] = copy_bandwidth(dev, (64 if small else 2048) * 2**20) / 1e9

    def stage(name, fn, bytes_floor=None, repeats=a.repeats, count=True):
        entry = {"flops": flops_of(fn) if count else None}
        with m.peak(res["peaks_gib"], name):
            entry.update(m.time(fn, repeats))
        entry["tflops"] = entry["flops"] / entry["median_s"] / 1e12 if entry["flops"] else None
        entry["mfu"] = entry["tflops"] / res["matmul_peak_tflops"] if entry["tflops"] else None
        if bytes_floor:
            entry["bytes_floor"] = bytes_floor
            entry["bw_util"] = bytes_floor / entry["median_s"] / (res["copy_gbps"] * 1e9)
        res["stages"][name] = entry
        print(f"  {name}: {entry['median_s'] * 1e3:.1f} ms", file=sys.stderr, flush=True)
        return entry

    # --- AR: prompt prefill, reply tokens, the image span (one forward vs the reference's 81 steps)
    qcfg = Qwen2_5_VLConfig(**(QWEN_TOY if small else QWEN_7B))
    ar_model = build(lambda: Qwen2_5_VLForConditionalGeneration(qcfg), dev, dt)
    d = qcfg.text_config.hidden_size
    ar = NexusAR.from_parts(ar_model, torch.randn(d, d, device=dev, dtype=dt) / d ** 0.5,
                            torch.randn(81, d, device=dev, dtype=dt) * 0.02,
                            {"eos_token_id": [151645, 151643], "pad_token_id": 151643})
    weights_ar = sum(p.numel() * p.element_size() for p in ar_model.model.language_model.parameters())
    prompt = torch.randint(0, 150000, (60,)).tolist()
    span = lambda mode: decode(ar, prompt, opts=DecodeOptions(want_image=True, max_new_tokens=83, span=mode,  # noqa
                                                              stop_after_image=True))
    stage("AR prefill (60 tokens)", lambda: decode(ar, prompt, opts=DecodeOptions(max_new_tokens=1)))
    stage("AR reply (prefill + 12 tokens)", lambda: decode(ar, prompt, opts=DecodeOptions(max_new_tokens=12)),
          bytes_floor=12 * weights_ar)
    stage("AR image span, one forward (+prefill)", lambda: span("single"))
    stage("AR image span, 81-step loop (+prefill)", lambda: span("stepwise"), bytes_floor=83 * weights_ar)
    if a.offload and m.cuda:
        ar_model.to("cpu")
        torch.cuda.empty_cache()

    # --- text encoders (CFG negative): T5-XXL at 512 tokens, CLIP-L pooled
    t5 = build(lambda: T5EncoderModel(T5Config(**(T5_TOY if small else T5_XXL))), dev, dt)
    clip = build(lambda: CLIPTextModel(CLIPTextConfig(**(CLIP_TOY if small else CLIP_L))), dev, dt)
    ids512, ids77 = torch.randint(0, 32000, (1, 512), device=dev), torch.randint(0, 49000, (1, 77), device=dev)
    stage("T5-XXL negative (512 tokens)", lambda: t5(ids512).last_hidden_state)
    stage("CLIP-L pooled", lambda: clip(ids77).pooler_output)
    neg_ctx, pooled = t5(ids512).last_hidden_state, clip(ids77).pooler_output
    t5 = None  # free T5-XXL (9 GB) before the DiT; its output is all the negative branch needs
    if m.cuda:
        torch.cuda.empty_cache()

    # --- DiT sampling: generation 512^2 / 1024^2 at cfg 3, editing 512^2 (405 context tokens) at cfg 1
    fcfg = FLUX_TOY if small else FLUX_DIT
    dit = build(lambda: FluxTransformer2DModel(**fcfg), dev, dt)
    if a.fuse_qkv:
        dit.fuse_qkv_projections()
    if a.fp8:
        dit.enable_layerwise_casting(storage_dtype=torch.float8_e4m3fn, compute_dtype=dt)
    if a.compile:
        for blk in list(dit.transformer_blocks) + list(dit.single_transformer_blocks):
            blk.compile()
    ctx_w = fcfg["joint_attention_dim"]
    adapter = Adapter(d, ctx_w).to(dev, dt)
    steps = 2 if small else a.steps
    gen_ctx = adapter(torch.randn(1, 81, d, device=dev, dtype=dt))
    pos_gen = Conditioning(gen_ctx, pooled, zero_text_ids(81, dt, dev))
    neg = Conditioning(neg_ctx[..., :ctx_w], pooled, zero_text_ids(512, dt, dev))
    sizes = [128] if small else [512, 1024]
    dit_bytes = sum(p.numel() * p.element_size() for p in dit.parameters())
    res["dit_weight_gib"] = dit_bytes / 2**30
    for size in sizes:
        noise = initial_noise(1, size, size, 0).to(dev, dt)
        one = lambda n=noise: sample(dit, n, sigmas(1), pos_gen, neg, 3.0, 3.5)  # noqa: E731
        stage(f"DiT step {size}^2, cfg 3 (2 passes)", one, repeats=max(a.repeats, 3))
        stage(f"DiT step {size}^2, cfg 1", lambda n=noise: sample(dit, n, sigmas(1), pos_gen), repeats=max(a.repeats, 3))
        stage(f"generation {size}^2: {steps} steps cfg 3", lambda n=noise: sample(dit, n, sigmas(steps), pos_gen, neg,
                                                                                    3.0, 3.5), repeats=1, count=False)
    edit_ctx = torch.randn(1, 405, ctx_w, device=dev, dtype=dt)
    pos_edit = Conditioning(edit_ctx, pooled, editing_text_ids(512, 512, dtype=dt, device=dev))
    e_size = 128 if small else 512
    noise = initial_noise(1, e_size, e_size, 0).to(dev, dt)
    stage(f"editing {e_size}^2: {steps} steps cfg 1 (405 ctx)", lambda: sample(dit, noise, sigmas(steps), pos_edit),
          repeats=1, count=False)
    if a.offload and m.cuda:
        dit.to("cpu")
        torch.cuda.empty_cache()

    # --- VAE decode
    vae = build(lambda: AutoencoderKL(**(AE_TOY if small else AE)), dev, dt)
    for size in sizes:
        lat = torch.randn(1, 16, size // 8, size // 8, device=dev, dtype=dt)
        stage(f"VAE decode {size}^2", lambda lat=lat: decode_latents(vae, lat))
    return res


def table(res: dict) -> str:
    rows = [f"\n{res['device']} ({res['dtype']}): bf16 matmul peak {res['matmul_peak_tflops']:.1f} TFLOP/s, "
            f"copy {res['copy_gbps']:.0f} GB/s{' (toy sizes)' if res['small'] else ''}",
            "| stage | median ms | TFLOP | TFLOP/s | MFU | bandwidth use | peak GiB |", "|---|---|---|---|---|---|---|"]
    for name, e in res["stages"].items():
        fl = f"{e['flops'] / 1e12:.3g}" if e.get("flops") else "-"
        tf = f"{e['tflops']:.1f}" if e.get("tflops") else "-"
        mfu = f"{e['mfu'] * 100:.0f} %" if e.get("mfu") else "-"
        bw = f"{e['bw_util'] * 100:.0f} %" if e.get("bw_util") else "-"
        pk = f"{res['peaks_gib'][name]:.1f}" if name in res["peaks_gib"] else "-"
        rows.append(f"| {name} | {e['median_s'] * 1e3:.1f} | {fl} | {tf} | {mfu} | {bw} | {pk} |")
    return "\n".join(rows)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--small", action="store_true", help="toy sizes (to check the script on a CPU)")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--steps", type=int, default=50)
    p.add_argument("--fp8", action="store_true", help="store DiT weights in float8_e4m3fn, compute in bf16")
    p.add_argument("--compile", action="store_true", help="torch.compile each DiT block")
    p.add_argument("--fuse-qkv", action="store_true", help="diffusers' fused QKV projections in the DiT")
    p.add_argument("--offload", action="store_true", help="move each finished model back to the CPU")
    p.add_argument("--json", default=None, help="write all numbers here")
    a = p.parse_args(argv)
    if a.device == "cpu" and not a.small:
        p.error("full sizes need a GPU; use --small to check the script on a CPU")
    res = run(a)
    res["args"] = vars(a)
    print(table(res))
    if a.json:
        with open(a.json, "w") as f:
            json.dump(res, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
