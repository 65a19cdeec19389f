"""Find and validate the files of a Nexus-Gen AR, a folder as published or one file made by `nexus-gen convert`,
before anything heavy is loaded.

The single file holds the model's tensors (Linear weights already in fp8 with their row scales) and, in its header's
metadata, the folder's small files (config, generation config, chat template, tokenizer). Those are unpacked into
a private temporary folder once per file version, so everything downstream reads a folder as usual.
"""
from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import NexusError
from ..files.json_file import read_json
from ..files.private_temp import unpacked_once
from ..files.safetensors_check import read_header, tensor_names

VISION_HEAD = "vision_head.weight"
PREFILL_TABLE = "image_prefill_embeds.weight"
SINGLE_FILE_FORMAT = "nexus-gen-ar"
FILE_PREFIX = "file/"  # metadata keys of the folder's small files in a single-file AR
SMALL_FILES = ("config.json", "generation_config.json", "chat_template.json", "chat_template.jinja",
               "preprocessor_config.json", "tokenizer.json", "vocab.json", "merges.txt", "tokenizer_config.json",
               "added_tokens.json", "special_tokens_map.json")


@dataclass
class ArCheckpoint:
    folder: Path  # the folder with config, tokenizer and chat template (unpacked, for a single file)
    config: dict
    shards: list[Path]
    # tensor name -> shard holding it (only the two Nexus tensors are needed by name)
    nexus_tensors: dict[str, Path] = field(default_factory=dict)
    generation_config: dict = field(default_factory=dict)
    source: Path | None = None  # the single file, when the AR is one
    stored_as: str | None = None  # "fp8_e4m3fn" / "fp8_e5m2": a single file's Linear weights are stored quantized

    @property
    def version(self) -> int:
        return 2 if PREFILL_TABLE in self.nexus_tensors else 1

    @property
    def where(self) -> Path:
        """What to name in messages: the file the user chose, or the folder."""
        return self.source or self.folder


def _is_qwen25vl(config: dict) -> bool:
    archs = config.get("architectures") or []
    return config.get("model_type") == "qwen2_5_vl" or any("Qwen2_5_VL" in a for a in archs)


def inspect_ar_folder(folder) -> ArCheckpoint:
    """Check config, shards, tokenizer and the Nexus tensors of an AR folder (or a single-file AR); raise
    NexusError naming the first problem found."""
    folder = Path(folder)
    if folder.is_file():
        return inspect_ar_file(folder)
    if not folder.is_dir():
        raise NexusError(f"Nexus-Gen model folder not found: {folder} (expected a Nexus-GenV2 folder with config.json)")
    config = read_json(folder / "config.json", "a Qwen2.5-VL config (model_type 'qwen2_5_vl')")
    if not _is_qwen25vl(config):
        raise NexusError(
            f"{folder / 'config.json'} describes model_type={config.get('model_type')!r} "
            f"(architectures {config.get('architectures')}); Nexus-Gen needs a Qwen2.5-VL checkpoint "
            "(model_type 'qwen2_5_vl')"
        )
    index = folder / "model.safetensors.index.json"
    if index.is_file():
        weight_map = read_json(index, "a safetensors shard index with a 'weight_map'").get("weight_map")
        if not isinstance(weight_map, dict) or not weight_map:
            raise NexusError(f"{index} has no 'weight_map'")
        odd = next((v for v in weight_map.values() if not isinstance(v, str) or os.path.basename(v) != v
                    or "\\" in v or v in ("", ".", "..")), None)
        if odd is not None:
            raise NexusError(f"{index} names a shard {odd!r}: shards are files beside the index (the index is "
                             "damaged)")
        shards = [folder / s for s in sorted(set(weight_map.values()))]
    elif (folder / "model.safetensors").is_file():
        shards = [folder / "model.safetensors"]
    else:
        raise NexusError(
            f"No weights in {folder}: expected model.safetensors or model.safetensors.index.json with its shards"
        )
    found: dict[str, Path] = {}
    holder: dict[str, Path] = {}
    for shard in shards:
        if not shard.is_file():
            raise NexusError(f"Missing weight shard {shard.name} in {folder} (listed in model.safetensors.index.json)")
        names = tensor_names(shard)  # refuses truncated shards and damaged headers
        for name, info in names.items():
            if info["dtype"] not in FLOAT_DTYPES:
                raise NexusError(f"{shard}: '{name}' is stored as {info['dtype']}; an AR folder's weights are "
                                 "floating point (F32, F16, BF16): the shard is damaged or from another tool")
            if name in holder:  # a loader would take whichever shard it read last
                raise NexusError(f"Tensor '{name}' is in two shards of {folder}: {holder[name].name} and {shard.name}; "
                                 "the folder mixes files of two downloads or conversions: download it again")
            holder[name] = shard
        for key in (VISION_HEAD, PREFILL_TABLE):
            if key in names:
                found[key] = shard
    if index.is_file():
        _check_index(index, weight_map, holder)
    if VISION_HEAD not in found:
        raise NexusError(
            f"The checkpoint in {folder} has no '{VISION_HEAD}': it is a plain Qwen2.5-VL model, "
            "not Nexus-Gen (which adds vision_head and image_prefill_embeds)"
        )
    gen_path = folder / "generation_config.json"
    gen = read_json(gen_path, "a generation config") if gen_path.is_file() else {}
    check_tokenizer(folder, config)
    return ArCheckpoint(folder, config, shards, found, gen)


