"""FLUX DiT key maps: DiffSynth-old names (inside the Nexus decoder files) -> diffusers or BFL/ComfyUI names.

Works one tensor at a time so conversion can stream. Fused q/k/v are split by rows for diffusers (plain
concatenation, no head interleaving). The final adaLN is stored (scale, shift): diffusers keeps that order,
BFL wants (shift, scale), so its two halves are swapped.
"""
from __future__ import annotations

import re
from typing import Callable

import torch

Slicer = Callable[[torch.Tensor], torch.Tensor]
LAYOUTS = ("diffusers", "comfyui")

# DiffSynth prefix -> (diffusers prefix, BFL prefix); the .weight/.bias suffix is kept.
_GLOBAL = {
    "x_embedder": ("x_embedder", "img_in"),
    "context_embedder": ("context_embedder", "txt_in"),
    "time_embedder.timestep_embedder.0": ("time_text_embed.timestep_embedder.linear_1", "time_in.in_layer"),
    "time_embedder.timestep_embedder.2": ("time_text_embed.timestep_embedder.linear_2", "time_in.out_layer"),
    "guidance_embedder.timestep_embedder.0": ("time_text_embed.guidance_embedder.linear_1", "guidance_in.in_layer"),
    "guidance_embedder.timestep_embedder.2": ("time_text_embed.guidance_embedder.linear_2", "guidance_in.out_layer"),
    "pooled_text_embedder.0": ("time_text_embed.text_embedder.linear_1", "vector_in.in_layer"),
    "pooled_text_embedder.2": ("time_text_embed.text_embedder.linear_2", "vector_in.out_layer"),
    "final_norm_out.linear": ("norm_out.linear", "final_layer.adaLN_modulation.1"),
    "final_proj_out": ("proj_out", "final_layer.linear"),
}
_DOUBLE = {
    "norm1_a.linear": ("norm1.linear", "img_mod.lin"),
    "norm1_b.linear": ("norm1_context.linear", "txt_mod.lin"),
    "attn.a_to_qkv": (("attn.to_q", "attn.to_k", "attn.to_v"), "img_attn.qkv"),
    "attn.b_to_qkv": (("attn.add_q_proj", "attn.add_k_proj", "attn.add_v_proj"), "txt_attn.qkv"),
    "attn.a_to_out": ("attn.to_out.0", "img_attn.proj"),
    "attn.b_to_out": ("attn.to_add_out", "txt_attn.proj"),
    "attn.norm_q_a": ("attn.norm_q", "img_attn.norm.query_norm"),
    "attn.norm_k_a": ("attn.norm_k", "img_attn.norm.key_norm"),
    "attn.norm_q_b": ("attn.norm_added_q", "txt_attn.norm.query_norm"),
    "attn.norm_k_b": ("attn.norm_added_k", "txt_attn.norm.key_norm"),
    "ff_a.0": ("ff.net.0.proj", "img_mlp.0"),
    "ff_a.2": ("ff.net.2", "img_mlp.2"),
    "ff_b.0": ("ff_context.net.0.proj", "txt_mlp.0"),
    "ff_b.2": ("ff_context.net.2", "txt_mlp.2"),
}
_SINGLE = {
    "norm.linear": ("norm.linear", "modulation.lin"),
    "to_qkv_mlp": (("attn.to_q", "attn.to_k", "attn.to_v", "proj_mlp"), "linear1"),
    "norm_q_a": ("attn.norm_q", "norm.query_norm"),
    "norm_k_a": ("attn.norm_k", "norm.key_norm"),
    "proj_out": ("proj_out", "linear2"),
}
_BLOCK = re.compile(r"^(blocks|single_blocks)\.(\d+)\.(.+)\.(weight|bias)$")
_PLAIN = re.compile(r"^(.+)\.(weight|bias)$")


def _rows(start: int, stop: int | None) -> Slicer:
    return lambda t: t[start:stop]


def _swap_halves(t: torch.Tensor) -> torch.Tensor:
    a, b = t.chunk(2, dim=0)
    return torch.cat([b, a], dim=0)


def _norm_suffix(suffix: str, bfl: bool, is_norm: bool) -> str:
    return "scale" if (bfl and is_norm) else suffix


