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
from ..files.safetensors_read import prefer_huge_pages
from . import fp8_matmul as mm8

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


# A forward casts an fp8 weight whole to the compute dtype up to this size; above it, in blocks of CAST_BLOCK_BYTES
# (issue 33: no transient the size of a layer; the AR's MLP layers, 135 MB in bf16, stay whole)
CAST_WHOLE_UP_TO = 256 << 20
CAST_BLOCK_BYTES = 64 << 20
ROWS_AT_ONCE = 2048  # quantizing works on row blocks: a 152064-row lm_head never needs a float32 copy of itself


def _scales_of(rows: torch.Tensor, dtype: torch.dtype, nonfinite: list | None = None) -> torch.Tensor:
    amax = torch.maximum(rows.amax(dim=1).abs(), rows.amin(dim=1).abs()).float()  # max |x|, no |x| copy (3x faster)
    if nonfinite is not None:  # a NaN/inf row gets scale 1 below and keeps its NaN/inf: count it for the caller
        nonfinite.append(int((~torch.isfinite(amax)).sum()))
    exp = torch.ceil(torch.log2(amax / torch.finfo(dtype).max))
    return torch.where(amax > 0, torch.exp2(exp), torch.ones_like(amax))


def row_scales(weight: torch.Tensor, dtype: torch.dtype, compute: torch.dtype | None = None) -> torch.Tensor:
    """(out,) float32 powers of two with max|row| / scale <= the format's maximum (1 for all-zero rows); the rows'
    values taken in `compute` (weight's own dtype by default)."""
    w = weight.detach()
    return torch.cat([_scales_of(w[i:i + ROWS_AT_ONCE].to(compute or w.dtype), dtype)
                      for i in range(0, w.shape[0], ROWS_AT_ONCE)])


