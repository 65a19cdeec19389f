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


@dataclass
class LoadedDecoder:
    kind: str
    projector: torch.nn.Module
    dit: torch.nn.Module
    path: str = ""

    @property
    def context_dim(self) -> int:
        return self.dit.config.joint_attention_dim

    @property
    def embed_dim(self) -> int:
        p = self.projector
        return p[0].in_features if self.kind == GENERATION else p.projector[0].weight.shape[0]

    def check_embeddings(self, embeds: torch.Tensor, what: str = "embeddings"):
        if embeds.shape[-1] != self.embed_dim:
            raise NexusError(f"{what} have width {embeds.shape[-1]} but this {self.kind} decoder expects "
                             f"{self.embed_dim} (the AR model's hidden size)")

    @torch.inference_mode()
    def positive(self, embeds: torch.Tensor, pooled: torch.Tensor, height: int, width: int,
                 reference: torch.Tensor | None = None, dtype=None) -> Conditioning:
        """Context from the AR embeddings (B, N, D) (+ (B, 324, D) reference embeddings for editing)."""
        dtype = dtype or self.dit.dtype
        self.check_embeddings(embeds)
        if embeds.dim() == 2:
            embeds = embeds.unsqueeze(0)
        device = next(self.projector.parameters()).device
        if self.kind == GENERATION:
            ctx = self.projector.project(embeds.to(device))
            ids = zero_text_ids(ctx.shape[1], dtype)
        else:
            if reference is not None:
                self.check_embeddings(reference, "reference embeddings")
            side = round(embeds.shape[1] ** 0.5)
            tgrid = (1, 2 * side, 2 * side)
            rgrid = None
            if reference is not None:
                rside = round(reference.shape[-2] ** 0.5)
                rgrid = (1, 2 * rside, 2 * rside)
            ctx = self.projector.project(embeds.to(device), None if reference is None else reference.to(device),
                                         tgrid, rgrid)
            # The reference picks the id layout from the context length (81 = target only).
            ids = editing_text_ids(height, width, tgrid, rgrid or (1, 36, 36), reference is not None, dtype)
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
