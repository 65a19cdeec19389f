"""Custom socket types, only where nothing native fits, and the payload of the embeddings socket."""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
from comfy_api.latest import io

NexusAR = io.Custom("NEXUS_GEN_AR")
NexusEmbeds = io.Custom("NEXUS_GEN_EMBEDS")
NexusProjector = io.Custom("NEXUS_GEN_PROJECTOR")
NexusTextEncoders = io.Custom("NEXUS_GEN_TEXT_ENCODERS")
CATEGORY = "Nexus-Gen"


@dataclass
class Embeds:
    """Image embeddings in AR space: target (B, N, D) and, for editing, the (B, 324, D) reference embeddings."""
    target: torch.Tensor
    reference: torch.Tensor | None = None
    texts: list[str] = field(default_factory=list)
    source: str = ""  # prompt | edit | image | blend


@dataclass
class Projector:
    kind: str  # generation | editing
    module: torch.nn.Module
    patcher: object
    path: str = ""

    @property
    def context_width(self) -> int:
        """The DiT context width this projector produces (read from its output layer)."""
        from ..nexus_core.decoder.projectors import context_width
        return context_width(self.kind, self.module)