def quantize_rows(read_rows, shape: tuple[int, int], dtype: torch.dtype, compute: torch.dtype,
                  fresh: bool = False, nonfinite: list | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(fp8 weight, float32 row scales) of an (out, in) weight given by `read_rows(i, j)` -> rows i..j-1, a block
    at a time: each row's scale depends on that row alone, so this equals quantizing the whole tensor at once
    while holding one block. The values pass through `compute` first (the dtype a model loaded for that
    compute would hold them in). fresh=True: `read_rows(i, j, out)` reads into one of two buffers of ours, scaled
    there in place; the next block is read in a second thread meanwhile (reading and converting overlap, and no
    block allocates memory of its own). `nonfinite`: a list that gets the number of rows holding NaN or inf, per
    block."""
    from concurrent.futures import ThreadPoolExecutor

    q = torch.empty(shape, dtype=dtype)
    prefer_huge_pages(q)
    scales = []
    # Dividing by a power of two is exact, and so is multiplying by its reciprocal in any dtype with float32's
    # exponent range: bf16 and fp32 rows are scaled where they are instead of in a float32 copy (the same bits).
    wide = compute in (torch.bfloat16, torch.float32, torch.float64)
    blocks = [(i, min(i + ROWS_AT_ONCE, shape[0])) for i in range(0, shape[0], ROWS_AT_ONCE)]
    buffers = []
    if fresh and blocks:
        kind = read_rows(0, 0).dtype
        buffers = [torch.empty((blocks[0][1], *shape[1:]), dtype=kind) for _ in range(min(2, len(blocks)))]
    with ThreadPoolExecutor(max_workers=1) as reader:
        nxt = reader.submit(read_rows, *blocks[0], buffers[0]) if buffers else None
        for n, (i, j) in enumerate(blocks):
            if fresh:
                raw = nxt.result()
                if n + 1 < len(blocks):
                    nxt = reader.submit(read_rows, *blocks[n + 1], buffers[(n + 1) % len(buffers)])
                rows = raw.to(compute)
            else:
                rows = read_rows(i, j).to(compute, copy=True)
            s = _scales_of(rows, dtype, nonfinite)
            inv = 1.0 / s
            if wide and bool(torch.isfinite(inv).all()):
                q[i:j].copy_(rows.mul_(inv.to(compute)[:, None]))
            else:  # fp16 (its range is narrower), or a scale whose reciprocal overflows
                q[i:j] = (rows.float() / s[:, None]).to(dtype)
            scales.append(s)
    return q, torch.cat(scales) if scales else torch.ones(0)


class ScaledFp8Linear(torch.nn.Linear):
    """A Linear whose weight is stored in fp8 with per-row power-of-two scales (`weight_scale`, a buffer)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.device.type in mm8.MATMUL_DEVICES and mm8.eligible(self.weight, x) and mm8.device_can(x.device):
            return mm8.scaled_fp8_linear(x, self.weight, self.weight_scale, self.bias)  # Ada/Hopper: fp8 matmul
        bias = None if self.bias is None else self.bias.to(x.dtype)
        scale = self.weight_scale.to(x.dtype)
        cast_bytes = self.weight.numel() * x.element_size()
        if cast_bytes <= CAST_WHOLE_UP_TO:
            return torch.nn.functional.linear(x, self.weight.to(x.dtype), bias) * scale
        # A layer whose weight cast to the compute dtype would be a large transient (the 152,064-row output head:
        # 1.1 GB in bf16, cast again for every generated token) is computed a block of output rows at a time:
        # each output feature depends on its own row alone, so only one block's cast is held at once.
        rows = max(1, CAST_BLOCK_BYTES // (self.in_features * x.element_size()))
        out = torch.empty((*x.shape[:-1], self.out_features), dtype=x.dtype, device=x.device)
        for i in range(0, self.out_features, rows):
            j = min(i + rows, self.out_features)
            part = torch.nn.functional.linear(x, self.weight[i:j].to(x.dtype), None if bias is None else bias[i:j])
            out[..., i:j] = part * scale[i:j]
        return out

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

    def take_weight(self, w, dtype: torch.dtype, compute: torch.dtype | None = None) -> None:
        """Store `w` (out, in) as fp8 with per-row scales: a tensor, or anything with `shape`, `dtype` and
        `read_rows(i, j)` (a tensor still in its file). `compute`: the dtype the layer computes in, which the
        values pass through first (as when a model loaded in that dtype is converted); w's own by default."""
        stored = hasattr(w, "read_rows")
        read = w.read_rows if stored else (lambda i, j: w.detach()[i:j])
        counts: list = []
        q, scale = quantize_rows(read, tuple(w.shape), dtype, compute or w.dtype, fresh=stored, nonfinite=counts)
        self.weight = torch.nn.Parameter(q, requires_grad=False)
        self.weight_scale = scale
        self.nonfinite_rows = sum(counts)  # rows holding NaN or inf (a diverged fine-tune): the caller says so

    def take_bias(self, b: torch.Tensor) -> None:
        """Store the bias pre-divided by the row scales (exact: they are powers of two); needs take_weight first."""
        self.bias = torch.nn.Parameter((b.float() / self.weight_scale).to(b.dtype), requires_grad=False)


class ScaledFp8Embedding(ScaledFp8Linear):
    """An embedding table stored as ScaledFp8Linear stores a weight: fp8 rows, each with its power-of-two scale
    (issue 33: the AR's 152,064 x 3,584 table is 1.1 GB in bf16, 0.55 GB so). A lookup gathers the rows first and
    scales only those, so no cast of the table is ever made. The storage code (loading, files, checks) is the
    Linear's: the same (rows, width) matrix with the same scales."""

    compute_dtype = torch.bfloat16

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        at = ids.to(self.weight.device)
        rows = self.weight[at].to(self.compute_dtype) * self.weight_scale[at].to(self.compute_dtype)[..., None]
        return rows.to(ids.device)

    @property
    def num_embeddings(self) -> int:
        return self.out_features

    @property
    def embedding_dim(self) -> int:
        return self.in_features

    @classmethod
    def from_embedding(cls, table: torch.nn.Embedding, dtype: torch.dtype, compute: torch.dtype) -> "ScaledFp8Embedding":
        layer = cls.shell(table.embedding_dim, table.num_embeddings, False)
        layer.take_weight(table.weight.detach(), dtype, compute)
        layer.compute_dtype = compute
        return layer


def shared_weights(root: torch.nn.Module) -> set:
    """Keys (see weight_key) of the parameters under `root` that more than one module holds: tied weights, which a
    conversion or a split of one holder would untie."""
    seen: dict = {}
    for _n, p in root.named_parameters(remove_duplicate=False):
        seen[weight_key(p)] = seen.get(weight_key(p), 0) + 1
    return {k for k, n in seen.items() if n > 1}


def weight_key(p: torch.Tensor):
    """The same parameter, or another one over the same memory (meta tensors all sit at address 0)."""
    return ("id", id(p)) if p.is_meta else ("at", p.data_ptr())


def store_embeddings_fp8(root: torch.nn.Module, dtype: torch.dtype, compute: torch.dtype) -> int:
    """Replace every plain nn.Embedding under `root` whose weight no other module shares by a ScaledFp8Embedding."""
    tied = shared_weights(root)
    count = 0
    for parent in list(root.modules()):
        for name, child in list(parent.named_children()):
            if type(child) is torch.nn.Embedding and weight_key(child.weight) not in tied:
                setattr(parent, name, ScaledFp8Embedding.from_embedding(child, dtype, compute))
                count += 1
    return count


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
