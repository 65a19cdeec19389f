"""The node layer imported in CI without ComfyUI: small stand-ins for the host modules it imports, so the nodes'
schemas and their validate_inputs run as the host would call them.

What stands in:
* `comfy_api.latest.io`: records each input's type, name and options (min/max, options, ...), and keeps the
  Schema fields the pack passes; nothing of the host's behaviour beyond that.
* `folder_paths`: model folders under one root per key, listed and looked up the way the host does (a name is
  normalized under its root before the join, so '..' and absolute names stay inside).
* `comfy.*` and `server`: permissive stand-ins; code that calls into them at run time is not what these tests
  run (the real-host suite does).

The pack is imported as a package under another name (`nexus_pack_ci`), as ComfyUI imports it from its folder.
"""
from __future__ import annotations

import dataclasses
import importlib
import os
import sys
import types
from pathlib import Path
from unittest import mock

REPO = Path(__file__).resolve().parents[1]
PACK = "nexus_pack_host_ci"


@dataclasses.dataclass
class Input:
    io_type: str
    id: str
    options: dict

    @property
    def optional(self) -> bool:
        return bool(self.options.get("optional"))


class SocketType:
    def __init__(self, io_type: str):
        self.io_type = io_type

    def Input(self, id, **options):  # noqa: N802 - the host's spelling
        return Input(self.io_type, id, options)

    def Output(self, **options):  # noqa: N802
        return (self.io_type, options)


@dataclasses.dataclass
class Schema:
    node_id: str
    display_name: str = ""
    category: str = ""
    description: str = ""
    inputs: list = dataclasses.field(default_factory=list)
    outputs: list = dataclasses.field(default_factory=list)
    hidden: list = dataclasses.field(default_factory=list)
    search_aliases: list = dataclasses.field(default_factory=list)


class ComfyNode:
    hidden = types.SimpleNamespace(unique_id="1")

    @classmethod
    def GET_SCHEMA(cls):  # noqa: N802
        return cls.define_schema()


def _io_module():
    io = types.ModuleType("comfy_api.latest.io")
    for name in ("Combo", "Int", "Float", "String", "Boolean", "Image", "Model", "Conditioning", "Clip", "Sigmas",
                 "Latent", "Vae", "Mask"):
        setattr(io, name, SocketType(name.upper() if name != "Combo" else "COMBO"))
    io.Custom = SocketType
    io.Schema, io.ComfyNode = Schema, ComfyNode
    io.Hidden = types.SimpleNamespace(unique_id="unique_id", prompt="prompt")
    io.NodeOutput = lambda *values, **kw: values
    return io


class FolderPaths(types.ModuleType):
    """The host's folder_paths over `root`/<key> folders (and any extra roots given per key)."""

    supported_pt_extensions = {".ckpt", ".pt", ".pt2", ".bin", ".pth", ".safetensors", ".pkl", ".sft"}

    def __init__(self, root: Path):
        super().__init__("folder_paths")
        self.base_path = str(root)
        self.models_dir = str(root / "models")
        self.folder_names_and_paths = {
            k: ([os.path.join(self.models_dir, k)], set(self.supported_pt_extensions))
            for k in ("text_encoders", "diffusion_models", "vae", "loras")}

    def get_folder_paths(self, name):
        return list(self.folder_names_and_paths[name][0])

    def get_filename_list(self, name):
        roots, exts = self.folder_names_and_paths[name]
        out = set()
        for root in roots:
            for cur, _, files in os.walk(root, followlinks=True):
                for f in files:
                    if not exts or os.path.splitext(f)[1].lower() in exts:
                        out.add(os.path.relpath(os.path.join(cur, f), root).replace(os.sep, "/"))
        return sorted(out)

    def get_full_path(self, name, rel):
        if name not in self.folder_names_and_paths:
            return None
        rel = os.path.relpath(os.path.join("/", rel), "/")  # the host's containment of names
        for root in self.folder_names_and_paths[name][0]:
            full = os.path.join(root, rel)
            if os.path.isfile(full):
                return full
        return None

    def get_full_path_or_raise(self, name, rel):
        full = self.get_full_path(name, rel)
        if full is None:
            raise FileNotFoundError(rel)
        return full


