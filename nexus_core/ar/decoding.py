"""Autoregressive decoding with a KV cache and the prefilled image span (reference semantics, spec 1.4).

When the reply reaches <|vision_start|>, the N image slots are fed the prefill table at their 3-D grid
positions and <|image_pad|> x N + <|vision_end|> are written to the sequence. The slots' inputs never depend
on outputs, so by default the whole span ([vision_start, prefill[0..N-1], vision_end]) is ONE forward on the
KV cache; `span="stepwise"` runs it the reference's way (N+2 forwards) for comparison.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Callable

import torch
from transformers import DynamicCache

from ..errors import NexusCancelled, NexusError
from ..settings.validate import check_int, check_seed
from .positions import prompt_positions, span_positions
from .sampling import SamplingConfig, choose_token

_SPAN_RE = re.compile(r"<\|vision_start\|>.*?<\|vision_end\|>", re.DOTALL)


@dataclass
class ArOutput:
    prompt_ids: list[int]
    generated_ids: list[int]
    image_embeddings: torch.Tensor | None = None  # (1, N, D)
    image_positions: torch.Tensor | None = None  # (N, 3) t, h, w
    forced_image: bool = False  # the span was forced (the model did not open an image itself)
    forwards: int = 0


@dataclass
class DecodeOptions:
    max_new_tokens: int = 1024
    sampling: SamplingConfig | None = None
    seed: int | None = None
    want_image: bool = False  # generation/editing: an image span is required
    force_image: bool = True  # fix Q6: open the span if the model would stop without one
    span: str = "single"  # "single" (one forward) or "stepwise" (reference's 81+ forwards)
    positions_after_image: str = "reference"  # "reference" (Q7: 1-D as if text) or "training" (q+1+side)
    stop_after_image: bool = False
    on_token: Callable[[int, list[int]], None] | None = None  # (token id, generated ids so far)
    should_stop: Callable[[], bool] | None = None  # polled before every forward


def check_context(ar, prompt_tokens: int, new_tokens: int = 0, what: str = "the prompt") -> None:
    """Refuse, before the first forward, a request whose prompt and reply budget together pass the AR's context
    (config.json's max_position_embeddings): past it the model's positions are untrained, and a long request
    holds a shared server's queue."""
    context = getattr(ar.text_config, "max_position_embeddings", None)
    if context and prompt_tokens + new_tokens > context:
        budget = f" and max_new_tokens={new_tokens}" if new_tokens else ""
        raise NexusError(f"{what} is {prompt_tokens:,} tokens{budget}: together more than the model's context of "
                         f"{context:,} tokens (max_position_embeddings in its config.json); shorten it"
                         + (" or lower max_new_tokens" if new_tokens else ""))


def all2all_text(tokenizer, ids: list[int]) -> str:
    """The reference's batch_decode_all2all: the image span becomes '<image>', <|im_end|> is dropped."""
    text = tokenizer.decode(ids, skip_special_tokens=False)
    return _SPAN_RE.sub("<image>", text).replace("<|im_end|>", "")


class _Runner:
    def __init__(self, ar, opts: DecodeOptions):
        self.ar, self.opts = ar, opts
        self.cache = DynamicCache(config=ar.text_config)
        self.forwards = 0

    def forward(self, embeds: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        if self.opts.should_stop is not None and self.opts.should_stop():
            raise NexusCancelled("Nexus-Gen AR decoding cancelled")
        self.forwards += 1
        out = self.ar.language_model(inputs_embeds=embeds, position_ids=positions, past_key_values=self.cache,
                                     use_cache=True)
        return out.last_hidden_state


def _prompt_embeds(ar, ids: torch.Tensor, pixel_values, grids) -> torch.Tensor:
    embeds = ar.embed(ids)
    if grids:
        feats = ar.image_features(pixel_values, grids)
        mask = (ids == ar.tokens.image_pad).to(embeds.device)
        if int(mask.sum()) != feats.shape[0]:
            raise NexusError(f"Prompt has {int(mask.sum())} image tokens but the images give {feats.shape[0]}")
        embeds = embeds.clone()
        embeds[mask] = feats.to(embeds.dtype)
    return embeds


@torch.inference_mode()
def decode(ar, prompt_ids: list[int], pixel_values: torch.Tensor | None = None, grids: list[list[int]] = (),
           opts: DecodeOptions | None = None) -> ArOutput:
    opts = opts or DecodeOptions()
    tk = ar.tokens
    n_img, side = ar.n_image_tokens, round(ar.n_image_tokens ** 0.5)
    span_len = n_img + 2  # vision_start, N pads, vision_end
    check_int(opts.max_new_tokens, "max_new_tokens", 1)
    if opts.want_image and opts.max_new_tokens < span_len:
        raise NexusError(f"max_new_tokens={opts.max_new_tokens} cannot hold an image ({span_len} tokens)")
    if opts.seed is not None:
        check_seed(opts.seed)
    sampling = opts.sampling or ar.sampling
    gen = None
    if sampling.do_sample:
        gen = torch.Generator().manual_seed(opts.seed if opts.seed is not None else torch.seed() % 2**63)
    check_context(ar, len(prompt_ids), opts.max_new_tokens)
    run = _Runner(ar, opts)
    dev = ar.device

    ids = torch.tensor([prompt_ids], device=dev)
    pos, delta = prompt_positions(ar, ids, list(grids))
    delta = int(delta[0])
    hidden = run.forward(_prompt_embeds(ar, ids, pixel_values, list(grids)), pos)
    seq = list(prompt_ids)
    out = ArOutput(list(prompt_ids), [])

    def emit(tok: int):
        seq.append(tok)
        out.generated_ids.append(tok)
        if opts.on_token is not None:
            opts.on_token(tok, out.generated_ids)

    while len(out.generated_ids) < opts.max_new_tokens:
        scores = ar.logits(hidden[0, -1])
        scores[tk.vision_end] = -float("inf")  # the reference masks it at every step (Q8)
        tok = choose_token(scores, torch.tensor(seq), sampling, gen)
        need_image = opts.want_image and out.image_embeddings is None and opts.force_image
        if need_image and (tok in tk.eos or opts.max_new_tokens - len(out.generated_ids) <= span_len):
            out.forced_image = tok != tk.vision_start
            tok = tk.vision_start
        emit(tok)
        if tok in tk.eos:
            break
        q = len(seq) - 1 + delta  # position of the token just emitted
        if tok == tk.vision_start and out.image_embeddings is None:
            grid = span_positions(q, side, dev)
            after = q + n_img + 1 if opts.positions_after_image == "reference" else q + 1 + side
            embeds, hidden = _run_span(ar, run, q, grid, after, opts.span)
            out.image_embeddings = embeds
            out.image_positions = grid.T.cpu()
            for t in [tk.image_pad] * n_img + [tk.vision_end]:
                emit(t)
            delta = after - (len(seq) - 1)
            if opts.stop_after_image:
                break
            continue
        hidden = run.forward(ar.embed(torch.tensor([[tok]], device=dev)),
                             torch.full((3, 1, 1), q, device=dev))
    if opts.want_image and out.image_embeddings is None:
        raise NexusError("The model stopped without producing an image (force_image was off)")
    out.forwards = run.forwards
    return out


def _run_span(ar, run: _Runner, q: int, grid: torch.Tensor, after: int, mode: str):
    """Feed [vision_start, slots..., vision_end]; return (embeddings (1, N, D), hidden of vision_end)."""
    tk, dev = ar.tokens, ar.device
    slots = ar.span_inputs()  # (N, D)
    vs = ar.embed(torch.tensor([[tk.vision_start]], device=dev))
    ve = ar.embed(torch.tensor([[tk.vision_end]], device=dev))
    pos = torch.cat([torch.full((3, 1), q, device=dev), grid, torch.full((3, 1), after, device=dev)], dim=1)
    pos = pos.unsqueeze(1)  # (3, 1, N+2)
    if mode == "single":
        hidden = run.forward(torch.cat([vs, slots.unsqueeze(0), ve], dim=1), pos)
        return ar.image_embeddings(hidden[:, :-2]), hidden[:, -1:]
    if mode != "stepwise":
        raise NexusError(f"Unknown span mode {mode!r}: use 'single' or 'stepwise'")
    inputs = torch.cat([vs, slots.unsqueeze(0), ve], dim=1)
    collected = []
    for i in range(inputs.shape[1]):
        hidden = run.forward(inputs[:, i:i + 1], pos[:, :, i:i + 1])
        if i < grid.shape[1]:
            collected.append(ar.image_embeddings(hidden[:, -1]))
    return torch.stack(collected, dim=1), hidden
