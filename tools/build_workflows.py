"""Writes the example workflows in workflows/ (UI format) from compact specs, with /object_info from a running
ComfyUI that has this pack loaded. The same-stem .jpg thumbnails are screenshots of the real frontend taken by
tools/screenshot_workflows.js (headless Chromium).

    python tools/build_workflows.py --server http://127.0.0.1:8188
"""
from __future__ import annotations

import argparse
import json
import sys
import urllib.request
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "comfyui"))
from workflow_format import extra_values, input_specs, is_widget  # noqa: E402

OUT = Path(__file__).resolve().parents[1] / "workflows"
PACK_ID = "comfyui-nexus-gen"
MODEL_URLS = {
    "ae.safetensors": ("https://huggingface.co/black-forest-labs/FLUX.1-dev/resolve/main/ae.safetensors", "vae"),
    "clip_l.safetensors": ("https://huggingface.co/comfyanonymous/flux_text_encoders/resolve/main/clip_l.safetensors",
                           "text_encoders"),
    "t5xxl_fp16.safetensors": ("https://huggingface.co/comfyanonymous/flux_text_encoders/resolve/main/t5xxl_fp16.safetensors",
                               "text_encoders"),
}

AR = ("ar", "NexusGenARLoader", {"model": "Nexus-GenV2", "dtype": "auto"}, {})
GEN_DEC = ("dec", "NexusGenDecoderLoader", {"decoder": "Nexus-GenV2/generation_decoder.bin", "weight_dtype": "default"}, {})
EDIT_DEC = ("dec", "NexusGenDecoderLoader", {"decoder": "Nexus-GenV2/edit_decoder.bin", "weight_dtype": "default"}, {})
TE = ("te", "NexusGenTextEncoderLoader", {"clip_l": "clip_l.safetensors", "t5xxl": "none"}, {})
TE_T5 = ("te", "NexusGenTextEncoderLoader", {"clip_l": "clip_l.safetensors", "t5xxl": "t5xxl_fp16.safetensors"}, {})
VAE = ("vae", "VAELoader", {"vae_name": "ae.safetensors"}, {})
IMG = ("img", "LoadImage", {"image": "example.png"}, {})


def sampler_custom(steps, cfg, seed, latent="latent", negative=("neg", 0)):
    return [
        ("sched", "NexusGenScheduler", {"steps": steps, "denoise": 1.0, "shift": 3.0}, {}),
        ("ksel", "KSamplerSelect", {"sampler_name": "euler"}, {}),
        ("sampler", "SamplerCustom", {"add_noise": True, "noise_seed": seed, "cfg": cfg},
         {"model": ("dec", 0), "positive": ("cond", 0), "negative": negative, "sampler": ("ksel", 0),
          "sigmas": ("sched", 0), "latent_image": (latent, 0)}),
        ("decode", "VAEDecode", {}, {"samples": ("sampler", 0), "vae": ("vae", 0)}),
    ]


def edit_graph(decoder, instruction, prefix, with_reply=False):
    return [
        AR, decoder, TE, VAE, IMG,
        ("embeds", "NexusGenEditEmbeds", {"instruction": instruction, "mode": "reference", "seed": 0,
                                          "max_new_tokens": 1024}, {"nexus_ar": ("ar", 0), "image": ("img", 0)}),
        ("cond", "NexusGenConditioning", {"guidance": 3.5, "use_reference": True},
         {"embeds": ("embeds", 0), "projector": ("dec", 1), "text_encoders": ("te", 0)}),
        ("neg", "ConditioningZeroOut", {}, {"conditioning": ("cond", 0)}),
        ("latent", "EmptySD3LatentImage", {"width": 512, "height": 512, "batch_size": 1}, {}),
        *sampler_custom(50, 1.0, 42),
        ("save", "SaveImage", {"filename_prefix": prefix}, {"images": ("decode", 0)}),
    ] + ([("reply", "PreviewAny", {}, {"source": ("embeds", 1)})] if with_reply else [])


