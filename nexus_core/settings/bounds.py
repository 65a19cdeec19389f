"""Bounds on the work one request may ask for, checked before any model runs.

A shared server runs prompts one after another: one prompt with a 200,000-character question holds the queue
for every client. Tokenizing needs the AR, which a node does not have at validation, so the first bound is on
characters and cheap (a Qwen2.5 token spans at least one byte, and English text averages about four characters a
token); the exact bound, tokens against the AR's context from its config.json, is checked before the first
forward (ar/decoding.check_context).
"""
from __future__ import annotations

from ..errors import NexusError
from .validate import check_text

# Nexus-Gen was fine-tuned on sequences of at most 4,096 tokens; 16,000 characters is about 4,000 English tokens,
# and far above any image prompt or instruction (the reference's examples are under 300 characters).
MAX_TEXT_CHARS = 16_000
# one_per_line: each line is one reference-mode decode (up to max_new_tokens forwards) and one image to sample.
MAX_BATCH_PROMPTS = 64

TEXT_BOUND_TIP = f"At most {MAX_TEXT_CHARS:,} characters"


def check_bounded_text(text, name: str, max_chars: int = MAX_TEXT_CHARS) -> str:
    """UTF-8 text of at most `max_chars` characters (None passes: a value linked from another node is checked
    when it arrives)."""
    check_text(text, name)
    if text is not None and len(text) > max_chars:
        raise NexusError(f"{name} is {len(text):,} characters long; at most {max_chars:,} are accepted (one "
                         "request may not hold the queue): shorten it")
    return text


def check_prompt_count(count: int, name: str, max_count: int = MAX_BATCH_PROMPTS) -> int:
    if count > max_count:
        raise NexusError(f"{name} holds {count} prompts (one per line); at most {max_count} run in one request: "
                         "split them over several prompts")
    return count


__all__ = ["MAX_BATCH_PROMPTS", "MAX_TEXT_CHARS", "TEXT_BOUND_TIP", "check_bounded_text", "check_prompt_count"]