def _check_index(index: Path, weight_map: dict, holder: dict[str, Path]) -> None:
    """The index and the shards must agree tensor by tensor: each tensor is where weight_map says, and nothing in
    the shards is missing from it (loaders go by either, so a disagreement loads the wrong weights)."""
    for name, shard_name in weight_map.items():
        got = holder.get(name)
        if got is None:
            raise NexusError(f"{index.name} lists tensor '{name}' in {shard_name}, but no shard holds it: the shard "
                             "is from another download; download the folder again")
        if got.name != shard_name:
            raise NexusError(f"{index.name} lists tensor '{name}' in {shard_name}, but it is in {got.name}: the index "
                             "and the shards come from different downloads")
    extra = sorted(set(holder) - set(weight_map))
    if extra:
        raise NexusError(f"{holder[extra[0]].name} holds tensor '{extra[0]}' (and {len(extra) - 1} more) that "
                         f"{index.name} does not list: the index and the shards come from different downloads")


# config.json field -> the token it must name (what the image span and the chat structure are built from)
SPECIAL_TOKENS = {"image_token_id": "<|image_pad|>", "vision_start_token_id": "<|vision_start|>",
                  "vision_end_token_id": "<|vision_end|>"}
_TOKENIZER_SEEN: dict = {}


def _stamp(paths) -> tuple:
    return tuple((p.name, p.stat().st_mtime_ns, p.stat().st_size) for p in paths if p.is_file())


def check_tokenizer(folder: Path, config: dict) -> None:
    """The folder's tokenizer exists, names the image tokens with the ids config.json uses, and has no token
    beyond the model's embedding rows. Without it transformers builds an empty tokenizer and the image is made
    from no prompt at all. Reads the files' JSON only (no tokenizer is built); remembered per file version."""
    files = [folder / n for n in ("tokenizer.json", "vocab.json", "merges.txt", "tokenizer_config.json",
                                  "added_tokens.json", "config.json")]
    key = (str(folder), _stamp(files))
    if key in _TOKENIZER_SEEN:
        if _TOKENIZER_SEEN[key] is not None:
            raise NexusError(_TOKENIZER_SEEN[key])
        return
    try:
        _check_tokenizer(folder, config)
    except NexusError as e:
        _TOKENIZER_SEEN[key] = str(e)
        raise
    _TOKENIZER_SEEN[key] = None


