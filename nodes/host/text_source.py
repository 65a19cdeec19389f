"""Where the conditioning nodes get CLIP-L / T5 encodings: the pack's text encoders (reference-exact) or a native
ComfyUI CLIP (DualCLIPLoader type flux, or CLIPLoader with clip_l), so users reuse the encoders they load for FLUX.

The native route asks the host for the reference's choices: the unprojected pooled CLIP-L, and T5 padded to 512
tokens (the host's FLUX tokenizer pads to 256 unless told). What stays different is numeric: the host runs text
encoders in its own dtype (fp16 by default)."""
from __future__ import annotations

import weakref

import torch

from ...nexus_core.errors import NexusError

T5_LENGTH = 512  # the reference pads the negative's T5 input to 512 tokens
_POOLED_EMPTY: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def pick(text_encoders, clip, node: str):
    if (text_encoders is None) == (clip is None):
        raise NexusError(f"{node}: connect exactly one of text_encoders (Nexus-Gen Text Encoders) or clip "
                         "(DualCLIPLoader type flux, or CLIPLoader with clip_l)")
    return text_encoders if clip is None else clip


def _native(clip, text: str):
    tokens = clip.tokenize(text, tokenizer_options={"t5xxl_min_length": T5_LENGTH})
    cond, pooled = clip.encode_from_tokens(tokens, return_pooled="unprojected")
    return tokens, cond, pooled


def _ours(source):
    """The host's context for our text encoders' device (core wraps its own CLIP runs itself)."""
    from .memory import device_context
    return device_context(getattr(source, "load_device", None))


def pooled_empty(source) -> torch.Tensor:
    """(1, 768) pooled CLIP-L of "" (what Nexus-Gen's decoders were trained with), cached per encoder."""
    if hasattr(source, "clip_pooled"):
        with _ours(source):
            return source.clip_pooled("")
    if source not in _POOLED_EMPTY:
        _POOLED_EMPTY[source] = _native(source, "")[2]
    return _POOLED_EMPTY[source]


def negative(source, text: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(T5 context (1, 512+, 4096), pooled CLIP-L) of the negative prompt."""
    if hasattr(source, "t5"):
        if not source.has_t5:
            raise NexusError("Nexus-Gen Negative Conditioning needs T5-XXL: choose a t5xxl file in Nexus-Gen Text "
                             "Encoders (or use cfg 1 with any negative, e.g. ConditioningZeroOut)")
        with _ours(source):
            return source.t5(text), source.clip_pooled(text)
    tokens, cond, pooled = _native(source, text)
    if "t5xxl" not in tokens:
        raise NexusError("Nexus-Gen Negative Conditioning needs T5-XXL: load the CLIP with DualCLIPLoader "
                         "(type flux: clip_l + t5xxl), or use cfg 1 with any negative")
    return cond, pooled
