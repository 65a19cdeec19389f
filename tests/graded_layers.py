"""Layers for the fp8 and row-block tests (a helper module, like host_stand_in): rows whose magnitudes span three
decades (each row gets its own fp8 scale, so the scales differ), and the bound a float32 product may move by when
its terms are summed in another order."""
import torch

from nexus_core.memory.fp8 import ScaledFp8Linear


def graded_linear(out_features, in_features, bias, seed=0, scale=1.0, low=-2, high=1) -> torch.nn.Linear:
    """A Linear whose row r has magnitude scale * 10**(low + (high - low) * r / (out_features - 1))."""
    g = torch.Generator().manual_seed(seed)
    lin = torch.nn.Linear(in_features, out_features, bias=bias)
    with torch.no_grad():
        lin.weight.copy_(torch.randn(out_features, in_features, generator=g) * scale
                         * torch.logspace(low, high, out_features)[:, None])
        if bias:
            lin.bias.copy_(torch.randn(out_features, generator=g))
    return lin


def graded_fp8(out_features, in_features, bias, seed=0, dtype=torch.float8_e4m3fn, **kw) -> ScaledFp8Linear:
    return ScaledFp8Linear.from_linear(graded_linear(out_features, in_features, bias, seed, **kw), dtype)


def within_summation_bound(got, want, x, weight) -> bool:
    """Each float32 output within 2 K eps of the sum of its terms' magnitudes: what another summation order moves."""
    terms = x.abs().double() @ weight.abs().double().T
    bound = 2 * x.shape[-1] * torch.finfo(torch.float32).eps * terms + 1e-30
    return bool(((got.double() - want.double()).abs() <= bound).all())
