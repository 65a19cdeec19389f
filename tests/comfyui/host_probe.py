"""Shared start of the probes that run inside ComfyUI's Python: ComfyUI on the CPU, then this pack imported the way
ComfyUI imports it (a package with relative imports), under the name `nexus_pack`."""
import importlib.util
import sys


def import_pack(comfy_root: str, repo: str):
    sys.path.insert(0, comfy_root)
    from comfy.cli_args import args

    args.cpu = True  # before comfy.model_management is imported: a CPU torch has no CUDA
    spec = importlib.util.spec_from_file_location("nexus_pack", f"{repo}/__init__.py", submodule_search_locations=[repo])
    pack = importlib.util.module_from_spec(spec)
    sys.modules["nexus_pack"] = pack
    spec.loader.exec_module(pack)
    return pack
