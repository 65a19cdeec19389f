"""Image understanding: plain Qwen2.5-VL question answering with KV-cache decoding."""
from __future__ import annotations

from ..errors import NexusError
from ..settings.validate import check_text
from .decoding import DecodeOptions, decode
from .images import load_image, pixel_values, prepare_understanding_image
from .prompts import DEFAULT_QUESTION

SYSTEM_PROMPT = "You are a helpful assistant."


def understand(ar, question: str = "", image=None, max_pixels: int | None = None, **decode_kw) -> str:
    """Answer `question` (about `image` if given). decode_kw: max_new_tokens, sampling, seed, on_token,
    should_stop (see DecodeOptions)."""
    question = (check_text(question, "question") or "").strip() and question
    content, grids, pv = [], [], None
    if image is not None:
        im = prepare_understanding_image(load_image(image), *(max_pixels,) if max_pixels else ())
        vc = ar.vision_config
        pv, grid = pixel_values(im, vc.patch_size, vc.temporal_patch_size, vc.spatial_merge_size)
        grids = [grid]
        content.append({"type": "image"})
        question = question or DEFAULT_QUESTION
    if not question:
        raise NexusError("The question is empty (and no image was given)")
    content.append({"type": "text", "text": question})
    messages = [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": content}]
    counts = [t * h * w // ar.merge ** 2 for t, h, w in grids]
    ids, _ = ar.formatter.encode(messages, counts)
    out = decode(ar, ids, pv, grids, DecodeOptions(**decode_kw))
    return ar.tokenizer.decode(out.generated_ids, skip_special_tokens=True)
