"""FLUX LoRAs in the XLabs layout, rewritten in the ComfyUI/BFL layout that every ComfyUI LoRA loader reads.

XLabs (x-flux) trains LoRA "processors" on the attention of each block and names them after the processor, not
the weight they change (`double_blocks.3.processor.qkv_lora1.down.weight`). ComfyUI's loaders map none of those
names, so such a LoRA is skipped key by key with only a log line. The rewrite is exact: each (down, up) pair keeps
its values and lands on the weight the processor adds to; XLabs applies no alpha (scale 1), which is also what
ComfyUI does for a pair without `.alpha`. The single blocks' qkv processor changes only the first 3 x width rows of
`linear1` (whose remaining rows are the MLP's): its up matrix is padded with zero rows to the whole weight."""
from __future__ import annotations

import re
from pathlib import Path

import torch

from ..errors import NexusError

XLABS_KEY = re.compile(r"^(double_blocks|single_blocks)\.(\d+)\.processor\."
                       r"(qkv_lora1|qkv_lora2|proj_lora1|proj_lora2|qkv_lora|proj_lora)\.(down|up)\.weight$")
TARGETS = {"qkv_lora1": "img_attn.qkv", "qkv_lora2": "txt_attn.qkv", "proj_lora1": "img_attn.proj",
           "proj_lora2": "txt_attn.proj", "qkv_lora": "linear1", "proj_lora": "linear2"}
FLUX_MLP_RATIO = 4  # FLUX.1-dev, and so both Nexus-Gen decoders: linear1 = q, k, v (3 x width) + MLP (4 x width)


def looks_xlabs(names) -> bool:
    """True when any key is named like an XLabs LoRA processor."""
    return any(".processor." in n and "_lora" in n for n in names)


def _check_pair(down_name: str, down: torch.Tensor, up_name: str, up: torch.Tensor, proc: str) -> None:
    """A pair every loader applies: 2-D floating-point matrices of finite values, down (r, in) and up (out, r) of
    the same rank r; a qkv pair's up holds q, k and v of the input's width (3 x in rows)."""
    for name, t in ((down_name, down), (up_name, up)):
        if t.dim() != 2:
            raise NexusError(f"{name} has shape {tuple(t.shape)}: a LoRA matrix is 2-D; nothing was written")
        if not t.is_floating_point():
            raise NexusError(f"{name} is {t.dtype}: LoRA weights are floating point; nothing was written")
        if not bool(torch.isfinite(t).all()):
            raise NexusError(f"{name} holds NaN or inf values (a diverged training run); nothing was written")
    if down.shape[0] != up.shape[1]:
        raise NexusError(f"{down_name} {tuple(down.shape)} and {up_name} {tuple(up.shape)} do not multiply: the down "
                         "matrix's rows (the rank) must equal the up matrix's columns; nothing was written")
    if proc.startswith("qkv") and up.shape[0] != 3 * down.shape[1]:
        raise NexusError(f"{up_name} has {up.shape[0]} rows, not q, k and v of its input's width {down.shape[1]} "
                         f"(3 x {down.shape[1]}); nothing was written")


def xlabs_to_comfyui(state: dict[str, torch.Tensor], mlp_ratio: int = FLUX_MLP_RATIO) -> dict[str, torch.Tensor]:
    """The same LoRA under `diffusion_model.<block>.<weight>.lora_{A,B}.weight` names. Refuses keys it does not
    know (they would be lost) and pairs with a half missing."""
    unknown = sorted(k for k in state if not XLABS_KEY.match(k))
    if unknown:
        raise NexusError(f"not an XLabs FLUX LoRA: {len(unknown)} of its {len(state)} keys are not XLabs processor "
                         f"weights (first: {unknown[0]}); nothing was written")
    out = {}
    for name, t in state.items():
        kind, idx, proc, half = XLABS_KEY.match(name).groups()
        partner = name[: -len(f"{half}.weight")] + ("up" if half == "down" else "down") + ".weight"
        if partner not in state:
            raise NexusError(f"{name} has no {partner}: the file is incomplete; nothing was written")
        if half == "down":
            _check_pair(name, t, partner, state[partner], proc)
        if proc == "qkv_lora" and half == "up":
            padded = torch.zeros((t.shape[0] // 3 * (3 + mlp_ratio), *t.shape[1:]), dtype=t.dtype)
            padded[: t.shape[0]] = t
            t = padded
        out[f"diffusion_model.{kind}.{int(idx)}.{TARGETS[proc]}.lora_{'A' if half == 'down' else 'B'}.weight"] = t
    return out


def convert_lora_file(src, out, overwrite: bool = False) -> tuple[Path, int]:
    """Writes the ComfyUI-layout copy of the XLabs LoRA `src` to `out` (a temp file renamed when complete; an
    existing `out` only with overwrite). Returns (out, number of weight pairs)."""
    from safetensors.torch import load_file

    from ..files.safetensors_check import tensor_names
    from ..files.safetensors_write import write_safetensors_streamed
    from ..settings.validate import check_output

    src, out = Path(src), Path(out)
    names = tensor_names(src)  # a missing, truncated or foreign file is refused here, before anything is read
    if out.suffix != ".safetensors":
        raise NexusError(f"--out {out} must end in .safetensors (ComfyUI's LoRA loaders list only those)")
    check_output(out, "--out", overwrite=overwrite, sources=(src,), overwrite_hint="pass --overwrite")
    if not looks_xlabs(names):
        raise NexusError(f"{src} is not in the XLabs layout (first key: {next(iter(names), 'none')}); ComfyUI's "
                         "loaders read the ComfyUI/BFL, kohya and diffusers layouts as they are: nothing to convert")
    converted = xlabs_to_comfyui(load_file(str(src)))
    entries = [(k, tuple(v.shape), v.dtype, converted.__getitem__) for k, v in converted.items()]
    write_safetensors_streamed(out, entries, {"nexus_gen.converted_from": "xlabs", "nexus_gen.source": src.name},
                               overwrite=overwrite)  # a file that appeared meanwhile is not replaced either
    return out, len(converted) // 2
