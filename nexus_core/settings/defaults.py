"""Defaults and fixed choices, importable without torch: the CLI's --help shows them before anything heavy loads."""
from __future__ import annotations

GENERATION, EDITING = "generation", "editing"
DEFAULTS = {
    GENERATION: dict(width=512, height=512, steps=50, cfg=3.0, guidance=3.5, seed=52),
    EDITING: dict(width=512, height=512, steps=50, cfg=1.0, guidance=3.5, seed=42),
}
# ViT token counts offered by `encode`: 252^2 -> 81 tokens (the decoders' target space), 504^2 -> 324.
VIT_SIZES = {81: 252, 324: 504}
# GGML types `convert --layout gguf` writes the DiT in (numpy quantizers of the gguf package).
GGUF_TYPES = ("Q8_0", "Q5_0", "Q4_0", "BF16", "F16")
# Where weights live while a stage runs (memory/offload.py); here so --help lists them without torch.
OFFLOAD_MODES = ("none", "model", "sequential")
# What `make-full-size --parts` can write.
FULL_SIZE_PARTS = ("ar", "generation", "editing")