def _check_tokenizer(folder: Path, config: dict) -> None:
    fast, vocab, merges = folder / "tokenizer.json", folder / "vocab.json", folder / "merges.txt"
    if fast.is_file():
        tj = read_json(fast, "a tokenizers file (tokenizer.json)")
        base = len((tj.get("model") or {}).get("vocab") or {})
        added = {t.get("content"): t.get("id") for t in tj.get("added_tokens") or [] if isinstance(t, dict)}
    elif vocab.is_file() and merges.is_file():
        base = len(read_json(vocab, "the tokenizer's vocabulary (vocab.json)"))
        added = {}
    else:
        raise NexusError(f"No tokenizer in {folder}: expected tokenizer.json, or vocab.json with merges.txt (copy "
                         "them from the Nexus-GenV2 download); without them the prompt would be dropped unread")
    tc = folder / "tokenizer_config.json"
    if tc.is_file():
        for i, t in (read_json(tc, "the tokenizer's settings").get("added_tokens_decoder") or {}).items():
            if isinstance(t, dict) and str(i).isdigit():
                added.setdefault(t.get("content"), int(i))
    extra = folder / "added_tokens.json"
    if extra.is_file():
        for content, i in read_json(extra, "the tokenizer's added tokens").items():
            added.setdefault(content, i)
    for field, token in SPECIAL_TOKENS.items():
        want = config.get(field)
        if want is None:
            continue
        if token not in added:
            raise NexusError(f"The tokenizer in {folder} has no {token} token (config.json's {field} is {want}): "
                             "its files come from another model; copy the tokenizer files of Nexus-GenV2")
        if added[token] != want:
            raise NexusError(f"The tokenizer in {folder} gives {token} the id {added[token]}, but config.json's "
                             f"{field} is {want}: the tokenizer and config.json come from different models")
    top = max([base - 1, *[i for i in added.values() if isinstance(i, int)]])
    rows = config.get("vocab_size") or (config.get("text_config") or {}).get("vocab_size")
    if rows is not None and top >= rows:
        raise NexusError(f"The tokenizer in {folder} has token ids up to {top}, but the model has only {rows} "
                         "embedding rows (config.json's vocab_size): the tokenizer comes from another model")


def is_single_file_ar(path) -> bool:
    """Whether `path` is a single-file AR (its safetensors header says so); False for anything unreadable."""
    try:
        return (read_header(path).get("__metadata__") or {}).get("format") == SINGLE_FILE_FORMAT
    except (NexusError, OSError, KeyError, TypeError, AttributeError):
        return False


def _unpacked(path: Path, meta: dict) -> Path:
    """A folder holding the single file's small files (a few MB), made once per file version and shared by this
    user's processes (see files/private_temp.py for how the shared temp folder is made safe)."""
    files = {key[len(FILE_PREFIX):]: text for key, text in meta.items()
             if key.startswith(FILE_PREFIX) and key[len(FILE_PREFIX):] in SMALL_FILES}
    st = path.stat()
    tag = hashlib.sha1(f"{os.path.realpath(path)}:{st.st_size}:{st.st_mtime_ns}".encode()).hexdigest()[:16]
    return unpacked_once(f"ar-{tag}", files, f"the small files of {path.name}")


def inspect_ar_file(path) -> ArCheckpoint:
    """A single-file AR (`nexus-gen convert AR_FOLDER --out F.safetensors`): header, unpacked small files, tokenizer."""
    path = Path(path)
    header = read_header(path)  # refuses truncated files
    meta = header.get("__metadata__") or {}
    if meta.get("format") != SINGLE_FILE_FORMAT:
        raise NexusError(f"{path} is not a Nexus-Gen AR file (made by `nexus-gen convert` from the Nexus-GenV2 folder); "
                         "give the Nexus-GenV2 folder itself")
    folder = _unpacked(path, meta)
    try:
        config = read_json(folder / "config.json", f"a Qwen2.5-VL config inside {path.name}")
        if not _is_qwen25vl(config):
            raise NexusError(f"{path} holds a config for model_type={config.get('model_type')!r}, not Qwen2.5-VL")
        gen_path = folder / "generation_config.json"
        gen = read_json(gen_path, "a generation config") if gen_path.is_file() else {}
        check_tokenizer(folder, config)
    except NexusError as e:  # name the user's file, not the private folder its small files were unpacked into
        raise NexusError(str(e).replace(str(folder) + os.sep, f"{path} (packed) ").replace(str(folder), str(path))) \
            from None
    names = {k for k in header if k != "__metadata__"}
    if VISION_HEAD not in names:
        raise NexusError(f"{path} has no '{VISION_HEAD}': not a Nexus-Gen AR")
    found = {k: path for k in (VISION_HEAD, PREFILL_TABLE) if k in names}
    stored = meta.get("weight_dtype")
    if stored is None:
        raise NexusError(f"{path}: its header is incomplete (no weight_dtype in its metadata); make it again with "
                         "`nexus-gen convert`")
    check_file_tensors(path, header, config, stored)
    return ArCheckpoint(folder, config, [path], found, gen, source=path,
                        stored_as=stored if stored in ("fp8_e4m3fn", "fp8_e5m2") else None)


