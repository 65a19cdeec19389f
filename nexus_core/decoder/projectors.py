"""Projectors from AR embedding space to the DiT's context width.

Generation decoder: the adapter (Linear, LayerNorm, ReLU, Linear, LayerNorm).
Editing decoder: the embedding merger, one Qwen2.5-VL decoder layer with full bidirectional attention and M-RoPE
positions on a 72x72 base grid over [target; reference] tokens, then RMSNorm/Linear/RMSNorm/SiLU/Linear/RMSNorm.
transformers' own decoder layer, rotary embedding and RMSNorm are reused.
"""
from __future__ import annotations

import torch
from torch import nn

from ..errors import NexusError
from .checkpoint import EDITING, GENERATION, DecoderFile

BASE_GRID = 72  # the merger's position grid (reference: ImageEmbeddingMerger)


class Adapter(nn.Sequential):
    def __init__(self, d_in: int, d_out: int):
        super().__init__(nn.Linear(d_in, d_out), nn.LayerNorm(d_out, eps=1e-5), nn.ReLU(),
                         nn.Linear(d_out, d_out), nn.LayerNorm(d_out, eps=1e-5))

    def project(self, target: torch.Tensor, reference: torch.Tensor | None = None) -> torch.Tensor:
        return self(target)


def merger_position_ids(grids: list[list[int]], base: int = BASE_GRID, device=None) -> torch.Tensor:
    """(3, 1, L) float positions: merged cell (r, c) of an unmerged grid (t, h, w) -> (0, r*base/h, c*base/w)."""
    parts = []
    for t, h, w in grids:
        r = torch.arange(h // 2, device=device).repeat_interleave(w // 2).float()
        c = torch.arange(w // 2, device=device).repeat(h // 2).float()
        parts.append(torch.stack([torch.zeros_like(r), r * (base / h), c * (base / w)]))
    return torch.cat(parts, dim=1).unsqueeze(1)


class RMSNorm(nn.Module):
    """Qwen's RMSNorm: variance in fp32, cast back, then scaled (its class name differs across transformers)."""

    def __init__(self, dim: int, eps: float = 1e-6):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.variance_epsilon = eps  # transformers' name: hosts recognise the layer by it

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dtype = x.dtype
        h = x.float()
        h = h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + self.variance_epsilon)
        return self.weight * h.to(dtype)


class EmbeddingMerger(nn.Module):
    def __init__(self, text_config, n_layers: int, out_channels: int, expand: int):
        super().__init__()
        from transformers.models.qwen2_5_vl.modeling_qwen2_5_vl import Qwen2_5_VLDecoderLayer, Qwen2_5_VLRotaryEmbedding

        cfg = text_config
        cfg._attn_implementation = "eager"  # the reference: eager attention, softmax in fp32
        d, eps = cfg.hidden_size, cfg.rms_norm_eps
        self.layers = nn.ModuleList(Qwen2_5_VLDecoderLayer(cfg, i) for i in range(n_layers))
        for layer in self.layers:
            layer.self_attn.is_causal = False  # full bidirectional attention over [target; reference]
        self.rotary = Qwen2_5_VLRotaryEmbedding(cfg)
        hid = out_channels * expand
        self.projector = nn.Sequential(RMSNorm(d, eps), nn.Linear(d, hid), RMSNorm(hid, eps), nn.SiLU(),
                                       nn.Linear(hid, out_channels), RMSNorm(out_channels, eps))

    def project(self, target: torch.Tensor, reference: torch.Tensor | None = None,
                target_grid=(1, 18, 18), reference_grid=(1, 36, 36)) -> torch.Tensor:
        """Computes in target's dtype and device (weights may be streamed from elsewhere by a host)."""
        dtype = target.dtype
        target = target.reshape(1, -1, target.shape[-1]) if target.dim() == 2 else target
        parts, grids = [target], [list(target_grid)]
        if reference is not None:
            ref = reference.to(target.device, dtype)
            parts.append(ref.unsqueeze(0) if ref.dim() == 2 else ref)
            grids.append(list(reference_grid))
        if any(p.shape[0] != 1 for p in parts):
            return torch.cat([self.project(target[i:i + 1], None if reference is None else parts[1][i:i + 1],
                                           target_grid, reference_grid) for i in range(target.shape[0])])
        x = torch.cat(parts, dim=1)
        pos = merger_position_ids(grids, device=x.device)
        cos, sin = self.rotary(x, pos)
        for layer in self.layers:
            x = layer(x, attention_mask=None, position_embeddings=(cos, sin))
            x = x[0] if isinstance(x, tuple) else x
        return self.projector(x)


def context_width(kind: str, projector: nn.Module) -> int:
    """The DiT context width a projector produces (4096 for the real decoders)."""
    return projector[3].out_features if kind == GENERATION else projector.projector[4].out_features


def _rebuild_rotaries(root: nn.Module, config) -> None:
    """Rotary embeddings hold computed (non-persistent) inv_freq buffers: rebuild every one built on the meta
    device (transformers 4.x also keeps an unused one inside each attention module)."""
    for name, module in list(root.named_modules()):
        if hasattr(module, "inv_freq") and module.inv_freq.is_meta:
            parent = root.get_submodule(name.rsplit(".", 1)[0]) if "." in name else root
            setattr(parent, name.rsplit(".", 1)[-1], type(module)(config=config))


def build_projector(dec: DecoderFile, ar_config: dict | None = None, dtype=torch.float32, device="cpu"):
    """The projector of a decoder file. The merger's layer config comes from the AR's config.json (attention heads
    are not recoverable from weights), or from what a converted file recorded of it; without either, heads are
    derived assuming Qwen's 128-wide heads."""
    p = dec.projector
    if ar_config is None and dec.metadata.get("ar_config"):
        import json
        ar_config = json.loads(dec.metadata["ar_config"])
    if dec.kind == GENERATION:
        d_out, d_in = p["0.weight"].shape
        with torch.device("meta"):  # no random init: the file's tensors become the parameters (as for the merger)
            mod = Adapter(d_in, d_out)
    elif dec.kind == EDITING:
        from transformers import Qwen2_5_VLConfig

        n_layers = len({k.split(".")[1] for k in p if k.startswith("layers.")})
        d = p["projector.0.weight"].shape[0]
        hid, out = p["projector.1.weight"].shape[0], p["projector.4.weight"].shape[0]
        if ar_config is None:
            if d % 128 or d < 128:  # the heads are not in the weights: only Qwen2.5-VL's head width 128 can be assumed
                raise NexusError(f"{dec.path}: this editing decoder's merger ({d} wide) needs the config.json of "
                                 "its AR model beside it: keep it in the Nexus-GenV2 folder")
            kv = p["layers.0.self_attn.k_proj.weight"].shape[0]
            ar_config = dict(hidden_size=d, num_attention_heads=d // 128, num_key_value_heads=kv // 128,
                             intermediate_size=p["layers.0.mlp.gate_proj.weight"].shape[0],
                             rms_norm_eps=1e-6, rope_theta=1e6,  # Nexus-GenV2's (transformers' default eps: 1e-5)
                             rope_scaling={"type": "default", "mrope_section": [16, 24, 24]})
        text = Qwen2_5_VLConfig(**ar_config).text_config
        if text.hidden_size != d:
            raise NexusError(f"{dec.path}: merger width {d} does not match the AR config's hidden size "
                             f"{text.hidden_size}")
        with torch.device("meta"):
            mod = EmbeddingMerger(text, n_layers, out, hid // out)
        _rebuild_rotaries(mod, text)
    else:
        raise NexusError(f"Unknown decoder kind {dec.kind!r}")
    mod.load_state_dict(p, strict=True, assign=True)
    return mod.to(device=device, dtype=dtype).eval().requires_grad_(False)
