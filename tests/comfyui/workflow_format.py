"""UI-format workflows (what ComfyUI's Save writes) -> API format (what POST /prompt takes), using /object_info.

widgets_values are positional over the node's widget inputs in input order; the frontend adds one extra value
after an INT with control_after_generate or named seed or noise_seed (the 'fixed/randomize' choice) and after an
image_upload combo."""
from __future__ import annotations

WIDGET_TYPES = {"INT", "FLOAT", "STRING", "BOOLEAN", "COMBO"}
FRONTEND_ONLY = {"Note", "MarkdownNote"}  # virtual nodes: the frontend leaves them out of the prompt


def is_widget(spec) -> bool:
    kind = spec[0]
    return isinstance(kind, list) or kind in WIDGET_TYPES


def input_specs(info: dict) -> list[tuple[str, list]]:
    out = []
    for group in ("required", "optional"):
        specs = info["input"].get(group, {})
        for name in info.get("input_order", {}).get(group, list(specs)):
            out.append((name, specs[name]))
    return out


def extra_values(spec, name: str = "") -> int:
    """Values the frontend saves after a widget's own: the seed control ('fixed', 'randomize'...) of an INT that asks
    for one, and of every INT named seed or noise_seed (the frontend adds it to those by name), and the upload
    choice of an image combo."""
    opts = spec[1] if len(spec) > 1 and isinstance(spec[1], dict) else {}
    control = opts.get("control_after_generate") or (spec[0] == "INT" and name in ("seed", "noise_seed"))
    return int(bool(control)) + int(bool(opts.get("image_upload")))


def ui_to_api(workflow: dict, object_info: dict) -> dict:
    links = {link[0]: link for link in workflow["links"]}
    prompt = {}
    for node in workflow["nodes"]:
        if node.get("mode", 0) in (2, 4) or node["type"] in FRONTEND_ONLY:  # muted, bypassed, or a note
            continue
        info = object_info[node["type"]]
        linked = {i["name"]: i.get("link") for i in node.get("inputs", []) if i.get("link") is not None}
        values = list(node.get("widgets_values") or [])
        inputs = {}
        for name, spec in input_specs(info):
            if name in linked:
                link = links[linked[name]]
                inputs[name] = [str(link[1]), link[2]]
                if is_widget(spec) and values:  # a widget converted to an input still holds a value
                    values.pop(0)
                    del values[:extra_values(spec, name)]
            elif is_widget(spec):
                if not values:
                    continue
                inputs[name] = values.pop(0)
                del values[:extra_values(spec, name)]
        prompt[str(node["id"])] = {"class_type": node["type"], "inputs": inputs,
                                   "_meta": {"title": node.get("title", info.get("display_name", node["type"]))}}
    return prompt


def shrink(prompt: dict, steps: int = 3, width: int = 128, height: int = 96, tokens: int = 100) -> dict:
    """The same graph, small: few steps, a small latent, a short AR budget."""
    for node in prompt.values():
        inp = node["inputs"]
        if "steps" in inp:
            inp["steps"] = steps
        if node["class_type"] == "EmptySD3LatentImage":
            inp.update(width=width, height=height)
        if "max_new_tokens" in inp:
            inp["max_new_tokens"] = tokens
    return prompt


def models_named(workflow: dict) -> dict[str, str]:
    """{models folder: file name} of the files a workflow's loaders name in their download metadata."""
    return {m["directory"]: m["name"] for n in workflow["nodes"] for m in n.get("properties", {}).get("models", [])}


# A safetensors file with one float32 zero: a name the host lists, nothing it could run
_STAND_IN = b'{"stand_in":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}'
_STAND_IN = len(_STAND_IN).to_bytes(8, "little") + _STAND_IN + bytes(4)


def write_stand_ins(models, workflows) -> None:
    """A stand-in for every file the workflows name that `models` lacks (the mixing workflows' LoRA, Redux and
    SigLIP): the host lists it, so a test server opens them without a missing-model warning (screenshots, layout
    checks). Tests that run those files write real-layout ones over them."""
    import json
    from pathlib import Path

    for path in workflows:
        for folder, name in models_named(json.loads(Path(path).read_text())).items():
            target = Path(models) / folder / name
            if not target.exists():
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(_STAND_IN)
