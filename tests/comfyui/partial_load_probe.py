"""Run inside ComfyUI's Python: the AR on ComfyUI's cast-on-demand ops, loaded partially on a tiny memory budget,
must compute what the plain AR computes. argv: comfy_root, repo, tiny AR folder, output .json.

Checks, for 16/32-bit and fp8 weights: generation embeddings (fast and reference mode), ViT features, the reply
ids, and how many layers the budget left streamed. Also: the patcher class is the host's CoreModelPatcher looked up
at call time (main.py rebinds it to ModelPatcherDynamic on Dynamic VRAM hosts)."""
import json
import sys

comfy_root, repo, ar_folder, out_path = sys.argv[1:5]
from host_probe import import_pack  # noqa: E402

import_pack(comfy_root, repo)
import torch  # noqa: E402
import comfy.model_patcher  # noqa: E402
from nexus_pack.nexus_core.ar import encode_image, generation_request, load_ar, predict  # noqa: E402
from nexus_pack.nodes.host import memory  # noqa: E402
from PIL import Image  # noqa: E402

torch.set_num_threads(1)  # one thread: reductions in a fixed order, so equal inputs give equal outputs
img = Image.new("RGB", (96, 64), (200, 40, 30))
req = [generation_request("a red fox in the snow")]


def outputs(ar):
    fast = predict(ar, req, "fast").embeddings
    ref = predict(ar, req, "reference", max_new_tokens=100)
    return {"fast": fast, "reference": ref.embeddings, "vit": encode_image(ar, img, 81),
            "ids": ref.outputs[0].generated_ids}


def streamed(weight_dtype, split=False):
    ar = load_ar(ar_folder, "cpu", "float32", weight_dtype=weight_dtype)
    want = outputs(ar)
    if split:  # as ARHandle.wrap splits the real head and table, with the thresholds made small for the tiny AR
        from nexus_pack.nexus_core.memory.row_blocks import split_large_layers
        row = ar.hidden_size * 4
        table = ar.language_model.embed_tokens.num_embeddings * row  # the head's size too: those two alone
        assert sorted(split_large_layers(ar.model, torch.float32, whole_up_to=table - 1, block_bytes=row * 7)) == \
            ["lm_head", "model.language_model.embed_tokens"]
    patcher = memory.patcher_for(ar.model, torch.device("cpu"))
    total = patcher.model_size()
    patcher.load(torch.device("cpu"), lowvram_model_memory=total // 8)  # room for an eighth of the weights
    casting = [n for n, m in patcher.model.named_modules() if getattr(m, "prev_comfy_cast_weights", None) is not None]
    got = outputs(ar)
    diffs = {k: float((want[k] - got[k]).abs().max()) for k in ("fast", "reference", "vit")}
    return {"max_abs_diff": diffs, "same_ids": want["ids"] == got["ids"], "streamed_modules": len(casting),
            "streamed_blocks": len([n for n in casting if ".blocks." in n]),
            "patcher": type(patcher).__name__, "model_size": total,
            "cast_classes": sorted({type(m).__name__ for m in ar.model.modules() if hasattr(m, "comfy_cast_weights")}),
            "classes": sorted({type(m).__name__ for m in ar.model.modules()})}


def rebound_patcher_class():
    """What the pack builds when the host has rebound CoreModelPatcher (as main.py does for Dynamic VRAM)."""
    class HostPatcher(comfy.model_patcher.ModelPatcher):
        pass

    before = getattr(comfy.model_patcher, "CoreModelPatcher", None)
    comfy.model_patcher.CoreModelPatcher = HostPatcher
    try:
        return type(memory.patcher_for(torch.nn.Linear(2, 2), torch.device("cpu"))).__name__
    finally:
        if before is None:
            del comfy.model_patcher.CoreModelPatcher
        else:
            comfy.model_patcher.CoreModelPatcher = before


def flow_shift():
    """The MODEL the decoder loader makes samples with the reference's shift: max |sigma(t) - 3t/(1+2t)|, and the
    editing wrapper is attached."""
    from pathlib import Path

    from nexus_pack.nexus_core.decoder import read_decoder
    from nexus_pack.nexus_core.decoder.dit import comfyui_state
    from nexus_pack.nodes.host.flux_model import WRAPPER_KEY, apply_nexus, load_dit

    model = apply_nexus(load_dit(comfyui_state(read_decoder(Path(ar_folder) / "generation_decoder.bin"))))
    t = torch.linspace(0.01, 1.0, 100)
    sampling = model.get_model_object("model_sampling")
    wrappers = str(model.wrappers)
    return {"max_shift_diff": float((sampling.sigma(t) - 3 * t / (1 + 2 * t)).abs().max()),
            "wrapper": WRAPPER_KEY in wrappers}


result = {"flow_shift": flow_shift(), "core_patcher": getattr(comfy.model_patcher, "CoreModelPatcher", comfy.model_patcher.ModelPatcher).__name__,
          "rebound": rebound_patcher_class(), "default": streamed(None), "fp8": streamed("fp8_e4m3fn"),
          "blocks": streamed(None, split=True)}
with open(out_path, "w") as f:
    json.dump(result, f, indent=1)
print(json.dumps(result, indent=1))
