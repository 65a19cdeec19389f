"""`nexus-gen make-full-size`: random models at the real sizes, in the published layouts, to measure RAM, disk and
load times without the real weights.

Every width, head count and the vocabulary are the real ones; the depths are the real ones unless cut (the
flags of make-full-size), so a smaller disk can still measure per layer. Written tensor by tensor: the AR as
sharded safetensors + index (as published), the decoders as torch zip pickles with DiffSynth names (as
published), so only one tensor is ever in memory.
"""
from __future__ import annotations

import json
import math
import shutil
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch

from ..decoder.keymap import expected_dit_keys
from ..errors import NexusError
from ..files.atomic import atomic_write
from ..files.safetensors_write import write_safetensors_streamed
from ..settings.defaults import FULL_SIZE_PARTS as PARTS
from .ar import CHAT_TEMPLATE, TOKENIZER_FILES, _legacy_name
from .decoders import _dit_shape
from .tokenizers import QWEN_ADDED_TOKENS, qwen_style_tokenizer
from .torch_zip import write_torch_zip

# config.json of Nexus-GenV2: a stock Qwen2.5-VL-7B-Instruct config in the flat 4.49 format (the vision config keeps
# only what differs from the defaults: depth 32, 16 heads, MLP 3420, full attention in blocks 7/15/23/31).
NEXUS_AR_CONFIG = {
    "architectures": ["Qwen2_5_VLForConditionalGeneration"], "model_type": "qwen2_5_vl",
    "attention_dropout": 0.0, "bos_token_id": 151643, "eos_token_id": 151645, "pad_token_id": 151643,
    "vision_start_token_id": 151652, "vision_end_token_id": 151653, "vision_token_id": 151654,
    "image_token_id": 151655, "video_token_id": 151656, "hidden_act": "silu", "hidden_size": 3584,
    "initializer_range": 0.02, "intermediate_size": 18944, "max_position_embeddings": 128000, "max_window_layers": 28,
    "num_attention_heads": 28, "num_hidden_layers": 28, "num_key_value_heads": 4, "rms_norm_eps": 1e-06,
    "rope_theta": 1000000.0, "sliding_window": 32768, "tie_word_embeddings": False, "torch_dtype": "bfloat16",
    "transformers_version": "4.49.0", "use_cache": False, "use_sliding_window": False, "vocab_size": 152064,
    "rope_scaling": {"type": "default", "rope_type": "default", "mrope_section": [16, 24, 24]},
    "vision_config": {"hidden_size": 1280, "in_chans": 3, "model_type": "qwen2_5_vl", "spatial_patch_size": 14,
                      "tokens_per_second": 2, "torch_dtype": "bfloat16"},
}
NEXUS_GENERATION_CONFIG = {"bos_token_id": 151643, "pad_token_id": 151643, "do_sample": True,
                           "eos_token_id": [151645, 151643], "repetition_penalty": 1.05, "temperature": 0.1,
                           "top_k": 1, "top_p": 0.001, "transformers_version": "4.49.0"}
TEXT_LAYERS, VISION_LAYERS, VISION_FULL_ATTENTION = 28, 32, (7, 15, 23, 31)
FULL_DIT = dict(hidden=3072, context=4096, pooled=768, in_channels=64)
DIT_BLOCKS = (19, 38)
CONTEXT, MERGER_EXPAND = 4096, 4  # the decoders' context width; the merger's projector widens 4x (16384)
SHARD_BYTES = 5_000_000_000  # transformers' default max_shard_size: 16.6 GB -> 4 shards, as published
AR_FOLDER, DECODER_FILES = "Nexus-GenV2", {"generation": "generation_decoder.bin", "editing": "edit_decoder.bin"}
DTYPE = torch.bfloat16

Spec = list[tuple[str, tuple[int, ...]]]


