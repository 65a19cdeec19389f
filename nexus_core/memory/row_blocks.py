"""One large Linear (or embedding table) as several smaller ones, a block of rows each (issue 33: no transient the
size of a layer).

A host that casts each layer's weight whole for every call (ComfyUI's cast-on-demand layers move it to the GPU and
cast it to the compute dtype) holds the whole cast weight while the layer runs: for the AR's output head
(152,064 x 3,584) that is 1.1 GB of VRAM, again for every generated token. Split into blocks of at most
CAST_BLOCK_BYTES once cast, the host sees several ordinary layers, loads or streams each like any other, and holds
one block's cast at a time. Each output feature depends on its own row alone, so the result equals the whole layer's
(bit for bit where the matrix product sums in the same order; tests/test_row_blocks.py).
The input embedding table (the same 1.1 GB) is cast whole by the host for every lookup too, one token at a time while
generating: split the same way, a lookup casts only the blocks holding the ids asked for (one, for one token), and
copies their rows, so it is exact.
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


class RowBlockEmbedding(torch.nn.Module):
    """Holds the blocks (a ModuleList of Embeddings over consecutive rows of one table, each of `rows` rows but the
    last) and looks each id up in the block holding it, id // rows; blocks no id falls in are not called (so the
    host does not cast them)."""

    def __init__(self, blocks: list[torch.nn.Embedding]):
        super().__init__()
        self.blocks = torch.nn.ModuleList(blocks)
        self.rows = blocks[0].num_embeddings
        assert all(b.num_embeddings == self.rows for b in blocks[:-1]), "blocks of equal rows but the last"
        self.embedding_dim = blocks[0].embedding_dim
        self.num_embeddings = sum(b.num_embeddings for b in blocks)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        if not ids.numel():
            return self.blocks[0](ids)
        lo, hi = torch.aminmax(ids)
        if int(lo) < 0 or int(hi) >= self.num_embeddings:
            raise IndexError(f"token ids must lie in 0..{self.num_embeddings - 1} (this embedding table's rows); got "
                             f"{int(lo)}..{int(hi)}")
        which = ids // self.rows
        out = None
        for b in torch.unique(which).tolist():  # one host sync for the lot
            at = which == b
            rows = self.blocks[b](ids[at] - b * self.rows)
            if out is None:
                out = rows.new_empty((*ids.shape, self.embedding_dim))
            out[at] = rows
        return out


def _embedding_block(table: torch.nn.Embedding, i: int, j: int) -> torch.nn.Embedding:
    """Rows i..j-1 of `table` as an Embedding of its own, its weight a view of the original's (no copy)."""
    with torch.device("meta"):
        block = torch.nn.Embedding(j - i, table.embedding_dim)
    block.weight = torch.nn.Parameter(table.weight.detach()[i:j], requires_grad=False)
    return block


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


def split_large_layers(root: torch.nn.Module, compute_dtype: torch.dtype, whole_up_to: int | None = None,
                       block_bytes: int | None = None) -> list[str]:
    """Replace every Linear (Embedding) under `root` whose weight, cast to `compute_dtype`, would exceed
    `whole_up_to` bytes by a RowBlocks (RowBlockEmbedding) of blocks of at most `block_bytes` each; returns the
    names replaced. A weight another module shares (tied embeddings) is left whole: splitting it would untie it.
    An Embedding with a max_norm (which rewrites the rows it looks up) is left whole too; a padding_idx only shapes
    training (that row gets no gradient) and is dropped: the split tables are for inference, their weights frozen."""
    whole_up_to = fp8.CAST_WHOLE_UP_TO if whole_up_to is None else whole_up_to  # one knob for both routes
    block_bytes = fp8.CAST_BLOCK_BYTES if block_bytes is None else block_bytes
    size = torch.empty(0, dtype=compute_dtype).element_size()
    tied = fp8.shared_weights(root)
    done = []
    for parent_name, parent in list(root.named_modules()):
        for name, child in list(parent.named_children()):
            table = type(child) is torch.nn.Embedding
            if not table and type(child) not in (torch.nn.Linear, ScaledFp8Linear) or child.weight is None:
                continue
            if child.weight.numel() * size <= whole_up_to or fp8.weight_key(child.weight) in tied:
                continue
            if table and child.max_norm is not None:
                continue
            if table:
                n, width = child.num_embeddings, child.embedding_dim
            else:
                n, width = child.out_features, child.in_features
            rows = max(1, block_bytes // (width * size))
            bounds = [(i, min(i + rows, n)) for i in range(0, n, rows)]
            if table:
                split = RowBlockEmbedding([_embedding_block(child, i, j) for i, j in bounds])
            else:
                split = RowBlocks([_block(child, i, j) for i, j in bounds], width, n)
            setattr(parent, name, split)
            done.append(f"{parent_name}.{name}" if parent_name else name)
    return done
