"""Run inside ComfyUI's Python: ComfyUI's own FLUX detection on the decoders' real BFL key set, as meta tensors (no
weights). argv: comfy_root, repo, shapes .json ({kind: {name: shape}}), output .json.

Per decoder kind: detect_unet_config, the model config class model_config_from_unet picks, the pack's
host_describes / shape_config (nodes/host/flux_model.py), and ComfyUI's FLUX model built on the meta device from that
config taking the state dict the way load_model_weights gives it (missing / unexpected keys, parameter count)."""
import json
import sys

comfy_root, repo, shapes_path, out_path = sys.argv[1:5]
from host_probe import import_pack  # noqa: E402

import_pack(comfy_root, repo)
import torch  # noqa: E402
import comfy.model_detection  # noqa: E402
from nexus_pack.nodes.host.flux_model import host_describes, shape_config  # noqa: E402


def plain(v):
    if isinstance(v, (list, tuple)):
        return [plain(x) for x in v]
    if isinstance(v, (bool, int, float, str)) or v is None:
        return v
    return str(v)


result = {}
for kind, shapes in json.loads(open(shapes_path).read()).items():
    sd = {k: torch.empty(s, dtype=torch.bfloat16, device="meta") for k, s in shapes.items()}
    detected = comfy.model_detection.detect_unet_config(sd, "")
    model_config = comfy.model_detection.model_config_from_unet(sd, "")
    model = model_config.get_model(sd, "", device=torch.device("meta"))
    # what BaseModel.load_model_weights does (it only logs the leftovers): the host's renames, then a load
    to_load = model_config.process_unet_state_dict(dict(sd))
    missing, unexpected = model.diffusion_model.load_state_dict(to_load, strict=False, assign=True)
    result[kind] = {
        "detected": {k: plain(v) for k, v in detected.items()},
        "model_config": type(model_config).__name__,
        "host_describes": host_describes(sd),
        "shape_config": {k: plain(v) for k, v in shape_config(sd).items()},
        "missing": list(missing), "unexpected": list(unexpected),
        "params": sum(p.numel() for p in model.diffusion_model.parameters()),
    }
with open(out_path, "w") as f:
    json.dump(result, f, indent=1)
print("ok", {k: (v["model_config"], v["host_describes"]) for k, v in result.items()})
