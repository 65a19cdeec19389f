"""`nexus-gen demo`: every stage on a tiny random model set, created on first use. Works on any machine:
understanding, generation, editing with both decoders and a variation, with the time of each stage."""
from __future__ import annotations

import time
from pathlib import Path

from PIL import Image, ImageDraw

from ..files.atomic import atomic_write
from .text_stream import for_terminal


def _demo_image(path: Path) -> Path:
    img = Image.new("RGB", (150, 100), (235, 235, 220))
    d = ImageDraw.Draw(img)
    d.rectangle((15, 20, 60, 80), fill=(200, 30, 30))
    d.ellipse((85, 25, 135, 75), fill=(30, 60, 200))
    with atomic_write(path) as tmp:
        img.save(tmp, format="PNG")
    return path


def run_demo(out: Path, device="auto", dtype="auto") -> dict:
    """Each stage's time is printed as soon as it finishes; the list of outputs comes at the end."""
    from ..settings.validate import check_folder_target

    check_folder_target(out, "demo folder")
    print(f"Nexus-Gen demo on a tiny random model set; outputs are noise by design. Writing into {out.resolve()}",
          flush=True)
    from ..ar import (editing_request, encode_image, generation_request, load_ar, predict, reference_embeddings,
                      understand)
    from ..decoder import load_decoder
    from ..embeddings.file import save_embeddings
    from ..pipeline import DecodeSettings, decode_embeddings, load_flux, save_png
    from ..synthetic import make_tiny

    out.mkdir(parents=True, exist_ok=True)
    models = out / "models"
    times = {}
    print("stage times:", flush=True)

    def stage(name, fn):
        t = time.perf_counter()
        result = fn()
        times[name] = time.perf_counter() - t
        print(f"  {name:<36} {times[name]:7.2f} s", flush=True)
        return result

    if not (models / "FLUX.1-dev" / "ae.safetensors").is_file():
        stage("make-tiny", lambda: make_tiny(models))
    image = _demo_image(out / "input.png")
    ar = stage("load AR", lambda: load_ar(models / "Nexus-GenV2", device, dtype))
    answer = stage("understand", lambda: understand(ar, "What is in this picture?", image, max_new_tokens=24))
    with atomic_write(out / "understanding.txt") as tmp:
        tmp.write_text(answer, encoding="utf-8")
    gen = stage("embeds (generation, reference)", lambda: predict(
        ar, [generation_request("A red fox sitting in the snow at sunset.")], "reference", max_new_tokens=120))
    save_embeddings(out / "generation_embeds.safetensors", {"image_embeddings": gen.embeddings}, text=gen.texts)
    fast = stage("embeds (2 prompts, fast)", lambda: predict(
        ar, [generation_request("a cat"), generation_request("一只小狗", "zh")], "fast"))
    save_embeddings(out / "batch_embeds.safetensors", {"image_embeddings": fast.embeddings}, text=fast.texts)
    edit = stage("embeds (editing, reference)", lambda: predict(
        ar, [editing_request(ar, image, "Add a pair of sunglasses.")], "reference", max_new_tokens=120))
    save_embeddings(out / "editing_embeds.safetensors", {"image_embeddings": edit.embeddings}, text=edit.texts)
    vit = stage("encode (ViT 81)", lambda: encode_image(ar, image, 81))
    save_embeddings(out / "vit_embeds.safetensors", {"vit_embeddings": vit.unsqueeze(0)})
    ref = stage("encode (ViT 324 reference)", lambda: reference_embeddings(ar, image).unsqueeze(0))
    variation_in = encode_image(ar, image, 81, "crop").unsqueeze(0)

    text, vae = stage("load FLUX parts", lambda: load_flux(models / "FLUX.1-dev", ar.dtype, ar.device))
    gen_dec = stage("load generation decoder", lambda: load_decoder(
        models / "Nexus-GenV2" / "generation_decoder.bin", ar.checkpoint.config, ar.dtype, ar.device))
    edit_dec = stage("load editing decoder", lambda: load_decoder(
        models / "Nexus-GenV2" / "edit_decoder.bin", ar.checkpoint.config, ar.dtype, ar.device))
    small = dict(width=128, height=128, steps=8, guidance=3.5)
    jobs = [
        ("generation.png", gen_dec, gen.embeddings, None, DecodeSettings(cfg=3.0, seed=52, **small)),
        ("edit_editing_decoder.png", edit_dec, edit.embeddings, ref, DecodeSettings(cfg=1.0, seed=42, **small)),
        ("edit_generation_decoder.png", gen_dec, edit.embeddings, None, DecodeSettings(cfg=1.0, seed=42, **small)),
        ("variation.png", gen_dec, variation_in, None, DecodeSettings(cfg=1.0, seed=7, **small)),
    ]
    images = []
    for name, dec, emb, r, settings in jobs:
        imgs, _ = stage(f"decode {name}", lambda: decode_embeddings(dec, text, vae, emb, settings, r, ar.device))
        images += save_png(imgs, out / name)

    print(f"outputs ({ar.dtype}, {ar.device}):")
    print(f"  models:        {models}")
    print(f"  understanding: {out / 'understanding.txt'}  ({for_terminal(repr(answer[:40]))}...)")
    print(f"  generation:    {out / 'generation_embeds.safetensors'}  reply {for_terminal(repr(gen.texts[0][-60:]))}")
    print(f"  batch (fast):  {out / 'batch_embeds.safetensors'}  {tuple(fast.embeddings.shape)}")
    print(f"  editing:       {out / 'editing_embeds.safetensors'}")
    print(f"  ViT:           {out / 'vit_embeds.safetensors'}")
    for p in images:
        print(f"  image:         {p}")
    return times
