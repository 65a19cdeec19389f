"""Read Nexus-Gen decoder files safely: the original .bin pickles and our converted .safetensors.

.bin files load with torch.load(weights_only=True, mmap=True): a pickle holding anything but tensors is refused.
The kind comes from the keys (adapter.* = generation decoder, embedding_merger.* = editing decoder) and the key
sets are validated strictly, with every depth read from the keys themselves.
"""
from __future__ import annotations

import os
import pickle
import re
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..errors import NexusError
from .keymap import dit_tensor_shape, expected_dit_keys, map_key

GENERATION, EDITING = "generation", "editing"
PROJECTOR_PREFIX = {GENERATION: "adapter.", EDITING: "embedding_merger."}
DIT_PREFIX = "pipe.dit."
FORMAT = "nexus-gen-decoder"
ADAPTER_KEYS = {f"{i}.{s}" for i in (0, 1, 3, 4) for s in ("weight", "bias")}
MERGER_LAYER_PARTS = [
    "self_attn.q_proj.weight", "self_attn.q_proj.bias", "self_attn.k_proj.weight", "self_attn.k_proj.bias",
    "self_attn.v_proj.weight", "self_attn.v_proj.bias", "self_attn.o_proj.weight", "mlp.gate_proj.weight",
    "mlp.up_proj.weight", "mlp.down_proj.weight", "input_layernorm.weight", "post_attention_layernorm.weight"]
MERGER_PROJECTOR = ["projector.0.weight", "projector.1.weight", "projector.1.bias", "projector.2.weight",
                    "projector.4.weight", "projector.4.bias", "projector.5.weight"]


@dataclass
class DecoderFile:
    path: Path
    kind: str  # generation | editing
    layout: str  # diffsynth (original .bin) | diffusers | comfyui
    dit: dict[str, torch.Tensor]  # names of `layout`, no prefix
    projector: dict[str, torch.Tensor]  # names without the adapter./embedding_merger. prefix
    metadata: dict = field(default_factory=dict)

    @property
    def n_double(self) -> int:
        return _count(self.dit, r"^(?:blocks|transformer_blocks|double_blocks)\.(\d+)\.")

    @property
    def n_single(self) -> int:
        return _count(self.dit, r"^(?:single_blocks|single_transformer_blocks)\.(\d+)\.")


def _count(state, pattern) -> int:
    idx = [int(m.group(1)) for k in state if (m := re.match(pattern, k))]
    return max(idx) + 1 if idx else 0


