"""Text -> image, image + instruction -> image, image -> variation: the stages wired together.

On a GPU each stage runs on the device and is moved back to the CPU when done (offload=True), so peak GPU
memory is the largest stage (AR, or DiT) rather than their sum.
"""
from __future__ import annotations

import contextlib
import logging
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable

import torch

from .decoder import GENERATION, LoadedDecoder, initial_noise, load_decoder, sample, sigmas
from .decoder.ids import zero_text_ids
from .decoder.sampler import Conditioning
from .errors import NexusError
from .files.atomic import atomic_write
from .flux.files import resolve_flux
from .flux.text_encoders import TextEncoders
from .flux.vae import decode_latents, load_vae, to_uint8
from .memory.offload import check_mode, on_device
from .settings.defaults import DEFAULTS
from .settings.validate import (MAX_SIDE, check_cfg, check_guidance, check_image_suffix, check_output, check_seed,
                                check_size, check_steps, check_text, as_utf8)

log = logging.getLogger(__name__)


@dataclass
class DecodeSettings:
    width: int = 512
    height: int = 512
    steps: int = 50
    cfg: float = 3.0
    negative: str = ""
    guidance: float = 3.5
    seed: int = 52
    max_side: int = MAX_SIDE

    def check(self) -> "DecodeSettings":
        """Every value in range (NexusError naming the first that is not); cheap, call before loading."""
        check_size(self.width, self.height, self.max_side)
        check_steps(self.steps)
        check_cfg(self.cfg)
        check_guidance(self.guidance)
        check_seed(self.seed)
        check_text(self.negative, "negative")
        return self

    def rounded(self) -> "DecodeSettings":
        """Checked, with sizes rounded up to multiples of 16 like the reference (and said so)."""
        self.check()
        w, h = -(-self.width // 16) * 16, -(-self.height // 16) * 16
        if (w, h) != (self.width, self.height):
            log.warning("size %dx%d rounded up to %dx%d (multiples of 16)", self.width, self.height, w, h)
        return replace(self, width=w, height=h)


@dataclass
class Timings:
    stages: dict = field(default_factory=dict)

    @contextlib.contextmanager
    def stage(self, name: str):
        t = time.perf_counter()
        try:
            yield
        finally:
            if torch.cuda.is_available():
                torch.cuda.synchronize()
            self.stages[name] = self.stages.get(name, 0.0) + time.perf_counter() - t


def negative_conditioning(text: TextEncoders, negative: str) -> Conditioning:
    """The reference's CFG negative: T5(negative) padded to 512 tokens, no mask, zero ids, pooled CLIP-L."""
    ctx = text.t5(negative)
    return Conditioning(ctx, text.clip_pooled(negative), zero_text_ids(ctx.shape[1]))


def decode_embeddings(decoder: LoadedDecoder, text: TextEncoders, vae, embeds: torch.Tensor,
                      settings: DecodeSettings, reference: torch.Tensor | None = None, device="cpu",
                      offload="model", on_step: Callable | None = None, should_stop: Callable | None = None,
                      timings: Timings | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Embeddings (B, 81, D) -> (uint8 images (B, H, W, 3), latents (B, 16, H/8, W/8)). offload: none | model |
    sequential (see nexus_core.memory.offload)."""
    offload = check_mode(offload)
    s = settings.rounded()
    timings = timings or Timings()
    decoder.check_embeddings(embeds)
    if s.cfg != 1.0 and not text.has_t5:
        raise NexusError(f"cfg={s.cfg} needs the T5-XXL text encoder for the negative branch, but none was "
                         "given; use cfg 1 or provide text_encoder_2/ + tokenizer_2/ (or a t5xxl file)")
    dtype = decoder.dit.dtype
    with timings.stage("text encoders"):
        pooled = text.clip_pooled("")
        neg = negative_conditioning(text, s.negative) if s.cfg != 1.0 else None
        if neg is not None and offload != "none":
            text.unload_t5()  # 9.5 GB on the real model; its encodings are cached
    with timings.stage("projector"), on_device([decoder.projector], device, offload):
        pos = decoder.positive(embeds.to(device), pooled.to(device), s.height, s.width,
                               None if reference is None else reference.to(device), dtype)
    noise = initial_noise(embeds.shape[0], s.height, s.width, s.seed).to(device, dtype)
    with timings.stage("DiT sampling"), on_device([decoder.dit], device, offload):
        latents = sample(decoder.dit, noise, sigmas(s.steps), pos, neg, s.cfg, s.guidance, on_step, should_stop)
    with timings.stage("VAE decode"), on_device([vae], device, offload):
        images = to_uint8(decode_latents(vae, latents))
    return images, latents.float().cpu()


def latents_metadata(latents: torch.Tensor, vae, kind: str, settings: DecodeSettings, prompts=(),
                     replies=()) -> dict:
    """What a saved latents file holds, in a fixed order: content and layout first, then how it was made."""
    from .flux.vae import latent_factors

    scale, shift = latent_factors(vae)
    return {
        "kind": "latents",
        "holds": "FLUX latents of the generated images after the last sampling step, before the VAE; "
                 "image = vae.decode(latents / scaling_factor + shift_factor)",
        "shape": list(latents.shape),
        "layout": "batch, channels, height/8, width/8",
        "dtype": str(latents.dtype).replace("torch.", ""),
        "scaling_factor": scale,
        "shift_factor": shift,
        "decoder": kind,
        "width": latents.shape[-1] * 8,  # as decoded, after rounding up to multiples of 16
        "height": latents.shape[-2] * 8,
        "steps": settings.steps,
        "cfg": settings.cfg,
        "guidance": settings.guidance,
        "seed": str(settings.seed),  # a string: JSON readers lose precision above 2**53
        "negative": settings.negative,
        "prompts": list(prompts),
        "replies": list(replies),
    }


def load_flux(flux_dir, dtype=torch.float32, device="cpu", offload="model") -> tuple[TextEncoders, torch.nn.Module]:
    """CLIP-L/T5 (loaded when first used) and the AE. With offload 'sequential' the text encoders stay in CPU
    memory and stream to `device` layer by layer."""
    files = resolve_flux(flux_dir)
    device = torch.device(device)
    prepare = _streamer(device) if check_mode(offload) == "sequential" and device.type != "cpu" else None
    enc_device = "cpu" if prepare is not None else device
    return TextEncoders(files.clip, files.clip_tokenizer, files.t5, files.t5_tokenizer, dtype, enc_device,
                        prepare=prepare), load_vae(files.vae, dtype, device)


def _streamer(device):
    from .memory.offload import stream_layers

    def prepare(name, module):
        stream_layers(module, device)
        return device
    return prepare


def default_decoder_path(model_dir, kind: str) -> Path:
    """The decoder beside the AR: in its folder, or beside a single-file AR."""
    stem = "generation_decoder" if kind == GENERATION else "edit_decoder"
    model_dir = Path(model_dir).parent if Path(model_dir).is_file() else Path(model_dir)
    for name in (f"{stem}.safetensors", f"{stem}.bin"):
        if (Path(model_dir) / name).is_file():
            return Path(model_dir) / name
    raise NexusError(f"No {kind} decoder in {model_dir}: expected {stem}.bin (or a converted {stem}.safetensors); "
                     "pass --decoder FILE")


def save_png(images: torch.Tensor, out, metadata: dict | None = None) -> list[Path]:
    from PIL import Image
    from PIL.PngImagePlugin import PngInfo

    out = Path(out)
    if not out.parent.is_dir():
        raise NexusError(f"Output folder does not exist: {out.parent}")
    fmt = check_image_suffix(out)
    info = PngInfo()
    for k, v in (metadata or {}).items():
        info.add_text(k, as_utf8(v))  # latin-1 as tEXt, anything else as UTF-8 iTXt
    paths = []
    names = [out] if len(images) == 1 else [out.with_name(f"{out.stem}_{i}{out.suffix}") for i in range(len(images))]
    for name in names:  # every name checked before the first file is written
        check_output(name, "output", image=True)
    for p, img in zip(names, images):
        with atomic_write(p) as tmp:  # the temp name has no image suffix: give PIL the format
            Image.fromarray(img.numpy()).save(tmp, format=fmt, pnginfo=info)
        paths.append(p)
    return paths


__all__ = ["DEFAULTS", "DecodeSettings", "Timings", "decode_embeddings", "default_decoder_path", "latents_metadata",
           "load_decoder", "load_flux", "negative_conditioning", "on_device", "save_png"]
