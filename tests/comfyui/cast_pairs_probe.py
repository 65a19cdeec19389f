"""Run inside ComfyUI's Python: every cast our cast-on-demand layers make through comfy.ops is given back (uncast),
in the host's offloadable form where the host has it, also when the forward fails. Counts the calls of the host's
own functions on the CPU (a GPU would show the same as pinned VRAM pages that are never released).
argv: comfy_root, repo, out.json"""
import json
import sys

comfy_root, repo, out_path = sys.argv[1:4]
from host_probe import import_pack  # noqa: E402

import_pack(comfy_root, repo)
import torch  # noqa: E402
import comfy.ops  # noqa: E402
from nexus_pack.nexus_core.decoder.projectors import RMSNorm  # noqa: E402  (the merger's own norm class)
from nexus_pack.nodes.host import cast_ops  # noqa: E402

calls = {"cast": 0, "offloadable": 0, "uncast": 0}
real_cast = comfy.ops.cast_bias_weight
real_uncast = getattr(comfy.ops, "uncast_bias_weight", None)


def counting_cast(*args, **kwargs):
    calls["cast"] += 1
    calls["offloadable"] += int(bool(kwargs.get("offloadable")))
    return real_cast(*args, **kwargs)


def counting_uncast(*args, **kwargs):
    calls["uncast"] += 1
    return real_uncast(*args, **kwargs)


comfy.ops.cast_bias_weight = counting_cast
if real_uncast is not None:
    comfy.ops.uncast_bias_weight = counting_uncast

root = torch.nn.Sequential(RMSNorm(16384), RMSNorm(64))  # the editing merger's wide norm, and a small one
cast_ops.cast_on_demand(root)
for m in root:
    m.comfy_cast_weights = True  # as the host's patcher sets it for a layer it streams
x = torch.randn(2, 16384)
root[0](x)
failed = 0
try:  # a forward that fails after its cast (a shape that does not fit) must give the cast back too
    root[1](x)
except RuntimeError:
    failed = 1
json.dump({**calls, "host_has_uncast": real_uncast is not None, "failed_forwards": failed,
           "module_classes": [type(m).__name__ for m in root]}, open(out_path, "w"))
