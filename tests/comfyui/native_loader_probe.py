"""Run inside ComfyUI's Python: load a converted decoder with ComfyUI's own diffusion-model loader (what the
native UNET loader node calls) and run one forward on given inputs. argv: comfy_root, model, inputs, output."""
import sys

comfy_root, model_path, inputs_path, out_path = sys.argv[1:5]
sys.path.insert(0, comfy_root)
from comfy.cli_args import args  # noqa: E402

args.cpu = True
import torch  # noqa: E402
from safetensors.torch import load_file, save_file  # noqa: E402

import comfy.model_management as mm  # noqa: E402
import comfy.sd  # noqa: E402

patcher = comfy.sd.load_diffusion_model(model_path, model_options={"dtype": torch.float32})
model = patcher.model
assert type(model).__name__ == "Flux", type(model)
mm.load_models_gpu([patcher])
inp = load_file(inputs_path)
with torch.inference_mode():
    out = model.diffusion_model(inp["x"], inp["sigma"], inp["context"], y=inp["pooled"], guidance=inp["guidance"])
save_file({"out": out.float().contiguous()}, out_path)
print("ok", type(model).__name__, tuple(out.shape))