FLOAT_DTYPES = {"F32", "F16", "BF16"}
FP8_DTYPES = {"fp8_e4m3fn": "F8_E4M3", "fp8_e5m2": "F8_E5M2"}


def check_file_tensors(path: Path, header: dict, config: dict, stored: str) -> None:
    """What the header alone can refuse in a one-file AR, before any model is built: each fp8 Linear's weight in
    the stored fp8 dtype with a 1-D float32 weight_scale (and bias) of its row count; every other tensor floating
    point (an integer Linear weight cannot be computed with); the vocabulary and width of the embedding table and
    the output head equal to config.json's."""
    fp8 = FP8_DTYPES.get(stored)
    tensors = {k: v for k, v in header.items() if k != "__metadata__"}
    text = config.get("text_config") or {}
    vocab = config.get("vocab_size") or text.get("vocab_size")
    hidden = config.get("hidden_size") or text.get("hidden_size")
    for name, info in tensors.items():
        dtype, shape = info["dtype"], info["shape"]
        if name.endswith(".weight_scale"):
            weight = tensors.get(name[: -len("_scale")])
            if fp8 is None or weight is None:
                raise NexusError(f"{path}: '{name}' scales no fp8 weight (the file is damaged)")
            if dtype != "F32" or shape != weight["shape"][:1]:
                raise NexusError(f"{path}: '{name}' is {dtype} {shape}; a float32 scale per row of its weight "
                                 f"{weight['shape']} was expected (the file is damaged)")
            continue
        scaled = f"{name}_scale" in tensors
        if scaled:
            if dtype != fp8 or len(shape) != 2:
                raise NexusError(f"{path}: '{name}' is {dtype} {shape}; a 2-D {fp8} weight was expected (the file "
                                 f"says its Linears are stored as {stored})")
        elif dtype not in FLOAT_DTYPES:
            raise NexusError(f"{path}: '{name}' is stored as {dtype}; Nexus-Gen computes with floating-point "
                             "weights (F32, F16, BF16; fp8 only with a weight_scale)")
        if name.endswith(".bias") and f"{name[: -len('bias')]}weight_scale" in tensors:
            rows = tensors[f"{name[: -len('bias')]}weight"]["shape"][:1]
            if shape != rows:
                raise NexusError(f"{path}: '{name}' has shape {shape}, its weight has {rows[0]} rows")
    for name in ("model.embed_tokens.weight", "model.language_model.embed_tokens.weight", "lm_head.weight"):
        info = tensors.get(name)
        if info is not None and vocab and hidden and info["shape"] != [vocab, hidden]:
            raise NexusError(f"{path}: '{name}' has shape {info['shape']}, but its config.json says a vocabulary of "
                             f"{vocab} and a width of {hidden}: the config and the weights come from different models")


def single_file_metadata(folder: Path, weight_dtype: str, compute_dtype: str) -> dict[str, str]:
    """What a single-file AR carries besides its tensors: its format and the folder's small files."""
    meta = {"format": SINGLE_FILE_FORMAT, "version": "1", "weight_dtype": weight_dtype,
            "compute_dtype": compute_dtype, "source": Path(folder).name}
    for name in SMALL_FILES:
        if (Path(folder) / name).is_file():
            meta[FILE_PREFIX + name] = (Path(folder) / name).read_text(encoding="utf-8")
    return meta


def write_ar_file(state: dict, folder, out, weight_dtype: str, compute_dtype: str, overwrite: bool = False) -> Path:
    """Write a loaded AR's tensors (`state`: its module tree's state dict, fp8 Linears with their scales) and the
    folder's small files as one safetensors file, one tensor at a time, atomically."""
    from ..files.safetensors_write import write_safetensors_streamed

    entries = [(k, tuple(v.shape), v.dtype, state.__getitem__) for k, v in state.items()]
    return write_safetensors_streamed(out, entries, single_file_metadata(Path(folder), weight_dtype, compute_dtype),
                                      overwrite=overwrite)
