"""Model folders: register models/nexus_gen (keeping extra_model_paths.yaml entries) and list what is there."""
from __future__ import annotations

import json
import logging
import os

log = logging.getLogger("nexus_gen")
FOLDER = "nexus_gen"
DECODER_FORMAT = "nexus-gen-decoder"


def register(folder_paths) -> None:
    """models/nexus_gen (decoders, AR folders) and models/LLM (AR folders, a common convention), keeping any
    paths extra_model_paths.yaml already gave these keys."""
    exts = set(folder_paths.supported_pt_extensions) | {".gguf"}
    for name in (FOLDER, "LLM"):
        default = os.path.join(folder_paths.models_dir, name)
        if name in folder_paths.folder_names_and_paths:
            paths, old = folder_paths.folder_names_and_paths[name]
            if default not in paths:
                paths.append(default)
            folder_paths.folder_names_and_paths[name] = (paths, set(old) | exts)
        else:
            folder_paths.folder_names_and_paths[name] = ([default], exts)


def search_roots(folder_paths, names) -> list[str]:
    roots = []
    for name in names:
        try:
            roots += [p for p in folder_paths.get_folder_paths(name) if os.path.isdir(p)]
        except KeyError:
            pass
    return roots


def _looks_like_weights_folder(files) -> bool:
    return "model.safetensors.index.json" in files or any(
        f.startswith("model") and f.endswith(".safetensors") for f in files)


AR_FILE_MARK = b'{"__metadata__":{"format":"nexus-gen-ar"'  # how our writer starts a single-file AR's header


def is_ar_file(path: str) -> bool:
    """A single-file AR (`nexus-gen convert Nexus-GenV2 --out F.safetensors`), told by the first bytes of its
    header, so listing does not parse the megabytes of tokenizer text it carries."""
    return _file_fact(path, "ar", _is_ar_file)


def _is_ar_file(path: str) -> bool:
    try:
        with open(path, "rb") as f:
            return f.read(8 + len(AR_FILE_MARK))[8:] == AR_FILE_MARK
    except OSError:
        return False


def model_folders(roots: list[str]) -> list[str]:
    """Relative paths of AR models under `roots`: folders with a Qwen2.5-VL config.json, or safetensors shards
    without any config.json (listed so the loader can say what is missing instead of the folder silently
    vanishing), and single-file ARs. Each folder's verdict is kept while it and its config.json are unchanged."""
    found = set()
    for root in roots:
        for cur, dirs, files in os.walk(root, followlinks=True):
            rel = os.path.relpath(cur, root).replace(os.sep, "/")
            is_model, ar_files = _folder_verdict(cur, rel, files)
            found.update(f if rel == "." else f"{rel}/{f}" for f in ar_files)
            if is_model:
                found.add(rel)
                dirs[:] = []
    return sorted(found)


def _folder_verdict(cur: str, rel: str, files: list[str]) -> tuple[bool, list[str]]:
    """(is an AR model folder, single-file ARs in it), remembered per folder and config.json version."""
    try:
        stamp = (os.stat(cur).st_mtime_ns,
                 os.stat(os.path.join(cur, "config.json")).st_mtime_ns if "config.json" in files else None)
    except OSError:
        stamp = None
    hit = _FOLDER_FACTS.get((cur, rel))
    if hit is not None and stamp is not None and hit[0] == stamp:
        return hit[1]
    verdict = _classify(cur, rel, files)
    _FOLDER_FACTS[(cur, rel)] = (stamp, verdict)
    return verdict


def _classify(cur: str, rel: str, files: list[str]) -> tuple[bool, list[str]]:
    ar_files = [] if "config.json" in files else [
        n for n in files if n.endswith(".safetensors") and is_ar_file(os.path.join(cur, n))]
    if "config.json" in files:
        try:
            with open(os.path.join(cur, "config.json"), encoding="utf-8") as f:
                cfg = json.load(f)
        except (OSError, ValueError):
            cfg = {"vision_config": "unreadable config: the loader says so"}
        return cfg.get("model_type") == "qwen2_5_vl" or "vision_config" in cfg, ar_files
    if rel != "." and _looks_like_weights_folder(files) and not ar_files:
        return True, ar_files
    return False, ar_files


def ar_models(folder_paths) -> list[str]:
    """What the AR loader lists: AR folders and single-file ARs under models/nexus_gen and models/LLM."""
    return model_folders(search_roots(folder_paths, (FOLDER, "LLM")))


def resolve_model_folder(folder_paths, rel: str, listed: list[str] | None = None) -> str:
    """The path of a listed AR (`listed`: the listing, when the caller has just made it). Only a listed name is
    joined onto a root: an absolute name would replace the root and '..' would leave it, and the listing (which
    follows links users placed in the folders) never holds either."""
    if not isinstance(rel, str) or rel not in (ar_models(folder_paths) if listed is None else listed):
        raise FileNotFoundError(f"Nexus-Gen model {str(rel)[:80]!r} is not one of the models listed under "
                                f"models/{FOLDER} or models/LLM")
    for root in search_roots(folder_paths, (FOLDER, "LLM")):
        cand = os.path.join(root, rel)
        if os.path.isdir(cand) or (os.path.isfile(cand) and is_ar_file(cand)):
            return cand
    raise FileNotFoundError(f"Nexus-Gen model '{rel}' not found under models/{FOLDER} or models/LLM "
                            "(expected the Nexus-GenV2 folder: config.json, safetensors shards, tokenizer files; or "
                            "one file made from it by `nexus-gen convert`)")