WORKFLOWS = {
    "nexus_gen_text_to_image": ("Text to image with the generation decoder, exactly the reference's settings "
                                "(sigmas, euler, cfg 3 with the T5 negative, seed 52): the same latents as "
                                "`nexus-gen generate`.", [
        AR, GEN_DEC, TE_T5, VAE,
        ("embeds", "NexusGenPromptEmbeds", {"prompt": "A red fox sitting in the snow at sunset.", "language": "en",
                                            "mode": "reference", "one_per_line": False, "seed": 0,
                                            "max_new_tokens": 1024}, {"nexus_ar": ("ar", 0)}),
        ("cond", "NexusGenConditioning", {"guidance": 3.5, "use_reference": True},
         {"embeds": ("embeds", 0), "projector": ("dec", 1), "text_encoders": ("te", 0)}),
        ("neg", "NexusGenNegative", {"text": "", "guidance": 3.5}, {"text_encoders": ("te", 0)}),
        ("latent", "EmptySD3LatentImage", {"width": 512, "height": 512, "batch_size": 1}, {}),
        *sampler_custom(50, 3.0, 52),
        ("save", "SaveImage", {"filename_prefix": "nexus_gen/t2i"}, {"images": ("decode", 0)}),
        ("reply", "PreviewAny", {}, {"source": ("embeds", 1)}),
    ]),
    "nexus_gen_edit": ("Image editing with the editing decoder (81 target + 324 reference embeddings, editing "
                       "position ids), cfg 1 as in the reference.",
                       edit_graph(EDIT_DEC, "Add a pair of sunglasses.", "nexus_gen/edit", with_reply=True)),
    "nexus_gen_edit_generation_decoder": ("Editing through the generation decoder (the AR's 81 embeddings only): "
                                          "suited to large conceptual edits.",
                                          edit_graph(GEN_DEC, "Turn it into a watercolor painting.",
                                                     "nexus_gen/edit_gendec")),
    "nexus_gen_understanding": ("Image understanding: ask about an image; the answer streams onto the node.", [
        AR, IMG,
        ("ask", "NexusGenUnderstand", {"question": "Please give a brief description of the image.",
                                       "max_new_tokens": 1024, "seed": 0},
         {"nexus_ar": ("ar", 0), "image": ("img", 0)}),
        ("show", "PreviewAny", {}, {"source": ("ask", 0)}),
    ]),
    "nexus_gen_variation": ("Image variation: the image's ViT embeddings straight into the generation decoder "
                            "(its own training task), sampled with the native KSampler.", [
        AR, GEN_DEC, TE, VAE, IMG,
        ("embeds", "NexusGenImageEmbeds", {"tokens": "81", "resize": "crop"},
         {"nexus_ar": ("ar", 0), "image": ("img", 0)}),
        ("cond", "NexusGenConditioning", {"guidance": 3.5, "use_reference": True},
         {"embeds": ("embeds", 0), "projector": ("dec", 1), "text_encoders": ("te", 0)}),
        ("neg", "ConditioningZeroOut", {}, {"conditioning": ("cond", 0)}),
        ("latent", "EmptySD3LatentImage", {"width": 512, "height": 512, "batch_size": 1}, {}),
        ("ksampler", "KSampler", {"seed": 7, "steps": 30, "cfg": 1.0, "sampler_name": "euler", "scheduler": "simple",
                                  "denoise": 1.0},
         {"model": ("dec", 0), "positive": ("cond", 0), "negative": ("neg", 0), "latent_image": ("latent", 0)}),
        ("decode", "VAEDecode", {}, {"samples": ("ksampler", 0), "vae": ("vae", 0)}),
        ("save", "SaveImage", {"filename_prefix": "nexus_gen/variation"}, {"images": ("decode", 0)}),
    ]),
    "nexus_gen_mix_prompt_image_upscale": ("What the reference cannot do: blend a prompt's embeddings with an "
                                           "image's (slerp), sample with KSampler and FluxGuidance, then a native "
                                           "latent upscale + second KSampler pass at 1.5x.", [
        AR, GEN_DEC, TE, VAE, IMG,
        ("p", "NexusGenPromptEmbeds", {"prompt": "A castle on a hill at dawn.", "language": "en", "mode": "fast",
                                       "one_per_line": False, "seed": 0, "max_new_tokens": 1024},
         {"nexus_ar": ("ar", 0)}),
        ("i", "NexusGenImageEmbeds", {"tokens": "81", "resize": "crop"}, {"nexus_ar": ("ar", 0), "image": ("img", 0)}),
        ("mix", "NexusGenEmbedsBlend", {"weight": 0.35, "method": "slerp"}, {"a": ("p", 0), "b": ("i", 0)}),
        ("cond0", "NexusGenConditioning", {"guidance": 3.5, "use_reference": True},
         {"embeds": ("mix", 0), "projector": ("dec", 1), "text_encoders": ("te", 0)}),
        ("cond", "FluxGuidance", {"guidance": 4.0}, {"conditioning": ("cond0", 0)}),
        ("neg", "ConditioningZeroOut", {}, {"conditioning": ("cond", 0)}),
        ("latent", "EmptySD3LatentImage", {"width": 512, "height": 512, "batch_size": 1}, {}),
        ("ks1", "KSampler", {"seed": 11, "steps": 30, "cfg": 1.0, "sampler_name": "euler", "scheduler": "simple",
                             "denoise": 1.0},
         {"model": ("dec", 0), "positive": ("cond", 0), "negative": ("neg", 0), "latent_image": ("latent", 0)}),
        ("up", "LatentUpscaleBy", {"upscale_method": "bislerp", "scale_by": 1.5}, {"samples": ("ks1", 0)}),
        ("ks2", "KSampler", {"seed": 12, "steps": 20, "cfg": 1.0, "sampler_name": "euler", "scheduler": "simple",
                             "denoise": 0.45},
         {"model": ("dec", 0), "positive": ("cond", 0), "negative": ("neg", 0), "latent_image": ("up", 0)}),
        ("decode", "VAEDecode", {}, {"samples": ("ks2", 0), "vae": ("vae", 0)}),
        ("save", "SaveImage", {"filename_prefix": "nexus_gen/mix"}, {"images": ("decode", 0)}),
    ]),
}


