"""Find and validate the files of a Nexus-Gen AR folder before anything heavy is loaded."""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import NexusError
from ..files.safetensors_check import tensor_names

VISION_HEAD = "vision_head.weight"
PREFILL_TABLE = "image_prefill_embeds.weight"


@dataclass
class ArCheckpoint:
    folder: Path
    config: dict
    shards: list[Path]
    # tensor name -> shard holding it (only the two Nexus tensors are needed by name)
    nexus_tensors: dict[str, Path] = field(default_factory=dict)
    generation_config: dict = field(default_factory=dict)

    @property
    def version(self) -> int:
        return 2 if PREFILL_TABLE in self.nexus_tensors else 1


def _read_json(path: Path, what: str) -> dict:
    if not path.is_file():
        raise NexusError(f"Missing {path.name} in {path.parent}: expected {what}")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise NexusError(f"{path} is not valid JSON ({e}); expected {what}") from None


def _is_qwen25vl(config: dict) -> bool:
    archs = config.get("architectures") or []
    return config.get("model_type") == "qwen2_5_vl" or any("Qwen2_5_VL" in a for a in archs)


def inspect_ar_folder(folder) -> ArCheckpoint:
    """Check config, shards and the Nexus tensors; raise NexusError naming the first problem found."""
    folder = Path(folder)
    if not folder.is_dir():
        raise NexusError(f"Nexus-Gen model folder not found: {folder} (expected a Nexus-GenV2 folder with config.json)")
    config = _read_json(folder / "config.json", "a Qwen2.5-VL config (model_type 'qwen2_5_vl')")
    if not _is_qwen25vl(config):
        raise NexusError(
            f"{folder / 'config.json'} describes model_type={config.get('model_type')!r} "
            f"(architectures {config.get('architectures')}); Nexus-Gen needs a Qwen2.5-VL checkpoint "
            "(model_type 'qwen2_5_vl')"
        )
    index = folder / "model.safetensors.index.json"
    if index.is_file():
        weight_map = _read_json(index, "a safetensors shard index with a 'weight_map'").get("weight_map")
        if not isinstance(weight_map, dict) or not weight_map:
            raise NexusError(f"{index} has no 'weight_map'")
        shards = [folder / s for s in sorted(set(weight_map.values()))]
    elif (folder / "model.safetensors").is_file():
        shards = [folder / "model.safetensors"]
    else:
        raise NexusError(
            f"No weights in {folder}: expected model.safetensors or model.safetensors.index.json with its shards"
        )
    found: dict[str, Path] = {}
    for shard in shards:
        if not shard.is_file():
            raise NexusError(f"Missing weight shard {shard.name} in {folder} (listed in model.safetensors.index.json)")
        names = tensor_names(shard)  # refuses truncated shards
        for key in (VISION_HEAD, PREFILL_TABLE):
            if key in names:
                found[key] = shard
    if VISION_HEAD not in found:
        raise NexusError(
            f"The checkpoint in {folder} has no '{VISION_HEAD}': it is a plain Qwen2.5-VL model, "
            "not Nexus-Gen (which adds vision_head and image_prefill_embeds)"
        )
    gen_path = folder / "generation_config.json"
    gen = _read_json(gen_path, "a generation config") if gen_path.is_file() else {}
    return ArCheckpoint(folder, config, shards, found, gen)
