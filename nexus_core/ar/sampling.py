"""Next-token choice with the settings of generation_config.json (overridable).

Same order as transformers' generate(): repetition penalty, then temperature, top-k, top-p, then argmax or a
draw. Defaults for unset fields follow transformers' GenerationConfig (top_k 50, top_p 1, temperature 1).
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import torch

from ..settings.validate import check_sampling


@dataclass(frozen=True)
class SamplingConfig:
    do_sample: bool = False
    temperature: float = 1.0
    top_k: int = 50
    top_p: float = 1.0
    repetition_penalty: float = 1.0

    @classmethod
    def from_generation_config(cls, gen: dict) -> "SamplingConfig":
        base = cls()
        return cls(
            do_sample=bool(gen.get("do_sample", base.do_sample)),
            temperature=float(gen.get("temperature") or base.temperature),
            top_k=int(gen.get("top_k") if gen.get("top_k") is not None else base.top_k),
            top_p=float(gen.get("top_p") if gen.get("top_p") is not None else base.top_p),
            repetition_penalty=float(gen.get("repetition_penalty") or base.repetition_penalty),
        )

    def override(self, **kw) -> "SamplingConfig":
        cfg = replace(self, **{k: v for k, v in kw.items() if v is not None})
        check_sampling(cfg.temperature, cfg.top_k, cfg.top_p, cfg.repetition_penalty)
        return cfg


def choose_token(scores: torch.Tensor, history: torch.Tensor, cfg: SamplingConfig,
                 generator: torch.Generator | None = None) -> int:
    """scores: (V,) float logits; history: (L,) ids so far (prompt + reply)."""
    scores = scores.clone()
    if cfg.repetition_penalty != 1.0:
        seen = history.to(scores.device)
        picked = scores.gather(0, seen)
        picked = torch.where(picked < 0, picked * cfg.repetition_penalty, picked / cfg.repetition_penalty)
        scores.scatter_(0, seen, picked)
    if not cfg.do_sample:
        return int(scores.argmax())
    if cfg.temperature != 1.0:
        scores = scores / cfg.temperature
    if cfg.top_k:
        k = min(cfg.top_k, scores.numel())
        kth = torch.topk(scores, k).values[-1]
        scores = scores.masked_fill(scores < kth, -float("inf"))
    if cfg.top_p < 1.0:
        sorted_scores, order = torch.sort(scores, descending=False)
        cum = sorted_scores.softmax(-1).cumsum(-1)
        drop = cum <= (1 - cfg.top_p)
        drop[-1] = False  # keep at least one token
        scores = scores.scatter(0, order, sorted_scores.masked_fill(drop, -float("inf")))
    probs = scores.softmax(-1)
    return int(torch.multinomial(probs.cpu(), 1, generator=generator))
