"""The AR model as ComfyUI sees it: a NexusAR whose whole module tree lives in the host's patcher."""
from __future__ import annotations

import contextlib
from dataclasses import dataclass

from .memory import device_context, ensure_loaded, patcher_for


@dataclass
class ARHandle:
    ar: object  # nexus_core.ar.NexusAR
    patcher: object
    name: str = ""

    @classmethod
    def wrap(cls, ar, name: str = "", load_device=None) -> "ARHandle":
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