# Listing runs for every queued prompt (hosts call define_schema() several times per prompt) and reads file headers:
# what it learns of a file or folder is kept while the file's size and mtime, or the folder's mtime, stay the same.
_FILE_FACTS: dict = {}
_FOLDER_FACTS: dict = {}


def _file_fact(path: str, what: str, compute):
    try:
        st = os.stat(path)
    except OSError:
        return compute(path)
    key = (path, what)
    stamp = (st.st_size, st.st_mtime_ns)
    hit = _FILE_FACTS.get(key)
    if hit is None or hit[0] != stamp:
        hit = (stamp, compute(path))
        _FILE_FACTS[key] = hit
    return hit[1]


def _safetensors_header(path: str) -> dict | None:
    try:
        with open(path, "rb") as f:
            n = int.from_bytes(f.read(8), "little")
            if n <= 0 or n > 100_000_000:
                return None
            return json.loads(f.read(n))
    except (OSError, ValueError):
        return None


def looks_like_decoder(path: str) -> bool:
    """.bin files named *decoder*, safetensors whose header shows a Nexus-Gen decoder, and GGUF files named
    *decoder* or *nexus* (cheap checks: no tensor data is read; remembered per file version)."""
    return _file_fact(path, "decoder", _looks_like_decoder)


def _looks_like_decoder(path: str) -> bool:
    name = os.path.basename(path).lower()
    if name.endswith(".bin"):
        return "decoder" in name
    if name.endswith(".gguf"):
        return "decoder" in name or "nexus" in name
    if not name.endswith((".safetensors", ".sft")):
        return False
    header = _safetensors_header(path)
    if header is None:
        return False
    if (header.get("__metadata__") or {}).get("format") == DECODER_FORMAT:
        return True
    return any(k.startswith(("adapter.", "embedding_merger.")) for k in header)


def is_conversion_cache(path: str) -> bool:
    """A converted copy of a .bin that versions before Dec 2026 made (stamped with its source): not listed."""
    return _file_fact(path, "cache", _is_conversion_cache)


def _is_conversion_cache(path: str) -> bool:
    if not path.lower().endswith(".safetensors"):
        return False
    header = _safetensors_header(path) or {}
    return "source_stamp" in (header.get("__metadata__") or {})


_SAID_CACHES: set = set()


def say_unused_cache(path: str, models_dir: str | None = None) -> list[str]:
    """Earlier versions wrote a converted copy of each .bin on first use (<stem>.comfyui.safetensors, 24 GB). The
    .bin is now read in place, so such a copy is dead weight: say so once, with its size; never delete it unasked."""
    if not path.lower().endswith(".bin"):
        return []
    name = os.path.splitext(os.path.basename(path))[0] + ".comfyui.safetensors"
    places = [os.path.join(os.path.dirname(path), name)]
    if models_dir:
        places.append(os.path.join(models_dir, FOLDER, "converted", name))
    found = [c for c in places if os.path.isfile(c) and is_conversion_cache(c)]
    for cache in found:
        if cache not in _SAID_CACHES:
            _SAID_CACHES.add(cache)
            log.warning("Nexus-Gen: %s (%.1f GB) is a converted copy that earlier versions made of %s; it is no "
                        "longer used (the .bin is read in place) and can be deleted", cache,
                        os.path.getsize(cache) / 1e9, os.path.basename(path))
    return found


_LISTS: dict = {}


def decoder_files(folder_paths, gguf: bool = False) -> list[str]:
    """Decoder files under models/nexus_gen and models/diffusion_models, each once (conversion caches hidden);
    GGUF files only when `gguf` (the projector loader can read them; the DiT goes through a GGUF loader). The
    answer is kept while the host's own file lists (which it refreshes when a folder changes) stay the same."""
    names = (FOLDER, "diffusion_models") + (("unet_gguf",) if gguf else ())  # unet_gguf: ComfyUI-GGUF's
    lists = []
    for name in names:
        try:
            lists.append((name, tuple(folder_paths.get_filename_list(name))))
        except KeyError:
            continue
    key = tuple(lists)
    if _LISTS.get(gguf, (None,))[0] != key:
        _LISTS[gguf] = (key, _decoder_files(folder_paths, lists, gguf))
    return list(_LISTS[gguf][1])


def _decoder_files(folder_paths, lists, gguf: bool) -> list[str]:
    out = set()
    for name, files in lists:
        for rel in files:
            if rel.lower().endswith(".gguf") and not gguf:
                continue
            full = folder_paths.get_full_path(name, rel)
            if full and looks_like_decoder(full) and not is_conversion_cache(full):
                out.add(rel)
    return sorted(out)


def resolve_decoder(folder_paths, rel: str) -> str:
    """The path of a listed decoder file (the host's lookup is contained too; the list keeps other files out)."""
    if not isinstance(rel, str) or rel not in decoder_files(folder_paths, gguf=True):
        raise FileNotFoundError(f"Decoder {str(rel)[:80]!r} is not one of the decoder files listed under "
                                f"models/{FOLDER} or models/diffusion_models")
    for name in (FOLDER, "diffusion_models", "unet_gguf"):
        try:
            full = folder_paths.get_full_path(name, rel)
        except KeyError:
            full = None
        if full:
            return full
    raise FileNotFoundError(f"Decoder '{rel}' not found under models/{FOLDER} or models/diffusion_models")


def tokenizer_for(path: str, bundled: str) -> str:
    """A `<stem>.tokenizer/` folder next to a text-encoder file wins; otherwise ComfyUI's bundled copy."""
    stem = os.path.splitext(path)[0]
    local = stem + ".tokenizer"
    return local if os.path.isdir(local) else bundled