def _load_bin(path: Path) -> dict:
    if not os.access(path, os.R_OK):
        raise NexusError(f"{path} cannot be read: permission denied")
    if not zipfile.is_zipfile(path):
        raise NexusError(f"{path} is not a torch checkpoint (zip) file, or it is truncated")
    from ..files.torch_zip_check import check_torch_zip
    check_torch_zip(path)  # mmap loading trusts each record's size: a cut record would read its neighbour's bytes
    try:
        obj = torch.load(str(path), map_location="cpu", weights_only=True, mmap=True)
    except pickle.UnpicklingError as e:
        raise NexusError(
            f"{path} holds objects other than tensors and was refused (weights_only loading): {str(e)[:300]}"
        ) from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError) as e:
        raise NexusError(f"{path} could not be read; it may be truncated or corrupt ({str(e)[:200]})") from None
    if isinstance(obj, dict) and "state_dict" in obj and isinstance(obj["state_dict"], dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise NexusError(f"{path} is not a flat dictionary of tensors")
    return obj


def _load_safetensors(path: Path) -> tuple[dict, dict]:
    from safetensors import safe_open

    from ..files.safetensors_check import read_header

    read_header(path)  # refuses truncated files
    with safe_open(str(path), framework="pt") as f:  # memory-mapped, zero-copy on CPU
        return {k: f.get_tensor(k) for k in f.keys()}, (f.metadata() or {})


def detect_kind(keys) -> str | None:
    keys = list(keys)
    has_adapter = any(k.startswith("adapter.") for k in keys)
    has_merger = any(k.startswith("embedding_merger.") for k in keys)
    if has_adapter and has_merger:
        return None
    return GENERATION if has_adapter else EDITING if has_merger else None


def _load_state(path: Path, with_dit: bool = True) -> tuple[dict, dict]:
    if path.is_dir():
        raise NexusError(f"{path} is a folder; a decoder file was expected (generation_decoder.bin, edit_decoder.bin "
                         "or a file made by `nexus-gen convert`)")
    if not path.is_file():
        raise NexusError(f"Decoder file not found: {path} (expected generation_decoder.bin, edit_decoder.bin "
                         "or a file made by `nexus-gen convert`)")
    if path.suffix == ".safetensors":
        return _load_safetensors(path)
    if path.suffix == ".gguf":
        from .gguf_file import read_gguf
        state, meta = read_gguf(path, dit=with_dit)
        return state, {**meta, "format": meta.get("format", FORMAT), "layout": "comfyui"}
    return _load_bin(path), {}


def read_projector(path) -> DecoderFile:
    """A decoder file's projector (and its metadata) without materialising its DiT: enough to condition a DiT
    that another loader (GGUF, UNET) provides."""
    path = Path(path)
    state, meta = _load_state(path, with_dit=False)  # .bin and .safetensors are memory-mapped: nothing is read
    kind = detect_kind(state)
    if kind is None:
        raise NexusError(f"{path} holds no Nexus-Gen projector: expected 'adapter.*' (generation decoder) or "
                         "'embedding_merger.*' (editing decoder) tensors")
    prefix = PROJECTOR_PREFIX[kind]
    projector = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
    dec = DecoderFile(path, kind, "comfyui", {}, projector, meta)
    validate(dec)
    return dec


def read_decoder(path) -> DecoderFile:
    path = Path(path)
    state, meta = _load_state(path)
    kind = detect_kind(state)
    if kind is None:
        raise NexusError(
            f"{path} is not a Nexus-Gen decoder: expected 'adapter.*' (generation) or 'embedding_merger.*' "
            f"(editing) keys next to the DiT; found e.g. {sorted(state)[:3]}")
    prefix = PROJECTOR_PREFIX[kind]
    projector = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
    rest = {k: v for k, v in state.items() if not k.startswith(prefix)}
    if meta.get("format") == FORMAT:
        layout = meta.get("layout", "comfyui")
        dit = rest
    else:
        layout = "diffsynth"
        bad = [k for k in rest if not k.startswith(DIT_PREFIX)]
        if bad:
            raise NexusError(f"{path}: unexpected keys outside '{DIT_PREFIX}' and '{prefix}': {bad[:8]}")
        dit = {k[len(DIT_PREFIX):]: v for k, v in rest.items()}
    dec = DecoderFile(path, kind, layout, dit, projector, meta)
    validate(dec)
    return dec


def _diff(name: str, have: set, want: set) -> str | None:
    missing, unexpected = sorted(want - have), sorted(have - want)
    if not missing and not unexpected:
        return None
    return (f"{name}: {len(missing)} missing {missing[:6]}{'...' if len(missing) > 6 else ''}, "
            f"{len(unexpected)} unexpected {unexpected[:6]}{'...' if len(unexpected) > 6 else ''}")


def validate(dec: DecoderFile) -> None:
    problems = []
    if dec.kind == GENERATION:
        problems.append(_diff("adapter", set(dec.projector), {k for k in ADAPTER_KEYS}))
    else:
        n = _count(dec.projector, r"^layers\.(\d+)\.")
        want = {f"layers.{i}.{p}" for i in range(n) for p in MERGER_LAYER_PARTS} | set(MERGER_PROJECTOR)
        problems.append(_diff("embedding_merger", set(dec.projector), want))
    if dec.layout == "diffsynth":
        want = expected_dit_keys(dec.n_double, dec.n_single, any(k.startswith("guidance_") for k in dec.dit))
        problems.append(_diff("DiT", set(dec.dit), want))
    problems = [p for p in problems if p]
    if problems:
        raise NexusError(f"{dec.path} has an unexpected key set ({dec.kind} decoder): " + "; ".join(problems))
    bad = _dit_shape_problem(dec) or _projector_shape_problem(dec)
    if bad:
        raise NexusError(f"{dec.path} ({dec.kind} decoder): {bad}; the file is damaged or from another model")


def _shape(t) -> tuple:
    return tuple(int(v) for v in t.shape)


def _dit_shape_problem(dec: DecoderFile) -> str | None:
    """The first DiT tensor whose shape does not follow from the widths the file's own input layers give (its
    name as the file spells it). Shapes only: memory-mapped tensors are not read."""
    if dec.layout == "diffsynth":
        names = {k: k for k in dec.dit}
        prefix = DIT_PREFIX
    elif dec.layout == "comfyui":
        expected = expected_dit_keys(dec.n_double, dec.n_single, any(k.startswith("guidance_in.") for k in dec.dit))
        names = {map_key(k, 0, "comfyui")[0][0]: k for k in expected}
        if set(names) != set(dec.dit):
            return None  # the host's loader reports foreign keys itself
        prefix = ""
    else:
        return None
    by_ds = {ds: dec.dit[own] for own, ds in names.items()}
    try:
        h, cin = _shape(by_ds["x_embedder.weight"])
        ctx = _shape(by_ds["context_embedder.weight"])[1]
        pooled = _shape(by_ds["pooled_text_embedder.0.weight"])[1]
        t_dim = _shape(by_ds["time_embedder.timestep_embedder.0.weight"])[1]
        head = _shape(by_ds["blocks.0.attn.norm_q_a.weight"])[0] if dec.n_double else 128
    except (KeyError, ValueError):
        return "its DiT input layers (x_embedder, context_embedder ...) are not 2-D weights"
    for own, ds in names.items():
        want = dit_tensor_shape(ds, h, ctx, pooled, cin, head, t_dim)
        if _shape(dec.dit[own]) != want:
            return (f"tensor {prefix}{own} has shape {_shape(dec.dit[own])}, expected {want} for a FLUX DiT "
                    f"{h} wide with context width {ctx}")
    return None


def _projector_shape_problem(dec: DecoderFile) -> str | None:
    """The projector's shapes agree with each other and with the DiT's context width."""
    p = {k: _shape(v) for k, v in dec.projector.items()}
    prefix = PROJECTOR_PREFIX[dec.kind]
    if dec.kind == GENERATION:
        ctx, d = p["0.weight"]
        want = {"0.bias": (ctx,), "1.weight": (ctx,), "1.bias": (ctx,), "3.weight": (ctx, ctx), "3.bias": (ctx,),
                "4.weight": (ctx,), "4.bias": (ctx,)}
    else:
        d = p["layers.0.self_attn.q_proj.weight"][1]
        kvd, inter = p["layers.0.self_attn.k_proj.weight"][0], p["layers.0.mlp.gate_proj.weight"][0]
        wide, ctx = p["projector.1.weight"][0], p["projector.4.weight"][0]
        want = {}
        for i in range(_count(dec.projector, r"^layers\.(\d+)\.")):
            lay = f"layers.{i}."
            want.update({lay + "self_attn.q_proj.weight": (d, d), lay + "self_attn.q_proj.bias": (d,),
                         lay + "self_attn.k_proj.weight": (kvd, d), lay + "self_attn.k_proj.bias": (kvd,),
                         lay + "self_attn.v_proj.weight": (kvd, d), lay + "self_attn.v_proj.bias": (kvd,),
                         lay + "self_attn.o_proj.weight": (d, d), lay + "mlp.gate_proj.weight": (inter, d),
                         lay + "mlp.up_proj.weight": (inter, d), lay + "mlp.down_proj.weight": (d, inter),
                         lay + "input_layernorm.weight": (d,), lay + "post_attention_layernorm.weight": (d,)})
        want.update({"projector.0.weight": (d,), "projector.1.weight": (wide, d), "projector.1.bias": (wide,),
                     "projector.2.weight": (wide,), "projector.4.weight": (ctx, wide), "projector.4.bias": (ctx,),
                     "projector.5.weight": (ctx,)})
    for k, shape in want.items():
        if p.get(k) != shape:
            return f"tensor {prefix}{k} has shape {p.get(k)}, expected {shape} (a projector {d} -> {ctx} wide)"
    dit_ctx = dec.dit.get("context_embedder.weight", dec.dit.get("txt_in.weight"))
    if dit_ctx is not None and _shape(dit_ctx)[1] != ctx:
        return (f"its projector gives context {ctx} wide, but its DiT takes {_shape(dit_ctx)[1]} "
                "(context_embedder): the two halves come from different models")
    return None
