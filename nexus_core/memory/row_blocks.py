"""One large Linear as several smaller ones, a block of output rows each (issue 33: no transient the size of a layer).

A host that casts each layer's weight whole for every call (ComfyUI's cast-on-demand layers move it to the GPU and
cast it to the compute dtype) holds the whole cast weight while the layer runs: for the AR's output head
(152,064 x 3,584) that is 1.1 GB of VRAM, again for every generated token. Split into blocks of at most
CAST_BLOCK_BYTES once cast, the host sees several ordinary layers, loads or streams each like any other, and holds
one block's cast at a time. Each output feature depends on its own row alone, so the result equals the whole layer's
(bit for bit where the matrix product sums in the same order; tests/test_row_blocks.py).
"""
from __future__ import annotations

import itertools

import torch

from . import fp8
from .fp8 import ScaledFp8Linear


class RowBlocks(torch.nn.Module):
    """Holds the blocks (a ModuleList of Linears over consecutive output rows) and joins their outputs."""

    def __init__(self, blocks: list[torch.nn.Module], in_features: int, out_features: int):
        super().__init__()
        self.blocks = torch.nn.ModuleList(blocks)
        self.in_features, self.out_features = in_features, out_features
        ends = list(itertools.accumulate(b.out_features for b in blocks))
        self.bounds = list(zip([0, *ends[:-1]], ends))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = None
        for block, (i, j) in zip(self.blocks, self.bounds):
            part = block(x)
            if out is None:
                out = part.new_empty((*part.shape[:-1], self.out_features))
            out[..., i:j] = part
        return out


def _block(layer: torch.nn.Linear, i: int, j: int) -> torch.nn.Module:
    """Rows i..j-1 of `layer` as a layer of its own class, its tensors views of the original's (no copy)."""
    fp8 = isinstance(layer, ScaledFp8Linear)
    if fp8:
        block = ScaledFp8Linear.shell(layer.in_features, j - i, layer.bias is not None)
        block.weight_scale = layer.weight_scale[i:j]
    else:
        with torch.device("meta"):
            block = torch.nn.Linear(layer.in_features, j - i, bias=layer.bias is not None)
    block.weight = torch.nn.Parameter(layer.weight.detach()[i:j], requires_grad=False)
    if layer.bias is not None:
        block.bias = torch.nn.Parameter(layer.bias.detach()[i:j], requires_grad=False)
    return block


def split_large_linears(root: torch.nn.Module, compute_dtype: torch.dtype, whole_up_to: int | None = None,
                        block_bytes: int | None = None) -> list[str]:
    """Replace every Linear under `root` whose weight, cast to `compute_dtype`, would exceed `whole_up_to` bytes by
    a RowBlocks of blocks of at most `block_bytes` each; returns the names replaced. A weight another module shares
    (tied embeddings) is left whole: splitting it would untie it."""
    whole_up_to = fp8.CAST_WHOLE_UP_TO if whole_up_to is None else whole_up_to  # one knob for both routes
    block_bytes = fp8.CAST_BLOCK_BYTES if block_bytes is None else block_bytes
    size = torch.empty(0, dtype=compute_dtype).element_size()
    tied = fp8.shared_weights(root)
    done = []
    for parent_name, parent in list(root.named_modules()):
        for name, child in list(parent.named_children()):
            if type(child) not in (torch.nn.Linear, ScaledFp8Linear) or child.weight is None:
                continue
            if child.weight.numel() * size <= whole_up_to or fp8.weight_key(child.weight) in tied:
                continue
            rows = max(1, block_bytes // (child.in_features * size))
            blocks = [_block(child, i, min(i + rows, child.out_features)) for i in range(0, child.out_features, rows)]
            setattr(parent, name, RowBlocks(blocks, child.in_features, child.out_features))
            done.append(f"{parent_name}.{name}" if parent_name else name)
    return done
