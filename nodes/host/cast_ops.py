"""Turn a foreign torch model (transformers' Qwen2.5-VL, our projectors) into ComfyUI cast-on-demand layers.

ComfyUI can only load a model partially, and stream the rest, when its weight-holding layers are `comfy.ops`
layers (they carry `comfy_cast_weights` and cast their weights to the input's device and dtype on each call).
Like city96's GGUF pack, we hook in at that layer: each module keeps its tensors and its place in the tree, only
its class changes to a subclass that fetches its weights through ComfyUI's cast. Then the host's patcher (the
old estimate-based one or Dynamic VRAM) decides what lives on the GPU, exactly as for its own models.
"""
from __future__ import annotations

import inspect
import logging

import torch

import comfy.model_management
import comfy.ops

from ...nexus_core.memory import fp8_matmul as mm8
from ...nexus_core.memory.fp8 import ScaledFp8Linear

OPS = comfy.ops.manual_cast
log = logging.getLogger("nexus_gen")


class ScaledFp8CastLinear(OPS.Linear):
    """nexus_core's ScaledFp8Linear (fp8 weight, per-row power-of-two scale, pre-divided bias) on ComfyUI's cast:
    the host casts `weight` like any Linear; the power-of-two scale is applied to the output, which is exact.
    Where the host multiplies its own fp8 layers in fp8 (a card with fp8 compute, `--fast fp8_matrix_mult`), so does
    this layer: the host moves the weight to the GPU still in fp8, and torch._scaled_mm multiplies it."""

    def forward_comfy_cast_weights(self, input, *args, **kwargs):
        if (not self.weight_function and not self.bias_function and mm8.eligible(self.weight, input)
                and host_fp8_matmul(input.device)):
            return _with_cast(self, input, lambda w, b: mm8.scaled_fp8_linear(input, w, self.weight_scale, b),
                              dtype=self.weight.dtype, bias_dtype=input.dtype)
        out = super().forward_comfy_cast_weights(input, *args, **kwargs)
        return out * self.weight_scale.to(out.device, out.dtype)


_HOST_FP8: dict = {}


def host_fp8_matmul(device: torch.device) -> bool:
    """The host's own rule for its fp8 layers: fp8 compute on this device and `--fast fp8_matrix_mult`."""
    key = (device.type, device.index)
    if key not in _HOST_FP8:
        try:
            from comfy.cli_args import PerformanceFeature, args
            asked = PerformanceFeature.Fp8MatrixMultiplication in (getattr(args, "fast", None) or ())
            _HOST_FP8[key] = bool(asked and device.type == "cuda" and comfy.model_management.supports_fp8_compute(device)
                                  and mm8.device_can(device))
        except (ImportError, AttributeError, TypeError, RuntimeError):  # an older host without the switch
            _HOST_FP8[key] = False
        if _HOST_FP8[key]:  # once per device: which path the AR's fp8 layers take is worth knowing
            log.info("Nexus-Gen: the AR's fp8_e4m3fn layers multiply in fp8 on %s (--fast fp8_matrix_mult)", device)
    return _HOST_FP8[key]


def _with_cast(layer, x, compute, **cast):
    """compute(weight, bias) with the layer's tensors fetched through the host's cast, given back afterwards where
    the host has that (also when compute fails)."""
    if OFFLOADABLE:
        weight, bias, stream = comfy.ops.cast_bias_weight(layer, x, offloadable=True, **cast)
        try:
            return compute(weight, bias)
        finally:
            comfy.ops.uncast_bias_weight(layer, weight, bias, stream)
    weight, bias = comfy.ops.cast_bias_weight(layer, x, **cast)
    return compute(weight, bias)


def _offloadable() -> bool:
    """Hosts from 0.3.68 take cast_bias_weight(..., offloadable=True) and have uncast_bias_weight: a cast made that
    way must be given back (its buffer or, under Dynamic VRAM, its pinned VRAM page is released then). The legacy
    call never gives it back: on those hosts a streamed layer's page would stay pinned for good."""
    try:
        params = inspect.signature(comfy.ops.cast_bias_weight).parameters
    except (TypeError, ValueError):
        return False
    return "offloadable" in params and hasattr(comfy.ops, "uncast_bias_weight")


OFFLOADABLE = _offloadable()


class _CastNorm(comfy.ops.CastWeightBiasOp):
    """Mixin for transformers' RMSNorm classes: the same arithmetic (variance in float32, weight times the
    normalised input in the input dtype), the weight fetched through ComfyUI's cast, and given back afterwards
    (also when the forward fails) where the host has that, as core's own cast layers do."""
    comfy_cast_weights = True
    bias = None

    def _norm(self, x, weight):
        h = x.float()
        h = h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + self.variance_epsilon)
        return weight * h.to(x.dtype)

    def forward(self, x):
        return _with_cast(self, x, lambda weight, _bias: self._norm(x, weight))  # 0.3.64 and older: the legacy form


_NORM_CLASSES: dict[type, type] = {}


def _norm_class(cls: type) -> type:
    """A subclass of the model's own RMSNorm class (isinstance checks keep working) with the cast forward."""
    if cls not in _NORM_CLASSES:
        _NORM_CLASSES[cls] = type(f"Cast{cls.__name__}", (_CastNorm, cls), {})
    return _NORM_CLASSES[cls]


def _is_rms_norm(m: torch.nn.Module) -> bool:
    return (type(m).__name__.endswith("RMSNorm") and hasattr(m, "variance_epsilon")
            and isinstance(getattr(m, "weight", None), torch.nn.Parameter) and len(m._parameters) == 1)


SIMPLE = {torch.nn.Linear: OPS.Linear, torch.nn.Embedding: OPS.Embedding, torch.nn.Conv3d: OPS.Conv3d,
          torch.nn.Conv2d: OPS.Conv2d, torch.nn.LayerNorm: OPS.LayerNorm, ScaledFp8Linear: ScaledFp8CastLinear}


def cast_on_demand(root: torch.nn.Module) -> list[str]:
    """Swap every weight-holding module under `root` to its cast-on-demand class, in place. Returns the names of
    modules with parameters that could not be converted (they are then always loaded whole by the host)."""
    left = []
    for name, m in root.named_modules():
        cls = type(m)
        if cls in SIMPLE:
            m.__class__ = SIMPLE[cls]
        elif _is_rms_norm(m):
            m.__class__ = _norm_class(cls)
        elif m._parameters and not hasattr(m, "comfy_cast_weights"):
            left.append(name)
            continue
        else:
            continue
        if not hasattr(m, "bias"):  # the host's patcher looks up "<layer>.bias" on every cast layer
            m.bias = None
    return left
