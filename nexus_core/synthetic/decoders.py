"""Tiny random Nexus-Gen decoder files in the published layout: torch zip pickles of bf16 tensors with
DiffSynth-old FLUX DiT names under pipe.dit. plus the adapter (generation) or the merger (editing)."""
from __future__ import annotations

from pathlib import Path

import torch

from ..decoder.keymap import dit_tensor_shape as _dit_shape
from ..decoder.keymap import expected_dit_keys

TINY_DIT = dict(hidden=256, n_double=2, n_single=1, context=32, pooled=64, in_channels=64)


def tiny_dit_state(g: torch.Generator, hidden=256, n_double=2, n_single=1, context=32, pooled=16, in_channels=64):
    state = {}
    for name in sorted(expected_dit_keys(n_double, n_single, True)):
        shape = _dit_shape(name, hidden, context, pooled, in_channels)
        if "norm_q" in name or "norm_k" in name:
            t = torch.ones(shape)
        else:
            t = torch.randn(shape, generator=g) * (0.02 if len(shape) > 1 else 0.01)
        state["pipe.dit." + name] = t.to(torch.bfloat16)
    return state


def _linear(g, out, inp, bias=True, std=0.05):
    w = {"weight": (torch.randn(out, inp, generator=g) * std)}
    if bias:
        w["bias"] = torch.randn(out, generator=g) * 0.01
    return w


def write_generation_decoder(path, ar_hidden: int, seed: int = 0, **dit) -> Path:
    cfg = {**TINY_DIT, **dit}
    g = torch.Generator().manual_seed(seed)
    ctx = cfg["context"]
    state = {}
    for idx, (o, i) in {0: (ctx, ar_hidden), 3: (ctx, ctx)}.items():
        state.update({f"adapter.{idx}.{k}": v for k, v in _linear(g, o, i).items()})
    for idx in (1, 4):
        state[f"adapter.{idx}.weight"], state[f"adapter.{idx}.bias"] = torch.ones(ctx), torch.zeros(ctx)
    state = {k: v.to(torch.bfloat16) for k, v in state.items()}
    state.update(tiny_dit_state(g, cfg["hidden"], cfg["n_double"], cfg["n_single"], ctx, cfg["pooled"],
                                cfg["in_channels"]))
    torch.save(state, str(path))
    return Path(path)


def write_edit_decoder(path, ar_config: dict, seed: int = 1, expand: int = 4, **dit) -> Path:
    cfg = {**TINY_DIT, **dit}
    g = torch.Generator().manual_seed(seed)
    d, ctx = ar_config["hidden_size"], cfg["context"]
    heads, kv = ar_config["num_attention_heads"], ar_config["num_key_value_heads"]
    hd, inter = d // heads, ar_config["intermediate_size"]
    m = {}
    for name, (o, i, b) in {"q_proj": (d, d, True), "k_proj": (kv * hd, d, True), "v_proj": (kv * hd, d, True),
                            "o_proj": (d, d, False)}.items():
        m.update({f"layers.0.self_attn.{name}.{k}": v for k, v in _linear(g, o, i, b).items()})
    for name, (o, i) in {"gate_proj": (inter, d), "up_proj": (inter, d), "down_proj": (d, inter)}.items():
        m.update({f"layers.0.mlp.{name}.{k}": v for k, v in _linear(g, o, i, False).items()})
    m["layers.0.input_layernorm.weight"] = torch.ones(d)
    m["layers.0.post_attention_layernorm.weight"] = torch.ones(d)
    m["projector.0.weight"], m["projector.2.weight"], m["projector.5.weight"] = (
        torch.ones(d), torch.ones(ctx * expand), torch.ones(ctx))
    m.update({f"projector.1.{k}": v for k, v in _linear(g, ctx * expand, d).items()})
    m.update({f"projector.4.{k}": v for k, v in _linear(g, ctx, ctx * expand).items()})
    state = {f"embedding_merger.{k}": v.to(torch.bfloat16) for k, v in m.items()}
    state.update(tiny_dit_state(g, cfg["hidden"], cfg["n_double"], cfg["n_single"], ctx, cfg["pooled"],
                                cfg["in_channels"]))
    torch.save(state, str(path))
    return Path(path)
