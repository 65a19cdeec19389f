"""Find the FLUX.1-dev subset Nexus-Gen needs (CLIP-L, T5-XXL, tokenizers, AE) in a folder.

Accepted: a ComfyUI models folder (text_encoders/, vae/), the diffusers folder form (text_encoder/, text_encoder_2/, tokenizer/, tokenizer_2/, vae/) or single
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


def _comfy_models(folder: Path) -> FluxFiles | None:
    """A ComfyUI models folder: text_encoders/clip_l*.safetensors (+ t5xxl*), vae/ae.safetensors; tokenizers from
    `<stem>.tokenizer/` folders next to the files (ComfyUI itself uses its bundled copies)."""
    te, vae = folder / "text_encoders", folder / "vae"
    clip = _first(te, "clip_l*.safetensors") if te.is_dir() else None
    ae = _first(vae, "ae.safetensors", "*flux*ae*.safetensors") if vae.is_dir() else None
    if clip is None or ae is None:
        return None
    tok = lambda p: p.with_suffix(".tokenizer") if p is not None and p.with_suffix(".tokenizer").is_dir() else None
    if tok(clip) is None:
        raise NexusError(f"No tokenizer for {clip}: put the CLIP tokenizer files in {clip.with_suffix('.tokenizer')}/")
    t5 = _first(te, "t5xxl*.safetensors")
    return FluxFiles(clip, tok(clip), ae, t5 if tok(t5) else None, tok(t5))


def resolve_flux(folder) -> FluxFiles:
    folder = Path(folder)
    if not folder.is_dir():
        raise NexusError(f"FLUX folder not found: {folder}")
    comfy = _comfy_models(folder)
    if comfy is not None:
        return comfy
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
