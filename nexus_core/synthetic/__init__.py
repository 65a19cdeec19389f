"""Random model sets in the real on-disk layouts, deterministic from a seed: `nexus-gen make-tiny` writes tiny ones
for tests and the demo. Built on ar/, decoder/ and flux/; imported only by the command line, tests and tools."""
from __future__ import annotations
from ..loading import companions  # noqa: F401  (before transformers: hides a broken torchvision/torchaudio)

import json
import time
from pathlib import Path

from ..files.atomic import relax_private_files
from ..settings.validate import check_folder_target
from .ar import write_tiny_ar
from .decoders import write_edit_decoder, write_generation_decoder
from .flux import write_tiny_flux


def make_tiny(root, seed: int = 0, comfyui: bool = False) -> dict[str, Path]:
    """<root>/Nexus-GenV2 (AR folder + both decoder .bin files) and <root>/FLUX.1-dev (CLIP-L, T5, tokenizers, AE).
    comfyui=True: a ComfyUI models folder instead, under the real files' names (see make_tiny_comfyui)."""
    check_folder_target(root, "make-tiny folder")
    root, start = Path(root), time.time()
    if comfyui:
        paths = make_tiny_comfyui(root, seed)
    else:
        ar = write_tiny_ar(root / "Nexus-GenV2", seed=seed)
        cfg = json.loads((ar / "config.json").read_text())
        gen = write_generation_decoder(ar / "generation_decoder.bin", cfg["hidden_size"], seed=seed + 10)
        edit = write_edit_decoder(ar / "edit_decoder.bin", cfg, seed=seed + 20)
        flux = write_tiny_flux(root / "FLUX.1-dev", seed=seed + 30)
        paths = {"ar": ar, "generation_decoder": gen, "edit_decoder": edit, "flux": flux}
    relax_private_files(root, start)
    return paths


def make_tiny_comfyui(models, seed: int = 0) -> dict[str, Path]:
    """A ComfyUI `models` folder: nexus_gen/Nexus-GenV2/ (AR + decoders), text_encoders/clip_l.safetensors and
    t5xxl_fp16.safetensors (tiny, each with its `<stem>.tokenizer/` folder), vae/ae.safetensors, a FULL-SIZE
    random FLUX AE so ComfyUI's native VAE loader accepts it, and (when the gguf package is installed) the
    generation decoder as a Q8_0 GGUF in diffusion_models/."""
    import shutil
    import tempfile

    from safetensors.torch import load_file, save_file

    from ..flux.text_encoders import normalize_clip_keys, normalize_t5_keys
    from .flux import FLUX_AE, write_bfl_ae

    models = Path(models)
    ar = write_tiny_ar(models / "nexus_gen" / "Nexus-GenV2", seed=seed)
    cfg = json.loads((ar / "config.json").read_text())
    write_generation_decoder(ar / "generation_decoder.bin", cfg["hidden_size"], seed=seed + 10)
    write_edit_decoder(ar / "edit_decoder.bin", cfg, seed=seed + 20)
    te = models / "text_encoders"
    te.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        flux = write_tiny_flux(Path(tmp) / "flux", seed=seed + 30)
        for name, enc, tok, norm in (("clip_l", "text_encoder", "tokenizer", normalize_clip_keys),
                                     ("t5xxl_fp16", "text_encoder_2", "tokenizer_2", normalize_t5_keys)):
            # the key names of the real single files: text_model.* (CLIP-L), shared + encoder.* (T5)
            state = norm(load_file(str(flux / enc / "model.safetensors")))
            state.pop("encoder.embed_tokens.weight", None) if name.startswith("t5") else None
            save_file({k: v.contiguous() for k, v in state.items()}, str(te / f"{name}.safetensors"))
            shutil.rmtree(te / f"{name}.tokenizer", ignore_errors=True)
            shutil.copytree(flux / tok, te / f"{name}.tokenizer")
    (models / "vae").mkdir(parents=True, exist_ok=True)
    ae = write_bfl_ae(models / "vae" / "ae.safetensors", seed=seed + 40, **FLUX_AE)
    out = {"ar": ar, "text_encoders": te, "vae": ae}
    try:
        import gguf  # noqa: F401  (optional: the GGUF route needs it, and ComfyUI-GGUF brings it)
    except ImportError:
        return out
    from ..decoder.convert import convert_to_gguf
    (models / "diffusion_models").mkdir(parents=True, exist_ok=True)
    out["gguf"] = convert_to_gguf(ar / "generation_decoder.bin", models / "diffusion_models" / GGUF_NAME, "Q8_0")
    return out


GGUF_NAME = "nexus_gen_generation_decoder-Q8_0.gguf"
