"""The AR model as ComfyUI sees it: a NexusAR whose weights live in a ModelPatcher."""
from __future__ import annotations

from dataclasses import dataclass

from .memory import ensure_loaded, patcher_for


@dataclass
class ARHandle:
    ar: object  # nexus_core.ar.NexusAR
    patcher: object
    name: str = ""

    @classmethod
    def wrap(cls, ar, name: str = "") -> "ARHandle":
        extra = {"vision_head": ar.vision_head}
        if ar.prefill_table is not None:
            extra["prefill_table"] = ar.prefill_table
        return cls(ar, patcher_for(ar.model, extra), name)

    def ready(self):
        """Load to the compute device and point the NexusAR at the moved tensors; returns the NexusAR."""
        ensure_loaded(self.patcher)
        box = self.patcher.model
        self.ar.vision_head = box.vision_head
        if self.ar.prefill_table is not None:
            self.ar.prefill_table = box.prefill_table
        return self.ar
