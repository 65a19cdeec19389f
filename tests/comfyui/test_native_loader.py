"""A `nexus-gen convert --layout comfyui` file loads with ComfyUI's own diffusion-model loader (the native UNET /
GGUF route), at FLUX's real width, and computes what our diffusers-based DiT computes."""
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

pytestmark = pytest.mark.comfyui
HERE = Path(__file__).resolve().parent


def test_converted_decoder_loads_with_comfyui_native_loader(comfy_root, tmp_path):
    from nexus_core.decoder import read_decoder
    from nexus_core.decoder.convert import convert_decoder
    from nexus_core.decoder.dit import build_dit
    from nexus_core.decoder.sampler import pack, unpack
    from nexus_core.synthetic.decoders import tiny_dit_state

    g = torch.Generator().manual_seed(0)
    state = tiny_dit_state(g, hidden=3072, n_double=1, n_single=1, context=4096, pooled=768)
    for i, (o, n) in {0: (4096, 64), 3: (4096, 4096)}.items():
        state[f"adapter.{i}.weight"] = torch.zeros(o, n, dtype=torch.bfloat16)
        state[f"adapter.{i}.bias"] = torch.zeros(o, dtype=torch.bfloat16)
    for i in (1, 4):
        state[f"adapter.{i}.weight"], state[f"adapter.{i}.bias"] = (torch.ones(4096, dtype=torch.bfloat16),
                                                                    torch.zeros(4096, dtype=torch.bfloat16))
    src = tmp_path / "generation_decoder.bin"
    torch.save(state, src)
    del state
    conv = convert_decoder(src, tmp_path / "nexus_dit.safetensors", "comfyui")

    x = torch.randn(1, 16, 8, 8, generator=g)
    ctx = torch.randn(1, 81, 4096, generator=g)
    pooled = torch.randn(1, 768, generator=g)
    save_file({"x": x, "sigma": torch.tensor([0.7]), "context": ctx, "pooled": pooled,
               "guidance": torch.tensor([3.5])}, str(tmp_path / "in.safetensors"))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(HERE / "shim"), os.environ.get("PYTHONPATH", "")]))
    r = subprocess.run([os.environ.get("COMFYUI_PYTHON", sys.executable), str(HERE / "native_loader_probe.py"),
                        str(comfy_root), str(conv), str(tmp_path / "in.safetensors"), str(tmp_path / "out.safetensors")],
                       cwd=comfy_root, env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    theirs = load_file(str(tmp_path / "out.safetensors"))["out"]

    dit = build_dit(read_decoder(src), torch.float32)
    with torch.inference_mode():
        from nexus_core.decoder.ids import image_ids, zero_text_ids
        v = dit(pack(x), ctx, pooled, torch.tensor([0.7]), image_ids(64, 64), zero_text_ids(81), torch.tensor([3.5]),
                return_dict=False)[0]
    ours = unpack(v, 8, 8)
    print(f"max |ComfyUI native loader - diffusers DiT| = {(theirs - ours).abs().max():.2e}")
    torch.testing.assert_close(theirs, ours, atol=1e-3, rtol=1e-3)
