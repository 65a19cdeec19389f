"""Find the FLUX.1-dev subset Nexus-Gen needs (CLIP-L, T5-XXL, tokenizers, AE) in a folder.

Accepted: the diffusers folder form (text_encoder/, text_encoder_2/, tokenizer/, tokenizer_2/, vae/) or single
files (clip_l*.safetensors, t5xxl*.safetensors, ae.safetensors) next to tokenizer/ and tokenizer_2/ folders;
the reference's `{flux_path}/FLUX/FLUX.1-dev/` nesting is entered automatically. T5 is optional.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..errors import NexusError


@dataclass
class FluxFiles:
    clip: Path
    clip_tokenizer: Path
    vae: Path
    t5: Path | None = None
    t5_tokenizer: Path | None = None


def _first(folder: Path, *patterns) -> Path | None:
    for pat in patterns:
        hits = sorted(folder.glob(pat))
        if hits:
            return hits[0]
    return None


def resolve_flux(folder) -> FluxFiles:
    folder = Path(folder)
    if not folder.is_dir():
        raise NexusError(f"FLUX folder not found: {folder}")
    nested = folder / "FLUX" / "FLUX.1-dev"
    if nested.is_dir():
        folder = nested
    clip = folder / "text_encoder" if (folder / "text_encoder" / "config.json").is_file() else \
        _first(folder, "clip_l*.safetensors", "text_encoders/clip_l*.safetensors")
    t5 = folder / "text_encoder_2" if (folder / "text_encoder_2" / "config.json").is_file() else \
        _first(folder, "t5xxl*.safetensors", "text_encoders/t5xxl*.safetensors")
    vae = _first(folder, "ae.safetensors", "vae/ae.safetensors") or \
        (folder / "vae" if (folder / "vae" / "config.json").is_file() else None)
    clip_tok = folder / "tokenizer" if (folder / "tokenizer").is_dir() else None
    t5_tok = folder / "tokenizer_2" if (folder / "tokenizer_2").is_dir() else None
    missing = [name for name, p in [("CLIP-L (text_encoder/ or clip_l*.safetensors)", clip),
                                    ("CLIP tokenizer (tokenizer/)", clip_tok),
                                    ("FLUX autoencoder (ae.safetensors or vae/)", vae)] if p is None]
    if missing:
        raise NexusError(f"{folder} lacks parts of the FLUX.1-dev subset: {', '.join(missing)}")
    return FluxFiles(clip, clip_tok, vae, t5, t5_tok if t5 is not None else None)
