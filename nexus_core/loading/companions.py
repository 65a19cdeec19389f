"""torchvision and torchaudio are torch's companions: built for one torch build each. transformers imports them
when they are installed, so a mismatched copy (a CUDA torchvision next to a CPU torch, an older one after a torch
upgrade) breaks model loading with "Could not import module 'Qwen2_5_VLForConditionalGeneration'", which hides the
cause. nexus_core needs neither: a copy that cannot even be imported is hidden from transformers, with one message
that names it and the fix. A working copy is left alone."""
from __future__ import annotations

import importlib
import importlib.util
import logging
import sys

log = logging.getLogger(__name__)
COMPANIONS = ("torchvision", "torchaudio")


def hide_broken_companions(force: bool = False) -> list[str]:
    """Hide each installed companion that fails to import; returns the names hidden (called before transformers;
    once transformers is imported it is too late to matter and the host has decided, unless `force`)."""
    hidden = []
    if "transformers" in sys.modules and not force:
        return hidden
    for name in COMPANIONS:
        if name in sys.modules or importlib.util.find_spec(name) is None:
            continue
        try:
            importlib.import_module(name)
        except Exception as e:  # noqa: BLE001 - any failure means transformers would fail the same way
            for key in [k for k in sys.modules if k == name or k.startswith(name + ".")]:
                del sys.modules[key]
            sys.modules[name] = None  # find_spec now says "not installed"; `import name` raises ImportError
            import torch
            log.warning("%s is installed but does not work with torch %s (%s: %s); Nexus-Gen does not need it, so "
                        "it is ignored. To fix it for other tools, install the %s build that matches this torch.",
                        name, torch.__version__, type(e).__name__, str(e).splitlines()[0][:160], name)
            hidden.append(name)
    return hidden


hide_broken_companions()