def map_key(name: str, hidden: int, layout: str) -> list[tuple[str, Slicer | None]]:
    """Targets of one DiffSynth DiT tensor: [(new name, slicer or None for as-is)]. `hidden` = DiT width."""
    bfl = layout == "comfyui"
    m = _BLOCK.match(name)
    if m:
        kind, idx, part, suffix = m.groups()
        table = _DOUBLE if kind == "blocks" else _SINGLE
        if part not in table:
            raise KeyError(name)
        diff, bfl_name = table[part]
        is_norm = part.startswith(("attn.norm_", "norm_"))
        if bfl:
            prefix = f"{'double_blocks' if kind == 'blocks' else 'single_blocks'}.{idx}."
            return [(prefix + bfl_name + "." + _norm_suffix(suffix, True, is_norm), None)]
        prefix = f"{'transformer_blocks' if kind == 'blocks' else 'single_transformer_blocks'}.{idx}."
        if isinstance(diff, tuple):  # fused rows: q, k, v (each `hidden` rows), then the MLP rest
            out = []
            for i, target in enumerate(diff):
                stop = (i + 1) * hidden if i < 3 else None
                out.append((prefix + target + "." + suffix, _rows(i * hidden, stop)))
            return out
        return [(prefix + diff + "." + suffix, None)]
    m = _PLAIN.match(name)
    if not m or m.group(1) not in _GLOBAL:
        raise KeyError(name)
    part, suffix = m.groups()
    diff, bfl_name = _GLOBAL[part]
    if bfl:
        return [(bfl_name + "." + suffix, _swap_halves if part == "final_norm_out.linear" else None)]
    return [(diff + "." + suffix, None)]


def expected_dit_keys(n_double: int, n_single: int, guidance: bool = True) -> set[str]:
    keys = set()
    for part in _GLOBAL:
        if part.startswith("guidance") and not guidance:
            continue
        keys |= {f"{part}.weight", f"{part}.bias"}
    for i in range(n_double):
        for part in _DOUBLE:
            keys.add(f"blocks.{i}.{part}.weight")
            if "norm_" not in part:
                keys.add(f"blocks.{i}.{part}.bias")
    for i in range(n_single):
        for part in _SINGLE:
            keys.add(f"single_blocks.{i}.{part}.weight")
            if "norm_" not in part:
                keys.add(f"single_blocks.{i}.{part}.bias")
    return keys


def dit_tensor_shape(name: str, h: int, ctx: int, pooled: int, cin: int, head: int = 128,
                     t_dim: int = 256) -> tuple[int, ...]:
    """The shape of a DiffSynth-named FLUX DiT tensor for width h, context ctx, pooled width, latent channels
    cin (64 = 16 x 2 x 2), head width and timestep-embedding width."""
    part = name.rsplit(".", 1)[0]
    bias = name.endswith(".bias")
    if "norm_q" in part or "norm_k" in part:
        return (head,)
    rows_cols = {
        "x_embedder": (h, cin), "context_embedder": (h, ctx), "final_norm_out.linear": (2 * h, h),
        "final_proj_out": (cin, h), "pooled_text_embedder.0": (h, pooled), "pooled_text_embedder.2": (h, h),
        "norm1_a.linear": (6 * h, h), "norm1_b.linear": (6 * h, h), "attn.a_to_qkv": (3 * h, h),
        "attn.b_to_qkv": (3 * h, h), "attn.a_to_out": (h, h), "attn.b_to_out": (h, h), "ff_a.0": (4 * h, h),
        "ff_a.2": (h, 4 * h), "ff_b.0": (4 * h, h), "ff_b.2": (h, 4 * h), "norm.linear": (3 * h, h),
        "to_qkv_mlp": (7 * h, h), "proj_out": (h, 5 * h),
    }
    for key, shape in rows_cols.items():
        if part == key or part.endswith("." + key):
            return shape[:1] if bias else shape
    if part.endswith("timestep_embedder.0"):
        return (h,) if bias else (h, t_dim)
    if part.endswith("timestep_embedder.2"):
        return (h,) if bias else (h, h)
    raise KeyError(name)



def convert_state_dict(state: dict[str, torch.Tensor], layout: str) -> dict[str, torch.Tensor]:
    hidden = state["x_embedder.weight"].shape[0]
    out = {}
    for name, t in state.items():
        for new, sl in map_key(name, hidden, layout):
            out[new] = t if sl is None else sl(t)
    return out


def bfl_to_diffsynth(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Inverse of the comfyui layout (renames; the final adaLN swap is its own inverse)."""
    def count(prefix):
        idx = {int(k.split(".")[1]) for k in state if k.startswith(prefix)}
        return max(idx) + 1 if idx else 0

    guidance = any(k.startswith("guidance_in.") for k in state)
    inverse = {}
    for ds in expected_dit_keys(count("double_blocks."), count("single_blocks."), guidance):
        (bfl, sl), = map_key(ds, 0, "comfyui")
        inverse[bfl] = (ds, sl)
    unknown = sorted(set(state) - set(inverse))
    if unknown:
        raise KeyError(f"not FLUX DiT keys: {unknown[:6]}")
    return {inverse[k][0]: (v if inverse[k][1] is None else inverse[k][1](v)) for k, v in state.items()}