WRAP = 7  # columns in the first band


def band_top(rows: dict) -> int:
    return max((y for (band, _c), y in rows.items() if band == 0), default=40) + 80


def build(name: str, description: str, spec: list, info: dict) -> dict:
    ids = {key: i + 1 for i, (key, *_rest) in enumerate(spec)}
    depth = {}
    for key, _cls, _w, links in spec:  # specs list producers before consumers
        depth[key] = 1 + max((depth[src] for src, _ in links.values()), default=-1)
    nodes, links, link_id = [], [], 0
    out_links: dict[tuple[str, int], list[int]] = {}
    rows: dict[tuple[int, int], int] = {}
    for order, (key, cls, widgets, inputs) in enumerate(spec):
        ni = info[cls]
        node_inputs = []
        for name_, ispec in input_specs(ni):
            if name_ in inputs:
                src, slot = inputs[name_]
                link_id += 1
                typ = info[dict((k, c) for k, c, *_ in spec)[src]]["output"][slot]
                links.append([link_id, ids[src], slot, ids[key], len(node_inputs), typ])
                out_links.setdefault((src, slot), []).append(link_id)
                node_inputs.append({"name": name_, "type": ispec[0] if isinstance(ispec[0], str) else "COMBO",
                                    "link": link_id})
        values = []
        for name_, ispec in input_specs(ni):
            if is_widget(ispec) and name_ not in inputs:
                default = ispec[1].get("default") if len(ispec) > 1 and isinstance(ispec[1], dict) else None
                if default is None and isinstance(ispec[0], list):
                    default = ispec[0][0]
                values.append(widgets.get(name_, default))
                if extra_values(ispec):
                    values.append("fixed" if ispec[1].get("control_after_generate") else "image")
        col = depth[key]
        n_widgets = sum(1 for n_, sp in input_specs(ni) if is_widget(sp) and n_ not in inputs)
        height = 46 + 24 * max(len(node_inputs), len(ni["output"])) + 26 * n_widgets
        height += 110 * sum(1 for n_, sp in input_specs(ni) if is_widget(sp) and n_ not in inputs and len(sp) > 1
                            and isinstance(sp[1], dict) and sp[1].get("multiline"))  # text boxes
        height += 280 * (cls == "LoadImage")  # the image preview
        band = 1 if col >= WRAP else 0  # long graphs continue in a second band, so they stay legible
        if band:
            col -= WRAP - 2
            rows.setdefault((1, col), band_top(rows))
        y = rows.get((band, col), 40)
        rows[(band, col)] = y + height + 40
        props = {"Node name for S&R": cls, "cnr_id": PACK_ID if cls.startswith("NexusGen") else "comfy-core"}
        models = [{"name": v, "url": MODEL_URLS[v][0], "directory": MODEL_URLS[v][1]}
                  for v in widgets.values() if isinstance(v, str) and v in MODEL_URLS]
        if models:
            props["models"] = models
        nodes.append({"id": ids[key], "type": cls, "pos": [40 + 340 * col, y], "size": [300, height],
                      "flags": {}, "order": order, "mode": 0, "inputs": node_inputs,
                      "outputs": [{"name": n, "type": t, "links": [], "slot_index": i}
                                  for i, (n, t) in enumerate(zip(ni["output_name"], ni["output"]))],
                      "properties": props, "widgets_values": values, "title": ni.get("display_name") or cls})
    for node in nodes:
        key = next(k for k, v in ids.items() if v == node["id"])
        for out in node["outputs"]:
            out["links"] = out_links.get((key, out["slot_index"]), [])
    return {"id": str(uuid.uuid5(uuid.NAMESPACE_URL, "nexus-gen/" + name)), "revision": 0,
            "last_node_id": len(nodes), "last_link_id": link_id, "nodes": nodes, "links": links, "groups": [],
            "config": {}, "extra": {"ds": {"scale": 0.7, "offset": [0, 0]}, "nexus_gen": {"description": description}},
            "version": 0.4}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--server", default="http://127.0.0.1:8188")
    a = p.parse_args(argv)
    with urllib.request.urlopen(a.server + "/object_info", timeout=60) as r:
        info = json.loads(r.read())
    OUT.mkdir(exist_ok=True)
    for name, (description, spec) in WORKFLOWS.items():
        wf = build(name, description, spec, info)
        (OUT / f"{name}.json").write_text(json.dumps(wf, indent=1, ensure_ascii=False) + "\n")
        print("wrote", OUT / f"{name}.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
