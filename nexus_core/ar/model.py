"""The Nexus-Gen AR model: transformers' own Qwen2.5-VL plus the two Nexus-Gen tensors.

No fork of the modeling file and no remote code: the upstream class loads every standard key (its legacy
4.49 -> 5.x key mapping is built in) and `vision_head` / `image_prefill_embeds` are read straight from the
shard that holds them. V1 folders (no prefill table) feed the <|image_pad|> embedding at every image slot.
"""
from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import safe_open

from ..errors import NexusError
from ..loading.hf_quiet import quiet_transformers
from ..loading.meta_init import parameters_on_meta
from ..loading.streamed import empty_fp8_linears, fill_from_shards, take_prequantized
from ..memory.devices import pick_device, pick_dtype
from ..memory.fp8 import FP8_DTYPES, ScaledFp8Linear, fp8_dtype, store_linears_fp8
from .checkpoint import PREFILL_TABLE, VISION_HEAD, ArCheckpoint, inspect_ar_folder
from .prompts import ChatFormatter
from .sampling import SamplingConfig

log = logging.getLogger(__name__)


@dataclass
class SpecialTokens:
    image_pad: int
    vision_start: int
    vision_end: int
    eos: tuple[int, ...]
    pad: int


class NexusAR:
    """Container of the loaded AR model; `nexus_core.ar` functions take it as their first argument.

    `vision_head` and `image_prefill_embeds` are attached to the transformers model as submodules, so the whole
    AR is one module tree: one `.to()`, one host memory manager, one set of cast-on-demand layers. `device` and
    `dtype` are where and in what the AR computes; a host that streams weights sets `device` itself."""

    def __init__(self, model, tokenizer, formatter: ChatFormatter, checkpoint: ArCheckpoint,
                 vision_head: torch.nn.Module, prefill: torch.nn.Module | None, dtype: torch.dtype | None = None,
                 device: torch.device | None = None):
        model.vision_head = vision_head  # (D -> D), no bias
        model.image_prefill_embeds = prefill  # (N, D) table, or None for V1
        self.model = model  # Qwen2_5_VLForConditionalGeneration
        self.tokenizer = tokenizer
        self.formatter = formatter
        self.checkpoint = checkpoint
        self.dtype = dtype or model.lm_head.weight.dtype
        self.device = torch.device(device) if device is not None else model.lm_head.weight.device
        cfg = model.config
        self.text_config = cfg.text_config
        self.vision_config = cfg.vision_config
        self.hidden_size = self.text_config.hidden_size
        gen = checkpoint.generation_config
        eos = gen.get("eos_token_id", cfg.text_config.eos_token_id)
        eos = tuple(eos) if isinstance(eos, (list, tuple)) else (eos,)
        self.tokens = SpecialTokens(
            image_pad=cfg.image_token_id,
            vision_start=cfg.vision_start_token_id,
            vision_end=cfg.vision_end_token_id,
            eos=tuple(int(e) for e in eos if e is not None),
            pad=int(gen.get("pad_token_id", getattr(tokenizer, "pad_token_id", None) or eos[0])),
        )
        self.sampling = SamplingConfig.from_generation_config(gen)

    @classmethod
    def from_parts(cls, model, vision_head: torch.Tensor, prefill_table: torch.Tensor | None,
                   generation_config: dict | None = None) -> "NexusAR":
        """A NexusAR around an in-memory model (benchmarks, synthetic tests): no tokenizer, token ids only."""
        ckpt = ArCheckpoint(Path("<memory>"), model.config.to_dict(), [], {}, generation_config or {})
        return cls(model, None, None, ckpt, _head(vision_head), _table(prefill_table))

    # --- properties the rest of the core reads ---------------------------------------------------
    @property
    def vision_head(self) -> torch.nn.Module:
        return self.model.vision_head

    @property
    def prefill(self) -> torch.nn.Module | None:
        return self.model.image_prefill_embeds

    @property
    def version(self) -> int:
        return 1 if self.prefill is None else 2

    @property
    def n_image_tokens(self) -> int:
        return 81 if self.prefill is None else self.prefill.num_embeddings

    @property
    def merge(self) -> int:
        return self.vision_config.spatial_merge_size

    @property
    def image_grid(self) -> list[int]:
        """Unmerged (t, h, w) grid of a generated image: [1, 18, 18] for 81 tokens."""
        side = round(self.n_image_tokens ** 0.5)
        return [1, side * self.merge, side * self.merge]

    @property
    def language_model(self):
        return self.model.model.language_model

    def to(self, device) -> "NexusAR":
        self.model.to(device)
        self.device = torch.device(device)
        return self

    # --- building blocks ---------------------------------------------------------------------------
    def embed(self, ids: torch.Tensor) -> torch.Tensor:
        return self.language_model.embed_tokens(ids.to(self.device)).to(self.dtype)

    def span_inputs(self) -> torch.Tensor:
        """(N, D) inputs of the N image slots: the learned table (V2) or the image-pad embedding (V1)."""
        if self.prefill is not None:
            return self.prefill(torch.arange(self.n_image_tokens, device=self.device)).to(self.dtype)
        pad = torch.full((self.n_image_tokens,), self.tokens.image_pad, device=self.device)
        return self.embed(pad)

    def image_features(self, pixel_values: torch.Tensor, grids: list[list[int]]) -> torch.Tensor:
        """Merged ViT embeddings (sum of tokens, D) for one or more images."""
        visual = self.model.model.visual
        out = visual(pixel_values.to(self.device, self.dtype), grid_thw=torch.tensor(grids, device=self.device))
        merged = out.pooler_output if hasattr(out, "pooler_output") else out  # transformers 5.x vs 4.x
        return merged.to(self.dtype)

    def image_embeddings(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.vision_head(hidden)

    def logits(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.model.lm_head(hidden).float()


def _head(weight: torch.Tensor) -> torch.nn.Linear:
    d_out, d_in = weight.shape
    with torch.device("meta"):
        head = torch.nn.Linear(d_in, d_out, bias=False)
    head.weight = torch.nn.Parameter(weight, requires_grad=False)
    return head


def _table(weight: torch.Tensor | None) -> torch.nn.Embedding | None:
    if weight is None:
        return None
    return torch.nn.Embedding.from_pretrained(weight, freeze=True)


def _read_tensor(path: Path, name: str) -> torch.Tensor:
    with safe_open(str(path), framework="pt") as f:
        return f.get_tensor(name)


def check_nexus_shapes(hidden: int, head_shape, table_shape=None) -> None:
    """vision_head must be (D, D) and the prefill table (N*N, D), D = the config's hidden size. Shapes only: the
    loader passes the loaded tensors' shapes, a dry run the ones a safetensors header declares."""
    d = hidden
    if tuple(head_shape) != (d, d):
        raise NexusError(f"{VISION_HEAD} has shape {tuple(head_shape)}, expected ({d}, {d}) from config.json")
    if table_shape is not None:
        n = table_shape[0]
        if len(table_shape) != 2 or table_shape[1] != d or round(n ** 0.5) ** 2 != n:
            raise NexusError(f"{PREFILL_TABLE} has shape {tuple(table_shape)}, expected (N*N, {d})")


def load_ar(folder, device=None, dtype=None, attn_implementation: str = "sdpa", weight_dtype=None,
            stream: bool = True) -> NexusAR:
    """Load a Nexus-Gen V2 (or V1) AR folder. float32 on CPU and bfloat16 on GPU unless `dtype` says otherwise.

    weight_dtype 'fp8_e4m3fn' / 'fp8_e5m2' stores every Linear (language model, lm_head, vision tower, merger,
    vision_head) in fp8 with per-row scales and computes in `dtype`: about half the memory of bf16. It is
    quantized tensor by tensor as the shards are read (loading/streamed.py), so the load never holds the 16-bit model;
    stream=False loads it whole and converts it afterwards (the same weights bit for bit, twice the RAM at the
    peak: kept to measure and test against)."""
    from transformers import AutoTokenizer, Qwen2_5_VLForConditionalGeneration

    ckpt = inspect_ar_folder(folder)
    dev = pick_device(device)
    dt = pick_dtype(dtype, dev)
    storage = fp8_dtype(weight_dtype)
    if ckpt.stored_as is not None:  # a single file stores its Linears quantized: they load as they are
        if storage not in (None, fp8_dtype(ckpt.stored_as)):
            log.warning("%s is stored in %s: loading it so (not %s)", ckpt.where, ckpt.stored_as, weight_dtype)
        storage = fp8_dtype(ckpt.stored_as)
    try:
        with quiet_transformers():
            if storage is not None and (stream or ckpt.source is not None):
                model, head, table = _load_streamed(ckpt, dt, storage, attn_implementation)
            else:
                model, info = Qwen2_5_VLForConditionalGeneration.from_pretrained(
                    str(ckpt.folder), dtype=dt, output_loading_info=True, attn_implementation=attn_implementation,
                    local_files_only=True)
                _check_loading_info(ckpt, info)
                head = _read_tensor(ckpt.nexus_tensors[VISION_HEAD], VISION_HEAD).to(dt)
                table = None
                if PREFILL_TABLE in ckpt.nexus_tensors:
                    table = _read_tensor(ckpt.nexus_tensors[PREFILL_TABLE], PREFILL_TABLE).to(dt)
            tokenizer = AutoTokenizer.from_pretrained(str(ckpt.folder), local_files_only=True)
    except NexusError:
        raise
    except (OSError, ValueError, KeyError, RuntimeError) as e:
        raise NexusError(f"Could not load the Qwen2.5-VL model in {ckpt.where}: {e}") from e
    if table is None:
        log.info("%s has no %s: Nexus-Gen V1 behaviour (image-pad embedding at every slot)", folder, PREFILL_TABLE)
    d = model.config.text_config.hidden_size
    head_shape = (head.out_features, head.in_features) if isinstance(head, torch.nn.Module) else head.shape
    check_nexus_shapes(d, head_shape, None if table is None else table.shape)
    model.eval().requires_grad_(False)
    formatter = ChatFormatter.from_folder(ckpt.folder, tokenizer)
    head_module = head if isinstance(head, torch.nn.Module) else _head(head)
    ar = NexusAR(model, tokenizer, formatter, ckpt, head_module, _table(table), dtype=dt)
    if storage is not None and not stream and ckpt.source is None:
        n = store_linears_fp8(model, storage)
        log.info("stored %d Linear layers in %s (per-row scales), computing in %s", n, storage, dt)
    return ar.to(dev)


# The published checkpoint uses transformers 4.49 names; the module tree is 4.5x/5.x (transformers maps the same).
_LEGACY = [(re.compile(r"^visual\."), "model.visual."),
           (re.compile(r"^model\.(?!language_model\.|visual\.)"), "model.language_model.")]


def module_name(key: str) -> str:
    """The parameter path of a checkpoint key in the 5.x module tree (4.49 and 5.x names both accepted)."""
    for pattern, repl in _LEGACY:
        if pattern.match(key):
            return pattern.sub(repl, key, count=1)
    return key


def _load_streamed(ckpt: ArCheckpoint, dt: torch.dtype, storage: torch.dtype, attn_implementation: str):
    """(model, vision_head as an fp8 Linear, prefill table) read tensor by tensor: transformers' own model built
    with meta parameters (real buffers), its Linears (and vision_head) quantized as their weights arrive."""
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

    try:
        config = Qwen2_5_VLConfig.from_pretrained(str(ckpt.folder), local_files_only=True)
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise NexusError(f"Could not read the Qwen2.5-VL config of {ckpt.where}: {e}") from e
    config._attn_implementation = attn_implementation
    with parameters_on_meta(dt):
        model = Qwen2_5_VLForConditionalGeneration(config)
    empty_fp8_linears(model)
    d = config.text_config.hidden_size
    head = ScaledFp8Linear.shell(d, d, False)
    found: dict[str, torch.Tensor] = {}

    prequantized = ckpt.stored_as is not None

    def take_head(stored):
        check_nexus_shapes(d, stored.shape)
        if prequantized:
            take_prequantized(head, VISION_HEAD, "weight", stored, storage, dt)
        else:
            head.take_weight(stored, storage, dt)
        found[VISION_HEAD] = True

    aside = {VISION_HEAD: take_head, PREFILL_TABLE: lambda stored: found.__setitem__(PREFILL_TABLE, stored.read().to(dt)),
             "vision_head.weight_scale": lambda stored: take_prequantized(head, "vision_head.weight_scale",
                                                                          "weight_scale", stored, storage, dt)}
    fill_from_shards(model, ckpt.shards, dt, storage, module_name, aside, str(ckpt.where), prequantized)
    if VISION_HEAD not in found or head.weight_scale is None:
        raise NexusError(f"{ckpt.where} has no {VISION_HEAD} (or its row scales)")
    return model, head, found.get(PREFILL_TABLE)


def save_ar_file(ar: NexusAR, out, overwrite: bool = False) -> Path:
    """One safetensors file holding a loaded AR as it is in memory (fp8 Linears with their row scales, the rest in
    its compute dtype) and its folder's small files: what `nexus-gen convert AR_FOLDER --out F.safetensors` writes,
    and what load_ar takes like a folder."""
    from .checkpoint import write_ar_file

    dtypes = {m.weight.dtype for m in ar.model.modules() if isinstance(m, ScaledFp8Linear)}
    stored = next((name for name, dt in FP8_DTYPES.items() if dt in dtypes), "default")
    return write_ar_file(ar.model.state_dict(), ar.checkpoint.folder, out, stored,
                         str(ar.dtype).replace("torch.", ""), overwrite=overwrite)


def _check_loading_info(ckpt: ArCheckpoint, info: dict) -> None:
    missing = set(info.get("missing_keys") or ())
    unexpected = set(info.get("unexpected_keys") or ()) - {VISION_HEAD, PREFILL_TABLE}
    mismatched = info.get("mismatched_keys") or ()
    if missing or unexpected or mismatched:
        raise NexusError(
            f"The weights in {ckpt.folder} do not match the Qwen2.5-VL config: missing {sorted(missing)[:8]}, "
            f"unexpected {sorted(unexpected)[:8]}, mismatched {list(mismatched)[:4]}")
