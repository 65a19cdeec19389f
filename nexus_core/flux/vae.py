"""The FLUX autoencoder via diffusers' AutoencoderKL, from a diffusers `vae/` folder or the BFL `ae.safetensors`
(config derived from the tensor shapes, so no network and any size works)."""
from __future__ import annotations

import re
from pathlib import Path

import torch

from ..errors import NexusError
from ..files.safetensors_check import tensor_names
from ..loading.meta_init import from_state

FLUX_SCALE, FLUX_SHIFT = 0.3611, 0.1159


def vae_config_from_bfl(sd) -> dict:
    def count(pattern):
        idx = {int(m.group(1)) for k in sd if (m := re.match(pattern, k))}
        return max(idx) + 1 if idx else 0

    if "encoder.conv_in.weight" not in sd or "decoder.conv_in.weight" not in sd:
        raise NexusError("not a BFL/LDM autoencoder state dict (no encoder.conv_in / decoder.conv_in)")
    levels = count(r"encoder\.down\.(\d+)\.")
    chans = [sd[f"encoder.down.{i}.block.0.conv2.weight"].shape[0] for i in range(levels)]
    return dict(in_channels=sd["encoder.conv_in.weight"].shape[1], out_channels=sd["decoder.conv_out.weight"].shape[0],
                down_block_types=["DownEncoderBlock2D"] * levels, up_block_types=["UpDecoderBlock2D"] * levels,
                block_out_channels=chans, layers_per_block=count(r"encoder\.down\.0\.block\.(\d+)\."),
                latent_channels=sd["decoder.conv_in.weight"].shape[1], norm_num_groups=32,
                use_quant_conv="quant_conv.weight" in sd, use_post_quant_conv="post_quant_conv.weight" in sd,
                scaling_factor=FLUX_SCALE, shift_factor=FLUX_SHIFT, mid_block_add_attention=True,
                act_fn="silu", sample_size=1024, force_upcast=True)


def load_vae(source, dtype=torch.float32, device="cpu"):
    from diffusers import AutoencoderKL

    source = Path(source)
    if source.is_dir():
        if not (source / "config.json").is_file():
            raise NexusError(f"VAE folder {source} has no config.json")
        return AutoencoderKL.from_pretrained(str(source), torch_dtype=dtype, local_files_only=True).to(device).eval()
    from diffusers.loaders.single_file_utils import convert_ldm_vae_checkpoint
    from safetensors.torch import load_file

    tensor_names(source)
    sd = load_file(str(source))
    cfg = vae_config_from_bfl(sd)
    vae = from_state(lambda: AutoencoderKL(**cfg), convert_ldm_vae_checkpoint(sd, cfg), dtype,
                     f"{source} does not fit a FLUX autoencoder")
    return vae.to(device).eval()


def latent_factors(vae) -> tuple[float, float]:
    cfg = vae.config
    return (getattr(cfg, "scaling_factor", None) or FLUX_SCALE), (getattr(cfg, "shift_factor", None) or FLUX_SHIFT)


@torch.inference_mode()
def decode_latents(vae, latents: torch.Tensor) -> torch.Tensor:
    """Latents (B, 16, h, w) -> float image in [-1, 1] (B, 3, H, W), before clipping (the reference's vae_output)."""
    scale, shift = latent_factors(vae)
    z = latents.to(vae.dtype) / scale + shift
    return vae.decode(z).sample.float()


def to_uint8(images: torch.Tensor) -> torch.Tensor:
    """The reference's conversion: ((x/2+0.5).clip(0,1)*255) truncated. (B,3,H,W) -> (B,H,W,3) uint8."""
    x = ((images / 2 + 0.5).clamp(0, 1) * 255).to(torch.uint8)
    return x.permute(0, 2, 3, 1).cpu()
