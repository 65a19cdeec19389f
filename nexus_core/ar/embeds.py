"""Predicted image embeddings for generation and editing requests.

mode='reference': the model writes its own reply; the image span is filled when it opens one (one forward).
mode='fast': the training-data reply is given as a fixed assistant prefix and the whole request is one forward
(spec 1.6); several requests run as one batch.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch

from ..errors import NexusError
from ..settings.validate import check_text
from .decoding import DecodeOptions, all2all_text, check_context, decode
from .images import bound_image, load_image, pixel_values
from .prompts import ASSISTANT_PREFIXES, detect_language, editing_content, generation_prompt


@dataclass
class Request:
    """One prompt for the AR: its messages, its input images (pixel values + grids) and its task kind."""
    kind: str  # "generation" or "editing"
    messages: list[dict]
    language: str
    pixels: torch.Tensor | None = None
    grids: list[list[int]] = field(default_factory=list)

    def token_counts(self, merge: int) -> list[int]:
        return [t * h * w // (merge * merge) for t, h, w in self.grids]


@dataclass
class Embeddings:
    embeddings: torch.Tensor  # (B, N, D)
    texts: list[str]  # the model's replies, image span shown as <image>
    outputs: list = field(default_factory=list)  # ArOutput per request (reference mode)
    forwards: int = 0


def generation_request(prompt: str, language: str = "en") -> Request:
    check_text(prompt, "prompt")
    if language == "auto":
        language = detect_language(prompt)
    content = [{"type": "text", "text": generation_prompt(prompt, language)}]
    return Request("generation", [{"role": "user", "content": content}], language)


def editing_request(ar, image, instruction: str, language: str = "auto", max_pixels: int | None = None) -> Request:
    check_text(instruction, "instruction")
    images = image if isinstance(image, (list, tuple)) else [image]
    content = editing_content(instruction, len(images))
    vc = ar.vision_config
    pvs, grids = [], []
    for im in images:
        pv, grid = pixel_values(bound_image(load_image(im), *(max_pixels,) if max_pixels else ()),
                                vc.patch_size, vc.temporal_patch_size, vc.spatial_merge_size)
        pvs.append(pv)
        grids.append(grid)
    language = detect_language(instruction) if language == "auto" else language
    return Request("editing", [{"role": "user", "content": content}], language, torch.cat(pvs), grids)


def predict(ar, requests: list[Request], mode: str = "reference", prefix: str | None = None,
            **decode_kw) -> Embeddings:
    if not requests:
        raise NexusError("No prompts given")
    if mode == "reference":
        outs, texts = [], []
        for req in requests:
            ids, _ = ar.formatter.encode(req.messages, req.token_counts(ar.merge))
            out = decode(ar, ids, req.pixels, req.grids, DecodeOptions(want_image=True, **decode_kw))
            outs.append(out)
            texts.append(all2all_text(ar.tokenizer, out.generated_ids))
        return _finite(Embeddings(torch.cat([o.image_embeddings for o in outs]), texts, outs,
                                  sum(o.forwards for o in outs)))
    if mode == "fast":
        return _finite(_predict_fast(ar, requests, prefix))
    raise NexusError(f"Unknown mode {mode!r}: use 'reference' or 'fast'")


def _finite(res: Embeddings) -> Embeddings:
    """NaN or inf embeddings make a black or noise image with no word said: refuse them, naming the likely cause."""
    if not torch.isfinite(res.embeddings).all():
        raise NexusError("The AR predicted NaN or inf image embeddings: its weights hold NaN or inf (a diverged "
                         "fine-tune, or a damaged file; the load log names the tensors), or its compute dtype "
                         "overflows (try float32 or bfloat16 instead of float16)")
    return res


@torch.inference_mode()
def _predict_fast(ar, requests: list[Request], prefix: str | None) -> Embeddings:
    from .positions import prompt_positions

    tk, dev, n = ar.tokens, ar.device, ar.n_image_tokens
    rows, starts, texts, pos_rows, grids_all, pixels = [], [], [], [], [], []
    for req in requests:
        pre = prefix if prefix is not None else ASSISTANT_PREFIXES[req.kind][req.language]
        ids, _ = ar.formatter.encode(req.messages, req.token_counts(ar.merge), assistant_prefix=pre)
        starts.append(len(ids))
        ids = ids + [tk.vision_start] + [tk.image_pad] * n + [tk.vision_end]
        check_context(ar, len(ids))
        grids = list(req.grids) + [ar.image_grid]
        t = torch.tensor([ids], device=dev)
        pos, _ = prompt_positions(ar, t, grids)
        rows.append(t[0])
        pos_rows.append(pos[:, 0])
        grids_all += req.grids
        if req.pixels is not None:
            pixels.append(req.pixels)
        texts.append(pre + "<image>")
    width = max(len(r) for r in rows)
    # Right padding needs no attention mask: causal attention never lets real tokens see the pad tail.
    ids = torch.stack([torch.nn.functional.pad(r, (0, width - len(r)), value=tk.pad) for r in rows])
    pos = torch.stack([torch.nn.functional.pad(p, (0, width - p.shape[1]), value=0) for p in pos_rows], dim=1)
    embeds = ar.embed(ids).clone()
    if grids_all:
        feats = ar.image_features(torch.cat(pixels), grids_all)
        in_mask = ids == tk.image_pad
        for b, s in enumerate(starts):
            in_mask[b, s:] = False  # only the input images' pads
        embeds[in_mask] = feats.to(embeds.dtype)
    slots = ar.span_inputs()
    for b, s in enumerate(starts):
        embeds[b, s + 1:s + 1 + n] = slots
    hidden = ar.language_model(inputs_embeds=embeds, position_ids=pos, use_cache=False).last_hidden_state
    out = torch.stack([ar.image_embeddings(hidden[b, s:s + n]) for b, s in enumerate(starts)])
    return Embeddings(out, texts, [], 1)
