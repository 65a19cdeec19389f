"""The AR model as ComfyUI sees it: a NexusAR whose whole module tree lives in the host's patcher."""
from __future__ import annotations

import contextlib
from dataclasses import dataclass

from ...nexus_core.memory.row_blocks import split_large_layers
from .memory import device_context, ensure_loaded, patcher_for


@dataclass
class ARHandle:
    ar: object  # nexus_core.ar.NexusAR
    patcher: object
    name: str = ""

    @classmethod
    def wrap(cls, ar, name: str = "", load_device=None) -> "ARHandle":
        # The host casts a layer's weight whole on every call: the output head and the input embedding table (1.1 GB
        # each in bf16) become blocks of at most 64 MB first, so a generated token holds one block's cast in VRAM at a
        # time (and its lookup casts only the block holding its id), never a whole 1.1 GB table.
        split_large_layers(ar.model, ar.dtype)
        return cls(ar, patcher_for(ar.model, load_device), name)

    def ready(self):
        """Load what fits on the compute device (the host streams the rest); returns the NexusAR."""
        self.ar.device = ensure_loaded(self.patcher)
        return self.ar

    @contextlib.contextmanager
    def running(self):
        """`with handle.running() as ar:` loaded (ready) and run in the host's context for its device."""
        ar = self.ready()
        with device_context(ar.device):
            yield ar