def ar_config(text_layers: int = TEXT_LAYERS, vision_layers: int = VISION_LAYERS, ids: dict | None = None) -> dict:
    """The published config with the depths cut to `text_layers` / `vision_layers` (widths untouched), and the
    special token ids of the tokenizer that goes with it (`ids`: token -> id; the real ones by default)."""
    cfg = json.loads(json.dumps(NEXUS_AR_CONFIG))
    cfg["num_hidden_layers"] = cfg["max_window_layers"] = text_layers
    if vision_layers != VISION_LAYERS:  # the published file relies on the default depth and full-attention blocks
        full = [i for i in VISION_FULL_ATTENTION if i < vision_layers] or [vision_layers - 1]
        cfg["vision_config"].update(depth=vision_layers, fullatt_block_indexes=full)
    if ids:
        names = {"bos_token_id": "<|endoftext|>", "pad_token_id": "<|endoftext|>", "eos_token_id": "<|im_end|>",
                 "vision_start_token_id": "<|vision_start|>", "vision_end_token_id": "<|vision_end|>",
                 "vision_token_id": "<|vision_pad|>", "image_token_id": "<|image_pad|>",
                 "video_token_id": "<|video_pad|>"}
        cfg.update({key: ids[tok] for key, tok in names.items()})
    return cfg


def ar_spec(config: dict, n_image_tokens: int = 81) -> Spec:
    """(4.49 name, shape) of every AR tensor, from transformers' own model built on the meta device (so the list
    follows the config exactly), plus vision_head and the prefill table."""
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

    with torch.device("meta"):
        model = Qwen2_5_VLForConditionalGeneration(Qwen2_5_VLConfig(**config))
    spec = [(_legacy_name(k), tuple(v.shape)) for k, v in model.state_dict().items()]
    d = config["hidden_size"]
    return spec + [("vision_head.weight", (d, d)), ("image_prefill_embeds.weight", (n_image_tokens, d))]


def dit_spec(n_double: int, n_single: int) -> Spec:
    """The DiffSynth-named FLUX DiT of a decoder file (pipe.dit.*), FLUX.1-dev widths, the given depths."""
    c = FULL_DIT
    return [("pipe.dit." + k, _dit_shape(k, c["hidden"], c["context"], c["pooled"], c["in_channels"]))
            for k in sorted(expected_dit_keys(n_double, n_single, True))]


def adapter_spec(ar_hidden: int) -> Spec:
    """generation_decoder.bin's adapter: Linear(D -> 4096), LayerNorm, ReLU, Linear(4096 -> 4096), LayerNorm."""
    c = CONTEXT
    return [("adapter.0.weight", (c, ar_hidden)), ("adapter.0.bias", (c,)), ("adapter.1.weight", (c,)),
            ("adapter.1.bias", (c,)), ("adapter.3.weight", (c, c)), ("adapter.3.bias", (c,)),
            ("adapter.4.weight", (c,)), ("adapter.4.bias", (c,))]