def _ops_module():
    """comfy.ops as far as the pack's cast layers use it (0.3.68+ form): cast layers fetch their weight through
    cast_bias_weight(..., offloadable=True) and give it back with uncast_bias_weight; both calls are recorded in
    `CASTS` so tests can check that every cast is given back."""
    import torch

    ops = types.ModuleType("comfy.ops")
    ops.CASTS = []

    def cast_bias_weight(s, input=None, dtype=None, device=None, bias_dtype=None, offloadable=False):
        # the input's dtype unless given; an Embedding's input is ids, and the host keeps its table's dtype then
        dtype = dtype or (input.dtype if input.is_floating_point() else s.weight.dtype)
        weight = s.weight.to(device=device or input.device, dtype=dtype)
        bias = None if s.bias is None else s.bias.to(device=device or input.device, dtype=bias_dtype or dtype)
        ops.CASTS.append(("cast", s))
        return (weight, bias, "stream") if offloadable else (weight, bias)

    def uncast_bias_weight(s, weight, bias, stream):
        ops.CASTS.append(("uncast", s))

    class CastWeightBiasOp:
        comfy_cast_weights = False
        weight_function: list = []
        bias_function: list = []

    def cast_class(base):
        class Cast(base, CastWeightBiasOp):
            comfy_cast_weights = True

            def forward_comfy_cast_weights(self, input, *args, **kwargs):
                weight, bias, stream = cast_bias_weight(self, input, offloadable=True)
                try:
                    if hasattr(self, "_conv_forward"):
                        return self._conv_forward(input, weight, bias)
                    if isinstance(self, torch.nn.Embedding):
                        return torch.nn.functional.embedding(input, weight, self.padding_idx)
                    if isinstance(self, torch.nn.LayerNorm):
                        return torch.nn.functional.layer_norm(input, self.normalized_shape, weight, bias, self.eps)
                    return torch.nn.functional.linear(input, weight, bias)
                finally:
                    uncast_bias_weight(self, weight, bias, stream)

            def forward(self, *args, **kwargs):
                return self.forward_comfy_cast_weights(*args, **kwargs)
        Cast.__name__ = base.__name__
        return Cast

    ops.cast_bias_weight, ops.uncast_bias_weight, ops.CastWeightBiasOp = cast_bias_weight, uncast_bias_weight, \
        CastWeightBiasOp
    ops.manual_cast = types.SimpleNamespace(**{n: cast_class(getattr(torch.nn, n)) for n in (
        "Linear", "Embedding", "Conv2d", "Conv3d", "LayerNorm")})
    return ops


def import_pack(root: Path):
    """Import the pack's node modules against stand-ins, with ComfyUI's folders under `root`; returns
    (package namespace of the node modules, folder_paths stand-in). Undone by `forget_pack()`."""
    forget_pack()
    fp = FolderPaths(root)
    io = _io_module()
    latest = types.ModuleType("comfy_api.latest")
    latest.io, latest.ComfyExtension = io, type("ComfyExtension", (), {})
    comfy_api = types.ModuleType("comfy_api")
    comfy_api.latest = latest
    stand_ins = {"comfy_api": comfy_api, "comfy_api.latest": latest, "comfy_api.latest.io": io, "folder_paths": fp}
    for name in ("comfy", "comfy.model_management", "comfy.utils", "comfy.conds", "comfy.ops", "comfy.model_patcher",
                 "comfy.model_detection", "comfy.model_sampling", "comfy.patcher_extension", "comfy.sd",
                 "comfy.supported_models", "comfy.storage", "server"):
        stand_ins[name] = mock.MagicMock(name=name)
    for name in list(stand_ins):  # `import comfy.x as y` reads the attribute of the parent module
        if name.startswith("comfy."):
            setattr(stand_ins["comfy"], name.split(".", 1)[1], stand_ins[name])
    import torch
    mm = stand_ins["comfy.model_management"]
    mm.intermediate_device = mm.get_torch_device = lambda: torch.device("cpu")
    mm.throw_exception_if_processing_interrupted = lambda: None
    stand_ins["comfy.ops"] = _ops_module()
    stand_ins["comfy"].ops = stand_ins["comfy.ops"]
    stand_ins["comfy.model_management"].get_gpu_device_options = lambda: ["default", "cpu"]
    saved = {k: sys.modules.get(k) for k in stand_ins}
    sys.modules.update(stand_ins)
    _SAVED.update(saved)
    pack = types.ModuleType(PACK)
    pack.__path__ = [str(REPO)]
    sys.modules[PACK] = pack
    nodes = importlib.import_module(f"{PACK}.nodes")
    for mod in ("loaders", "embeds", "conditioning", "understand", "host.progress", "host.lora_notice",
                                "host.cast_ops", "inputs.paths", "inputs.checks"):
        importlib.import_module(f"{PACK}.nodes.{mod}")
    return nodes, fp


_SAVED: dict = {}


def forget_pack() -> None:
    for key in [k for k in sys.modules if k == PACK or k.startswith(PACK + ".")]:
        del sys.modules[key]
    for key, mod in _SAVED.items():
        if mod is None:
            sys.modules.pop(key, None)
        else:
            sys.modules[key] = mod
    _SAVED.clear()


def node_classes(nodes) -> list:
    """Every node class the extension registers (as the host gets them)."""
    import asyncio
    return asyncio.run(nodes.NexusGenExtension().get_node_list())
