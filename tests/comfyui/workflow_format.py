"""UI-format workflows (what ComfyUI's Save writes) -> API format (what POST /prompt takes), using /object_info.

widgets_values are positional over the node's widget inputs in input order; the frontend adds one extra value
after an INT with control_after_generate (the 'fixed/randomize' choice) and after an image_upload combo."""
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


def extra_values(spec) -> int:
    opts = spec[1] if len(spec) > 1 and isinstance(spec[1], dict) else {}
    return int(bool(opts.get("control_after_generate"))) + int(bool(opts.get("image_upload")))


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
                    del values[:extra_values(spec)]
            elif is_widget(spec):
                if not values:
                    continue
                inputs[name] = values.pop(0)
                del values[:extra_values(spec)]
        prompt[str(node["id"])] = {"class_type": node["type"], "inputs": inputs,
                                   "_meta": {"title": node.get("title", info.get("display_name", node["type"]))}}
    return prompt
