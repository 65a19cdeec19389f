"""A decoder ready to run: projector + DiT, and the conditioning assembly of the reference (spec 3.2-4.4)."""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ..errors import NexusError
from .checkpoint import EDITING, GENERATION, read_decoder
from .dit import build_dit
from .ids import editing_text_ids, zero_text_ids
from .projectors import build_projector
from .sampler import Conditioning


def projector_width(kind: str, projector: torch.nn.Module) -> int:
    """The embedding width a projector takes (the AR model's hidden size)."""
    return projector[0].in_features if kind == GENERATION else projector.projector[0].weight.shape[0]


def _grid(tokens: int) -> tuple[int, int, int]:
    side = round(tokens ** 0.5)
    return (1, 2 * side, 2 * side)  # unmerged patches of a square token grid


@torch.inference_mode()
def project(kind: str, projector: torch.nn.Module, target: torch.Tensor, reference: torch.Tensor | None = None,
            device=None, dtype=None):
    """AR embeddings (B, N, D) (+ (B, M, D) reference embeddings, editing only) -> (context, target grid,
    reference grid or None). Checks widths; a single reference set serves every target in the batch. Computes on
    `device` in `dtype` (default: where the projector's weights are, in their dtype)."""
    if target.dim() == 2:
        target = target.unsqueeze(0)
    if target.shape[1] == 0:
        raise NexusError("These embeddings hold only reference tokens; connect 81-token embeddings")
    width = projector_width(kind, projector)
    for what, t in (("embeddings", target), ("reference embeddings", reference)):
        if t is not None and t.shape[-1] != width:
            raise NexusError(f"{what} have width {t.shape[-1]} but this {kind} decoder expects {width} "
                             "(the AR model's hidden size): use the matching Nexus-Gen model")
    p = next(projector.parameters())
    device, dtype = device or p.device, dtype or p.dtype
    target = target.to(device, dtype)
    if kind == GENERATION:
        return projector.project(target), None, None
    tgrid, rgrid = _grid(target.shape[1]), None
    if reference is not None:
        reference = reference.unsqueeze(0) if reference.dim() == 2 else reference
        if reference.shape[0] != target.shape[0]:
            reference = reference[:1].expand(target.shape[0], -1, -1)
        reference = reference.to(device, dtype)
        rgrid = _grid(reference.shape[1])
    return projector.project(target, reference, tgrid, rgrid), tgrid, rgrid


@dataclass
class LoadedDecoder:
    kind: str
    projector: torch.nn.Module
    dit: torch.nn.Module
    path: str = ""

    def check_embeddings(self, embeds: torch.Tensor, what: str = "embeddings"):
        width = projector_width(self.kind, self.projector)
        if embeds.shape[-1] != width:
            raise NexusError(f"{what} have width {embeds.shape[-1]} but this {self.kind} decoder expects "
                             f"{width} (the AR model's hidden size)")

    def positive(self, embeds: torch.Tensor, pooled: torch.Tensor, height: int, width: int,
                 reference: torch.Tensor | None = None, dtype=None) -> Conditioning:
        """Context from the AR embeddings (B, N, D) (+ (B, 324, D) reference embeddings for editing)."""
        dtype = dtype or self.dit.dtype
        ctx, tgrid, rgrid = project(self.kind, self.projector, embeds,
                                    reference if self.kind == EDITING else None)
        if self.kind == GENERATION:
            ids = zero_text_ids(ctx.shape[1], dtype)
        else:  # the reference picks the id layout from the context length (81 = target only)
            ids = editing_text_ids(height, width, tgrid, rgrid or (1, 36, 36), rgrid is not None, dtype)
        return Conditioning(ctx.to(dtype), pooled.to(dtype).expand(ctx.shape[0], -1), ids)


def load_decoder(path, ar_config: dict | None = None, dtype=torch.float32, device="cpu",
                 storage_dtype: torch.dtype | None = None, expect: str | None = None) -> LoadedDecoder:
    dec = read_decoder(path)
    if expect is not None and dec.kind != expect:
        raise NexusError(f"{path} is the {dec.kind} decoder, but this task needs the {expect} decoder "
                         f"({'generation_decoder.bin' if expect == GENERATION else 'edit_decoder.bin'})")
    projector = build_projector(dec, ar_config, dtype, device)
    dit = build_dit(dec, dtype, device, storage_dtype)
    return LoadedDecoder(dec.kind, projector, dit, str(path))


__all__ = ["EDITING", "GENERATION", "LoadedDecoder", "load_decoder"]