def merger_spec(config: dict) -> Spec:
    """edit_decoder.bin's embedding_merger: one Qwen2 decoder layer at the AR's width, then the projector."""
    d, heads, kv = config["hidden_size"], config["num_attention_heads"], config["num_key_value_heads"]
    kvd, inter, wide = kv * (d // heads), config["intermediate_size"], CONTEXT * MERGER_EXPAND
    p = "embedding_merger."
    spec = [("layers.0.self_attn.q_proj.weight", (d, d)), ("layers.0.self_attn.q_proj.bias", (d,)),
            ("layers.0.self_attn.k_proj.weight", (kvd, d)), ("layers.0.self_attn.k_proj.bias", (kvd,)),
            ("layers.0.self_attn.v_proj.weight", (kvd, d)), ("layers.0.self_attn.v_proj.bias", (kvd,)),
            ("layers.0.self_attn.o_proj.weight", (d, d)), ("layers.0.mlp.gate_proj.weight", (inter, d)),
            ("layers.0.mlp.up_proj.weight", (inter, d)), ("layers.0.mlp.down_proj.weight", (d, inter)),
            ("layers.0.input_layernorm.weight", (d,)), ("layers.0.post_attention_layernorm.weight", (d,)),
            ("projector.0.weight", (d,)), ("projector.1.weight", (wide, d)), ("projector.1.bias", (wide,)),
            ("projector.2.weight", (wide,)), ("projector.4.weight", (CONTEXT, wide)), ("projector.4.bias", (CONTEXT,)),
            ("projector.5.weight", (CONTEXT,))]
    return [(p + k, s) for k, s in spec]


def nbytes(spec: Spec) -> int:
    return sum(math.prod(s) for _, s in spec) * DTYPE.itemsize


def random_tensor(name: str, shape: tuple[int, ...], seed: int) -> torch.Tensor:
    """Deterministic per (seed, name): every 1-D weight here is a norm scale (ones), biases small, matrices
    N(0, 0.02) like the models' own initialisation."""
    if len(shape) == 1 and name.endswith(".weight"):
        return torch.ones(shape, dtype=DTYPE)
    g = torch.Generator().manual_seed(seed * 1_000_003 + zlib.crc32(name.encode()))
    std = 0.01 if name.endswith(".bias") else 0.02
    return torch.randn(shape, generator=g, dtype=DTYPE).mul_(std)


@dataclass
class Plan:
    """What make-full-size writes: per part, the tensor list; `ar_config` for the AR folder."""
    parts: tuple[str, ...]
    ar_config: dict
    specs: dict[str, Spec]
    dit_blocks: tuple[int, int]

    def bytes_needed(self) -> int:
        return sum(nbytes(s) for s in self.specs.values())


def _check_depths(ar_layers, vision_layers, dit_blocks) -> None:
    for name, v, lo in (("--ar-layers", ar_layers, 1), ("--vision-layers", vision_layers, 1),
                        ("--dit-blocks (double)", dit_blocks[0], 1), ("--dit-blocks (single)", dit_blocks[1], 0)):
        if not isinstance(v, int) or isinstance(v, bool) or v < lo:
            raise NexusError(f"{name} must be a whole number, at least {lo}, got {v!r}")


def plan(parts=PARTS, ar_layers: int = TEXT_LAYERS, vision_layers: int = VISION_LAYERS,
         dit_blocks: tuple[int, int] = DIT_BLOCKS, ids: dict | None = None) -> Plan:
    parts = tuple(dict.fromkeys(parts))
    unknown = set(parts) - set(PARTS)
    if unknown or not parts:
        raise NexusError(f"--parts takes a comma-separated subset of {','.join(PARTS)}, got {','.join(parts)}")
    _check_depths(ar_layers, vision_layers, dit_blocks)
    cfg = ar_config(ar_layers, vision_layers, ids)
    specs: dict[str, Spec] = {}
    if "ar" in parts:
        specs["ar"] = ar_spec(cfg)
    dit = dit_spec(*dit_blocks) if {"generation", "editing"} & set(parts) else []
    if "generation" in parts:
        specs["generation"] = adapter_spec(cfg["hidden_size"]) + dit
    if "editing" in parts:
        specs["editing"] = merger_spec(cfg) + dit
    return Plan(parts, cfg, specs, tuple(dit_blocks))


def _tokenizer(folder: Path, tokenizer_files: Path | None) -> dict[str, int]:
    """Put tokenizer files in `folder`: a copy of an existing Qwen2 tokenizer (the real vocabulary, e.g. the one
    ComfyUI bundles in comfy/text_encoders/qwen25_tokenizer), else the tiny BPE with the Qwen2.5 added tokens.
    Returns the special tokens' ids."""
    from transformers import AutoTokenizer, PreTrainedTokenizerFast

    if tokenizer_files is not None:
        found = [n for n in TOKENIZER_FILES if (Path(tokenizer_files) / n).is_file()]
        if not {"vocab.json", "merges.txt"} <= set(found) and "tokenizer.json" not in found:
            raise NexusError(f"{tokenizer_files} holds no Qwen2 tokenizer (vocab.json + merges.txt or tokenizer.json)")
        for n in found:
            shutil.copy(Path(tokenizer_files) / n, folder / n)
        tok = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
    else:
        tok = PreTrainedTokenizerFast(tokenizer_object=qwen_style_tokenizer(), eos_token="<|im_end|>",
                                      pad_token="<|endoftext|>", unk_token=None)
        tok.save_pretrained(str(folder))
        tc = json.loads((folder / "tokenizer_config.json").read_text())
        tc.update(tokenizer_class="Qwen2Tokenizer", model_max_length=32768, clean_up_tokenization_spaces=False)
        tc.pop("chat_template", None)
        (folder / "tokenizer_config.json").write_text(json.dumps(tc, indent=2, ensure_ascii=False))
    ids = {t: tok.convert_tokens_to_ids(t) for t in QWEN_ADDED_TOKENS}
    missing = [t for t, i in ids.items() if i is None or i == tok.unk_token_id]
    if missing:
        raise NexusError(f"The tokenizer in {tokenizer_files} lacks Qwen2.5's special tokens {missing[:4]}")
    return ids


def _write_json(path: Path, obj) -> None:
    with atomic_write(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, ensure_ascii=False), encoding="utf-8")


