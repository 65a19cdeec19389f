"""Filling a model built with meta parameters from safetensors shards, one tensor at a time, so RAM holds about
what the model keeps.

Loading a whole model in 16-bit and converting it afterwards peaks at the 16-bit model plus its converted copy
(the 7B AR in fp8: 24.6 GB of RSS for 8.9 GB kept, measured). Here every tensor is read into memory of its own
(plain reads, not a memory map whose pages would stay in the process), cast to the compute dtype and, for a
Linear stored in fp8, quantized at once in row blocks, exactly as converting after the load does it (the same
weights bit for bit). Each shard's cached pages are handed back to the kernel once it has been read.
"""
from __future__ import annotations

import ctypes
import logging
from typing import Callable

import torch

from ..errors import NexusError
from ..files.safetensors_read import drop_cached_pages, iter_stored
from ..memory.fp8 import ScaledFp8Linear

log = logging.getLogger(__name__)
MAP_PREQUANTIZED = True  # a prequantized file's weights stay in its memory map; False reads them (benchmarks' "before")


def empty_fp8_linears(model: torch.nn.Module) -> int:
    """Replace every plain nn.Linear under `model` (meta parameters) by an empty ScaledFp8Linear; returns how many."""
    count = 0
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if type(child) is torch.nn.Linear:
                setattr(parent, name, ScaledFp8Linear.shell(child.in_features, child.out_features,
                                                            child.bias is not None))
                count += 1
    return count


def take_prequantized(module: ScaledFp8Linear, name: str, leaf: str, stored, storage, dtype) -> None:
    """One tensor of an fp8 layer stored as such: the weight (in `storage`), its row scales, the divided bias."""
    if leaf == "weight":
        check_shape(name, stored.shape, (module.out_features, module.in_features))
        if stored.dtype != storage:
            raise NexusError(f"{name} is stored as {stored.dtype}, not {storage}: the file is damaged")
        module.weight = torch.nn.Parameter(kept(stored, storage), requires_grad=False)
    elif leaf == "weight_scale":
        check_shape(name, stored.shape, (module.out_features,))
        scale = stored.read().float()
        bad = ~(torch.isfinite(scale) & (scale > 0) & (torch.frexp(scale).mantissa == 0.5))
        if bad.any():
            raise NexusError(f"{name} holds a scale that is not a positive, finite power of two (e.g. "
                             f"{float(scale[bad][0])}): the file is damaged or was not made by nexus-gen")
        module.weight_scale = scale
    elif leaf == "bias" and module.bias is not None:
        check_shape(name, stored.shape, (module.out_features,))
        module.bias = torch.nn.Parameter(kept(stored, dtype), requires_grad=False)
    else:
        raise NexusError(f"unexpected tensor {name} in an fp8 layer")


def kept(stored, dtype: torch.dtype) -> torch.Tensor:
    """The tensor in `dtype`: a view of the file's map where it is stored so (nothing copied, nothing read until
    used), else read and converted."""
    if stored.dtype == dtype:
        view = stored.mapped()
        if view is not None:
            return view
    return stored.read().to(dtype)


def trim_heap() -> None:
    """Hand freed heap memory back to the system (glibc keeps it otherwise: a load's many freed temporaries would
    stay in the process's RSS). Harmless where there is no glibc."""
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def check_shape(name: str, have, want) -> None:
    if tuple(have) != tuple(want):
        raise NexusError(f"{name} has shape {tuple(have)} in the checkpoint, the model expects {tuple(want)}")


def fill_from_shards(model: torch.nn.Module, shards, dtype: torch.dtype, storage: torch.dtype | None,
                     rename: Callable[[str], str], aside: dict[str, Callable[[torch.Tensor], None]],
                     what: str, prequantized: bool = False) -> None:
    """Give every meta parameter of `model` its tensor from `shards` (safetensors files), cast to `dtype`; empty
    ScaledFp8Linear layers quantize theirs to `storage` as they arrive, a block of rows at a time. `rename` maps a
    checkpoint name to the parameter's path; names in `aside` go to their callback instead (as a StoredTensor:
    `.read()` or `.read_rows(i, j)`). prequantized: the shards already hold the fp8 weights, their
    `weight_scale` and the pre-divided biases (a single-file AR), taken as they are. Anything missing, unexpected
    or of another shape is a NexusError naming it."""
    holders = dict(model.named_modules())
    pending_bias: dict[str, torch.Tensor] = {}
    unexpected: list[str] = []

    def place(name: str, stored) -> None:
        owner, _, leaf = name.rpartition(".")
        module = holders.get(owner)
        if prequantized and isinstance(module, ScaledFp8Linear):
            take_prequantized(module, name, leaf, stored, storage, dtype)
            return
        if module is None or leaf not in module._parameters:
            unexpected.append(name)
            return
        if isinstance(module, ScaledFp8Linear) and leaf == "weight":  # quantized block by block from the file
            check_shape(name, stored.shape, (module.out_features, module.in_features))
            if not stored.dtype.is_floating_point:
                raise NexusError(f"{name} is stored as {stored.dtype}: a Linear weight must be floating point")
            module.take_weight(stored, storage, dtype)
            if module.nonfinite_rows:
                log.warning("%s holds NaN or inf values in %d of its %d rows (a diverged fine-tune, or a damaged "
                            "file): what it computes will be NaN", name, module.nonfinite_rows, module.out_features)
            if owner in pending_bias:
                module.take_bias(pending_bias.pop(owner))
            return
        if isinstance(module, ScaledFp8Linear):
            check_shape(name, stored.shape, (module.out_features,))
            if module.weight_scale is None:  # the bias came first: it needs the weight's scales
                pending_bias[owner] = stored.read().to(dtype)
            else:
                module.take_bias(stored.read().to(dtype))
            return
        check_shape(name, stored.shape, tuple(module._parameters[leaf].shape))
        module._parameters[leaf] = torch.nn.Parameter(kept(stored, dtype), requires_grad=False)

    mapped = prequantized and MAP_PREQUANTIZED
    for shard in shards:
        # A prequantized file holds the weights as they are kept: they stay in it (a private memory map) and are
        # read when first used. Loading it was a copy into fresh memory, five times the time of reading the file
        # (the page faults of 8.9 GB of new memory); now the load is the header and the checks.
        for stored in iter_stored(shard, mapped=mapped):
            if stored.name in aside:
                aside[stored.name](stored)
            else:
                place(rename(stored.name), stored)
        if not mapped:
            drop_cached_pages(shard)
        trim_heap()
    missing = {n for n, p in model.named_parameters() if p.device.type == "meta"}
    missing |= {f"{n}.weight" for n, m in model.named_modules() if isinstance(m, ScaledFp8Linear) and m.weight is None}
    missing |= {f"{n}.weight_scale" for n, m in model.named_modules()
                if isinstance(m, ScaledFp8Linear) and m.weight is not None and m.weight_scale is None}
    missing |= {f"{n}.bias" for n in pending_bias}
    if missing or unexpected:
        raise NexusError(f"The weights in {what} do not match its config: missing {sorted(missing)[:8]}, "
                         f"unexpected {sorted(unexpected)[:8]}")
