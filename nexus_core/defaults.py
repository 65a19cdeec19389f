"""Default decoding settings per task, importable without torch (the CLI's --help shows them)."""
from __future__ import annotations

GENERATION, EDITING = "generation", "editing"
DEFAULTS = {
    GENERATION: dict(width=512, height=512, steps=50, cfg=3.0, guidance=3.5, seed=52),
    EDITING: dict(width=512, height=512, steps=50, cfg=1.0, guidance=3.5, seed=42),
}
# ViT token counts offered by `encode`: 252^2 -> 81 tokens (the decoders' target space), 504^2 -> 324.
VIT_SIZES = {81: 252, 324: 504}
