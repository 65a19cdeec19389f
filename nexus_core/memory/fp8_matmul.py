"""The fp8 matrix multiply of Ada and Hopper cards (torch._scaled_mm) for the AR's fp8 Linears (issue 33, item 4).

The cast path turns an fp8 weight into the compute dtype and multiplies in it: the memory of fp8, the speed of
bf16. Cards with fp8 tensor cores (compute capability 8.9+) can multiply fp8 directly at about twice the bf16 rate.
The weight already has per-row power-of-two scales; the input gets one scale per token (its largest magnitude over
the format's maximum), so every row of either operand uses the whole e4m3 range, and the product is rescaled by
both (torch._scaled_mm's row-wise scaling). This quantizes the activations too: a different rounding than the cast
path, measured in benchmarks/fp8_fidelity.py (scheme "e4m3 + fp8 matmul"). Where it is used:
  * ComfyUI: when the host offers it for its own fp8 layers (a CUDA card that supports fp8 compute and
    `--fast fp8_matrix_mult`), nodes/host/cast_ops.py;
  * the command line: `--fp8-matmul` (MATMUL_DEVICES = {"cuda"});
  * elsewhere the cast path. torch runs _scaled_mm on the CPU too, which is how CI checks the arithmetic; only a GPU
    run shows the speed (tests/test_fp8_matmul.py prints it when CUDA is there).
"""
from __future__ import annotations

import torch

E4M3_MAX = float(torch.finfo(torch.float8_e4m3fn).max)
MATMUL_DEVICES: set[str] = set()  # device types whose ScaledFp8Linear layers multiply in fp8 (core / CLI route)
_CAPABLE: dict = {}


def device_can(device: torch.device) -> bool:
    """Whether `device` multiplies fp8: any CPU (torch emulates it), a CUDA card of compute capability 8.9+."""
    if device.type == "cpu":
        return hasattr(torch, "_scaled_mm")
    if device.type != "cuda":
        return False
    key = (device.type, device.index)
    if key not in _CAPABLE:
        idx = device.index if device.index is not None else torch.cuda.current_device()
        _CAPABLE[key] = hasattr(torch, "_scaled_mm") and torch.cuda.get_device_capability(idx) >= (8, 9)
    return _CAPABLE[key]


def eligible(weight: torch.Tensor, x: torch.Tensor) -> bool:
    """e4m3 weights (the row-wise kernels take e4m3 operands) whose both sizes are multiples of 16 (the kernels'
    alignment), and a bfloat16 input (the row-wise kernels' output dtype; the AR computes in it on a GPU)."""
    return (weight.dtype == torch.float8_e4m3fn and weight.shape[0] % 16 == 0 and weight.shape[1] % 16 == 0
            and x.dtype == torch.bfloat16)


def scaled_fp8_linear(x: torch.Tensor, weight: torch.Tensor, weight_scale: torch.Tensor,
                      bias_over_scale: torch.Tensor | None) -> torch.Tensor:
    """x (..., in) times an (out, in) e4m3 weight with (out,) row scales, plus a bias stored divided by the scales
    (as ScaledFp8Linear keeps it); the result in x's dtype."""
    shape = x.shape
    rows = x.reshape(-1, shape[-1])
    amax = rows.abs().amax(dim=1, keepdim=True).float()
    x_scale = torch.where(amax > 0, amax / E4M3_MAX, torch.ones_like(amax))
    xq = (rows.float() / x_scale).to(torch.float8_e4m3fn)
    w_scale = weight_scale.to(device=x.device, dtype=torch.float32)[None, :]
    bias = None if bias_over_scale is None else (bias_over_scale.to(x.device).float() * w_scale[0]).to(x.dtype)
    out = torch._scaled_mm(xq, weight.t(), scale_a=x_scale, scale_b=w_scale, bias=bias, out_dtype=x.dtype)
    return out.reshape(*shape[:-1], weight.shape[0])