def _shards(spec: Spec) -> list[Spec]:
    """Consecutive runs of tensors of at most SHARD_BYTES each (a larger tensor gets a shard of its own)."""
    shards, cur, size = [], [], 0
    for name, shape in spec:
        n = math.prod(shape) * DTYPE.itemsize
        if cur and size + n > SHARD_BYTES:
            shards.append(cur)
            cur, size = [], 0
        cur.append((name, shape))
        size += n
    return shards + ([cur] if cur else [])


def write_ar(folder: Path, p: Plan, seed: int, progress: Callable[[str, int, int], None]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    shards = _shards(p.specs["ar"])
    weight_map, total = {}, nbytes(p.specs["ar"])
    for i, shard in enumerate(shards):
        fname = f"model-{i + 1:05d}-of-{len(shards):05d}.safetensors"
        entries = [(n, s, DTYPE, lambda name, s=s: random_tensor(name, s, seed)) for n, s in shard]
        write_safetensors_streamed(folder / fname, entries, {"format": "pt"},
                                   on_tensor=lambda k, n, f=fname: progress(f, k, n))
        weight_map.update({n: fname for n, _ in shard})
    _write_json(folder / "model.safetensors.index.json",
                {"metadata": {"total_size": total}, "weight_map": dict(sorted(weight_map.items()))})
    _write_json(folder / "config.json", p.ar_config)
    gen = dict(NEXUS_GENERATION_CONFIG, bos_token_id=p.ar_config["bos_token_id"],
               pad_token_id=p.ar_config["pad_token_id"],
               eos_token_id=[p.ar_config["eos_token_id"], p.ar_config["bos_token_id"]])
    _write_json(folder / "generation_config.json", gen)
    _write_json(folder / "chat_template.json", {"chat_template": CHAT_TEMPLATE})
    _write_json(folder / "preprocessor_config.json", {
        "min_pixels": 3136, "max_pixels": 12845056, "patch_size": 14, "temporal_patch_size": 2, "merge_size": 2,
        "image_mean": [0.48145466, 0.4578275, 0.40821073], "image_std": [0.26862954, 0.26130258, 0.27577711],
        "image_processor_type": "Qwen2VLImageProcessor", "processor_class": "Qwen2_5_VLProcessor"})
    return folder


def write_decoder(path: Path, spec: Spec, seed: int, progress: Callable[[str, int, int], None]) -> Path:
    with atomic_write(path) as tmp:
        write_torch_zip(tmp, [(n, s, DTYPE) for n, s in spec], lambda name, shapes=dict(spec): random_tensor(
            name, shapes[name], seed), on_tensor=lambda k, n: progress(path.name, k, n))
    return path


def bytes_planned(parts=PARTS, ar_layers: int = TEXT_LAYERS, vision_layers: int = VISION_LAYERS,
                  dit_blocks: tuple[int, int] = DIT_BLOCKS) -> int:
    """What `plan(...)` would write, in bytes, from the sizes of one and two layers of each kind: nothing is built
    at the asked depth, so an impossible depth (a billion layers) is refused at once, before anything is written."""
    def ar(t, v):  # token ids do not change sizes; without the tokenizer's, the published ones may not fit
        cfg = ar_config(t, v)
        cfg.pop("pad_token_id", None)
        return nbytes(ar_spec(cfg))

    def dit(d, n):
        return nbytes(dit_spec(d, n))

    _check_depths(ar_layers, vision_layers, dit_blocks)
    total = 0
    if "ar" in parts:
        base = ar(1, 1)
        total += base + (ar(2, 1) - base) * (ar_layers - 1) + (ar(1, 2) - base) * (vision_layers - 1)
    if {"generation", "editing"} & set(parts):
        base = dit(1, 0)
        blocks = base + (dit(2, 0) - base) * (dit_blocks[0] - 1) + (dit(1, 1) - base) * dit_blocks[1]
        cfg = ar_config(1, 1)
        total += nbytes(adapter_spec(cfg["hidden_size"])) + blocks if "generation" in parts else 0
        total += nbytes(merger_spec(cfg)) + blocks if "editing" in parts else 0
    return total


def make_full_size(root, parts=PARTS, ar_layers: int = TEXT_LAYERS, vision_layers: int = VISION_LAYERS,
                   dit_blocks: tuple[int, int] = DIT_BLOCKS, tokenizer_files=None, seed: int = 0,
                   progress: Callable[[str, int, int], None] | None = None,
                   announce: Callable[[Plan, int], None] | None = None) -> dict[str, Path]:
    """Write ROOT/Nexus-GenV2/ (AR + tokenizer + configs) and ROOT/generation_decoder.bin, ROOT/edit_decoder.bin.
    Refuses before writing anything when the disk cannot hold it; `announce(plan, free_bytes)` is told first."""
    root = Path(root)
    need = bytes_planned(parts, ar_layers, vision_layers, dit_blocks)  # before anything is built or written
    where = next((q for q in (root, *root.parents) if q.exists()), Path("."))
    free = shutil.disk_usage(where).free
    if need > free:
        raise NexusError(f"make-full-size needs {need / 1e9:.1f} GB in {root}, only {free / 1e9:.1f} GB are free: "
                         "cut the depth (--ar-layers, --vision-layers, --dit-blocks) or write fewer --parts")
    root.mkdir(parents=True, exist_ok=True)
    folder = root / AR_FOLDER
    ids = None
    if "ar" in parts:
        folder.mkdir(parents=True, exist_ok=True)
        ids = _tokenizer(folder, tokenizer_files)
    p = plan(parts, ar_layers, vision_layers, dit_blocks, ids)
    if announce is not None:
        announce(p, free)
    progress = progress or (lambda name, k, n: None)
    out = {}
    if "ar" in p.specs:
        out["ar"] = write_ar(folder, p, seed, progress)
    for kind in ("generation", "editing"):
        if kind in p.specs:
            out[kind] = write_decoder(root / DECODER_FILES[kind], p.specs[kind], seed + 1, progress)
    return out


def write_clip_l(path, seed: int = 0) -> Path:
    """A random CLIP-L text encoder at the real size (12 layers, 768 wide, the real vocabulary) under the key names
    of FLUX's clip_l.safetensors (text_model.*, text_projection): what a full-size run feeds the pooled input."""
    from transformers import CLIPTextConfig, CLIPTextModelWithProjection

    cfg = CLIPTextConfig(vocab_size=49408, hidden_size=768, intermediate_size=3072, num_hidden_layers=12,
                         num_attention_heads=12, max_position_embeddings=77, hidden_act="quick_gelu",
                         projection_dim=768, bos_token_id=49406, eos_token_id=49407, pad_token_id=1)
    with torch.device("meta"):
        model = CLIPTextModelWithProjection(cfg)
    spec = [(k, tuple(v.shape)) for k, v in model.state_dict().items() if v.dtype.is_floating_point]
    entries = [(n, s, torch.float16, lambda name, s=s: random_tensor(name, s, seed).to(torch.float16))
               for n, s in spec]
    return write_safetensors_streamed(Path(path), entries, {"format": "pt"})
