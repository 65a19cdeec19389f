"""Weights stored in 8-bit floats, computed in 16/32-bit: half the memory of bf16 for the Linear layers.

Plain casting loses too much: trained LLM weights are ~1e-2, where e4m3's normal range (>= 2^-6) ends and
subnormals keep one or two significant bits. So each output row gets a power-of-two scale that puts its largest
weight just under the format's maximum. Because the scale is a power of two:
  * dividing by it is exact, and the bias can be stored pre-divided (b / s, exact);
  * the layer computes linear(x, q, b / s) * s, which rounds exactly like linear(x, q * s, b).
A host (ComfyUI's cast-on-demand ops) can therefore cast `weight` like any other layer and scale the output.
"""
from __future__ import annotations

import torch

from ..errors import NexusError

FP8_DTYPES = {"fp8_e4m3fn": torch.float8_e4m3fn, "fp8_e5m2": torch.float8_e5m2}


def fp8_dtype(name) -> torch.dtype | None:
    """None for 16/32-bit storage ('default', None); the float8 dtype for 'fp8_e4m3fn' / 'fp8_e5m2'."""
    if name in (None, "default", "auto", "none"):
        return None
    if isinstance(name, torch.dtype):
        if name not in FP8_DTYPES.values():
            raise NexusError(f"{name} is not an fp8 storage dtype: use one of {', '.join(FP8_DTYPES)}")
        return name
    if name not in FP8_DTYPES:
        raise NexusError(f"Unknown weight dtype {name!r}: use default or one of {', '.join(FP8_DTYPES)}")
    return FP8_DTYPES[name]


def row_scales(weight: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """(out,) float32 powers of two with max|row| / scale <= the format's maximum (1 for all-zero rows)."""
    amax = weight.detach().abs().amax(dim=1).float()
    top = torch.finfo(dtype).max
    exp = torch.ceil(torch.log2(amax / top))
    return torch.where(amax > 0, torch.exp2(exp), torch.ones_like(amax))


class ScaledFp8Linear(torch.nn.Linear):
    """A Linear whose weight is stored in fp8 with per-row power-of-two scales (`weight_scale`, a buffer)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        bias = None if self.bias is None else self.bias.to(x.dtype)
        return torch.nn.functional.linear(x, self.weight.to(x.dtype), bias) * self.weight_scale.to(x.dtype)

    def dequantized_weight(self) -> torch.Tensor:
        return self.weight.float() * self.weight_scale.float()[:, None]

    @classmethod
    def from_linear(cls, linear: torch.nn.Linear, dtype: torch.dtype) -> "ScaledFp8Linear":
        layer = cls.shell(linear.in_features, linear.out_features, linear.bias is not None)
        layer.take_weight(linear.weight.detach(), dtype)
        if linear.bias is not None:
            layer.take_bias(linear.bias.detach())
        return layer

    @classmethod
    def shell(cls, in_features: int, out_features: int, bias: bool) -> "ScaledFp8Linear":
        """A layer without weights yet (take_weight, then take_bias, fill it): what a streamed load starts from."""
        layer = cls.__new__(cls)
        torch.nn.Module.__init__(layer)
        layer.in_features, layer.out_features = in_features, out_features
        layer.register_parameter("weight", None)
        layer.bias = torch.nn.Parameter(torch.empty(out_features, device="meta"), requires_grad=False) if bias else None
        layer.register_buffer("weight_scale", None)
        return layer

    def take_weight(self, w: torch.Tensor, dtype: torch.dtype) -> None:
        """Store `w` (out, in), in the dtype the layer computes in, as fp8 with per-row scales."""
        scale = row_scales(w, dtype)
        self.weight = torch.nn.Parameter((w.float() / scale[:, None]).to(dtype), requires_grad=False)
        self.weight_scale = scale

    def take_bias(self, b: torch.Tensor) -> None:
        """Store the bias pre-divided by the row scales (exact: they are powers of two); needs take_weight first."""
        self.bias = torch.nn.Parameter((b.float() / self.weight_scale).to(b.dtype), requires_grad=False)


def store_linears_fp8(root: torch.nn.Module, dtype: torch.dtype) -> int:
    """Replace every plain nn.Linear under `root` by a ScaledFp8Linear (in place); returns how many."""
    count = 0
    for parent in list(root.modules()):
        for name, child in list(parent.named_children()):
            if type(child) is torch.nn.Linear:
                setattr(parent, name, ScaledFp8Linear.from_linear(child, dtype))
                count += 1
    return count


def can_hold_fp8(device) -> bool:
    """Whether `device` can store fp8 tensors and cast them to bf16 (storage only: no fp8 matmul needed)."""
    try:
        torch.ones(2, dtype=torch.bfloat16, device=device).to(torch.float8_e4m3fn).to(torch.bfloat16)
        return True
    except Exception:  # noqa: BLE001 - a probe: any failure (no such device, no fp8 kernels) means "no"
        return False
