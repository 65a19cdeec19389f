"""Writes the example workflows in workflows/ (UI format) and the subgraph blueprints in subgraphs/ from the compact
specs in tools/workflow_specs/ (a new workflow is a new entry there), with /object_info from a running ComfyUI that
has this pack (and ComfyUI-GGUF) loaded:

    python tools/tiny_comfy.py --port 8291 &          # or any ComfyUI with both packs
    python tools/build_workflows.py --server http://127.0.0.1:8291

workflows/api/ gets each workflow in the API format (what POST /prompt takes; tools/api_client.py sends one).
Each workflow gets a Markdown note (what it does, which file goes where, which VRAM preset), groups
(load / prompt / sample / decode), the frontend's model metadata on the loaders of single-file models (so the
missing-models dialog offers the download), and a saved view at a zoom where the frontend draws text (see
VIEW_SCALE): fitted, the larger graphs opened at 0.48 in a 1366x768 window, as grey boxes. Each also gets a Chinese
copy (<name>_zh.json), and workflows/apps/ the text-to-image workflow as an app. The same-stem .jpg thumbnails are
screenshots of the real frontend taken by tools/screenshot_workflows.js, which also checks the layout (missing
nodes, overlaps, groups, initial view).
"""
from __future__ import annotations

import argparse
import json
import re
import sys
import urllib.request
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "comfyui"))
from workflow_format import extra_values, input_specs, is_widget, ui_to_api  # noqa: E402
sys.path.insert(0, str(Path(__file__).resolve().parent))
from workflow_specs.apps import APPS, BLUEPRINTS_SPEC  # noqa: E402
from workflow_specs.graphs import WORKFLOWS  # noqa: E402
from workflow_specs.links import MODEL_URLS  # noqa: E402
from workflow_specs.notes_zh import chinese  # noqa: E402

OUT = ROOT / "workflows"
BLUEPRINTS = ROOT / "subgraphs"
PACK_ID = "comfyui-nexus-gen"
PACK_VER = re.search(r'^version = "([^"]+)"', (ROOT / "pyproject.toml").read_text(), re.M).group(1)
GGUF_PROPS = {"cnr_id": "comfyui-gguf", "aux_id": "city96/ComfyUI-GGUF"}  # the Registry id (its pyproject name)
DISTRIBUTED_PROPS = {"cnr_id": "comfyui-distributed", "aux_id": "robertvoy/ComfyUI-Distributed"}


# -- geometry ---------------------------------------------------------------------------------------------------
TITLE = 30          # a node's title bar, drawn above its pos
GROUP_TITLE = 44    # a group's title bar (font 24)
PAD = 16            # inside a group, around its nodes
GAP_Y = 26          # between stacked nodes (plus the title bar)
GAP_X = 24          # between columns
GAP_GROUP = 18      # between groups (at 30 the edit graph was 31 units too wide for 1.27's canvas at 1366x768)
NOTE_W = 400
# Below a zoom of about 0.57 (1.58: 8 px of its 14 px node font; older frontends: 0.6) the frontend draws nodes
# without text. Fitted to a 1366x768 window a graph of 2100 x 1000 opens at 0.48, so each workflow saves its view:
# VIEW_SCALE, its top-left corner at VIEW_AT (canvas pixels; the canvas fills the window under the side bar, the tabs
# and 1.5x's floating toolbar, so that is right of the bar and below the toolbar).
# A graph stays within about 2150 x 1050 to fit that window at that zoom.
VIEW_SCALE = 0.6
VIEW_AT = (64, 96)
WIDTHS = {"NexusGenPromptEmbeds": 360, "NexusGenEditEmbeds": 360, "NexusGenNegative": 290, "NexusGenUnderstand": 360,
          "LoadImage": 300, "SaveImage": 300, "PreviewAny": 300}
HEIGHTS = {"LoadImage": 340, "SaveImage": 330, "NexusGenPromptEmbeds": 280, "NexusGenEditEmbeds": 250,
           "NexusGenUnderstand": 250, "NexusGenNegative": 150, "PreviewAny": 160}
GROUP_COLORS = ["#3f789e", "#b58b2a", "#8a8a3a", "#a1309b", "#3f9e78"]


def node_size(cls: str, info: dict) -> list[int]:
    """The frontend's own size for a node (slot rows of 20, widgets of 24; measured in 1.27-1.58), a bit more."""
    if cls in HEIGHTS:
        return [WIDTHS.get(cls, 270), HEIGHTS[cls]]
    specs = input_specs(info)
    widgets = sum(1 + extra_values(sp, n) for n, sp in specs if is_widget(sp))
    sockets = sum(1 for _n, sp in specs if not is_widget(sp))
    return [WIDTHS.get(cls, 270), 20 + 20 * max(sockets, len(info["output"]), 1) + 24 * widgets]


def layout(spec: list, groups: dict, sizes: dict, x0: float) -> tuple[dict, list]:
    """Positions: the first group (the loaders) is a band on top, from x=0, each loader up and left of the first
    node it feeds, so that wires run down and right; the other groups sit side by side below it, from x0.
    Returns ({key: [x, y]}, [(title, [x, y, w, h])])."""
    groups = {t: [c for c in ([k for k in col if k in sizes] for col in cols) if c] for t, cols in groups.items()}
    titles = list(groups)
    consumers = {}
    for key, _cls, _w, inputs in spec:
        for src, _slot in inputs.values():
            consumers.setdefault(src, []).append(key)
    pos, boxes = {}, []
    band_y = GROUP_TITLE + TITLE + PAD
    x = x0
    for title in titles[1:]:  # the lower row, placed at y=0 for now
        gx = x
        x += PAD
        for col in groups[title]:
            y = band_y
            for key in col:
                pos[key] = [x, y]
                y += sizes[key][1] + TITLE + GAP_Y
            x += max(sizes[k][0] for k in col) + GAP_X
        x += PAD - GAP_X
        boxes.append([title, gx, x])
        x += GAP_GROUP
    x, top = PAD, {}
    for col in groups[titles[0]]:
        width = max(sizes[k][0] for k in col)
        want = min((pos[c][0] for k in col for c in consumers.get(k, []) if c in pos), default=x + width + 60)
        x = max(x, want - width - 60)
        y = band_y
        for key in col:
            top[key] = [x, y]
            y += sizes[key][1] + TITLE + GAP_Y
        x += width + GAP_X
    band_right = max(x - GAP_X + PAD, boxes[-1][2] if boxes else 0)
    band_h = max(p[1] + sizes[k][1] for k, p in top.items()) + PAD
    lower_top = band_h + GAP_GROUP
    for key in pos:
        pos[key][1] += lower_top
    lower_h = max(p[1] + sizes[k][1] for k, p in pos.items()) + PAD - lower_top
    pos.update(top)
    out = [(titles[0], [0, 0, band_right, band_h])]
    out += [(t, [a, lower_top, b - a, lower_h]) for t, a, b in boxes]
    return pos, out


def make_node(nid, key, cls, widgets, inputs, info, link_ids, order, pos, size, all_widget_inputs=False):
    """One UI-format node. `link_ids[(key, input name)]` is the link feeding that input; with all_widget_inputs
    every widget is also listed as an input (the subgraph format)."""
    node_inputs, values = [], []
    for name_, ispec in input_specs(info):
        widget = is_widget(ispec)
        if widget and not all_widget_inputs and (key, name_) not in link_ids:
            continue
        entry = {"name": name_, "type": ispec[0] if isinstance(ispec[0], str) else "COMBO",
                 "link": link_ids.get((key, name_))}
        if widget:
            entry["widget"] = {"name": name_}
        elif len(ispec) > 1 and isinstance(ispec[1], dict) and name_ in info["input"].get("optional", {}):
            entry["shape"] = 7  # optional socket, as the frontend saves it
        node_inputs.append(entry)
    if all_widget_inputs:  # the frontend lists sockets first, then the widgets
        node_inputs.sort(key=lambda e: "widget" in e)
    for name_, ispec in input_specs(info):
        if is_widget(ispec):  # a widget fed by a link keeps its value too, as the frontend saves it
            default = ispec[1].get("default") if len(ispec) > 1 and isinstance(ispec[1], dict) else None
            if default is None and name_ not in widgets:  # a file list can be empty on the building server
                opts = ispec[0] if isinstance(ispec[0], list) else ispec[1].get("options", [None])
                default = opts[0]
            values.append(widgets.get(name_, default))
            if extra_values(ispec, name_):
                upload = len(ispec) > 1 and isinstance(ispec[1], dict) and ispec[1].get("image_upload")
                values.append("image" if upload else widgets.get("control_after_generate", "fixed"))
    props = {"Node name for S&R": cls}
    if cls.startswith("NexusGen"):
        props.update(cnr_id=PACK_ID, ver=PACK_VER)
    elif cls.endswith("GGUF"):
        props.update(GGUF_PROPS)
    elif cls.startswith("Distributed"):
        props.update(DISTRIBUTED_PROPS)
    else:
        props["cnr_id"] = "comfy-core"
    models = [{"name": v, "url": MODEL_URLS[v][0], "directory": MODEL_URLS[v][1]}
              for v in widgets.values() if isinstance(v, str) and v in MODEL_URLS]
    if models:
        props["models"] = models
    return {"id": nid, "type": cls, "pos": [round(pos[0]), round(pos[1])], "size": [round(s) for s in size],
            "flags": {}, "order": order, "mode": 0, "inputs": node_inputs,
            "outputs": [{"name": n, "type": t, "links": [], "slot_index": i}
                        for i, (n, t) in enumerate(zip(info["output_name"], info["output"]))],
            "properties": props, "widgets_values": values, "title": info.get("display_name") or cls}


def graph_parts(spec, groups, info, x0=0.0, all_widget_inputs=False, external=None, first_link=1):
    """Nodes, links (as [id, from, slot, to, slot, type]) and groups of a spec; `external` maps
    (key, input) -> link id for inputs fed from outside (a subgraph's inputs)."""
    external = external or {}
    ids = {key: i + 1 for i, (key, *_rest) in enumerate(spec)}
    classes = {key: cls for key, cls, *_ in spec}
    link_ids, raw, lid = dict(external), [], first_link
    for key, cls, _w, inputs in spec:
        for name_, (src, slot) in inputs.items():
            link_ids[(key, name_)] = lid
            raw.append((lid, src, slot, key, name_, info[classes[src]]["output"][slot]))
            lid += 1
    sizes = {key: node_size(cls, info[cls]) for key, cls, *_ in spec}
    for key, name_ in external:  # a text box fed from a subgraph input is not drawn: no room for it
        spec_ = dict(input_specs(info[classes[key]])).get(name_)
        if spec_ and len(spec_) > 1 and isinstance(spec_[1], dict) and spec_[1].get("multiline"):
            sizes[key][1] -= 110
    pos, boxes = layout(spec, groups, sizes, x0)
    nodes = [make_node(ids[key], key, cls, w, inputs, info[cls], link_ids, order, pos[key], sizes[key],
                       all_widget_inputs)
             for order, (key, cls, w, inputs) in enumerate(spec)]
    by_id = {n["id"]: n for n in nodes}
    links = []
    for lid_, src, slot, dst, name_, typ in raw:
        target = by_id[ids[dst]]
        tslot = next(i for i, e in enumerate(target["inputs"]) if e["name"] == name_)
        links.append([lid_, ids[src], slot, ids[dst], tslot, typ])
        by_id[ids[src]]["outputs"][slot]["links"].append(lid_)
    gboxes = [{"id": i + 1, "title": t, "bounding": [round(v) for v in b], "color": GROUP_COLORS[i % 5],
               "font_size": 24, "flags": {}} for i, (t, b) in enumerate(boxes)]
    return nodes, links, gboxes, ids, lid


def opening_view(nodes: list, groups: list) -> dict:
    """The saved view (extra.ds) a workflow opens with: the graph's top-left corner just below the frontend's
    floating toolbar, at VIEW_SCALE, so that text is drawn and the graph fits a 1366x768 window. Without one the
    frontend fits the graph with wide margins: 0.48 at 1366x768, where it draws grey boxes without text."""
    x0 = min([n["pos"][0] for n in nodes] + [g["bounding"][0] for g in groups])
    y0 = min([n["pos"][1] - TITLE for n in nodes] + [g["bounding"][1] for g in groups])
    return {"scale": VIEW_SCALE, "offset": [round(VIEW_AT[0] / VIEW_SCALE - x0, 1), round(VIEW_AT[1] / VIEW_SCALE - y0, 1)]}


def build(name: str, wf: dict, info: dict, note_title: str = "Read me", app: dict | None = None) -> dict:
    spec = wf["graph"]
    nodes, links, groups, ids, lid = graph_parts(spec, wf["layout"], info, x0=NOTE_W + GAP_GROUP)
    for n in nodes:  # untitled, a node shows its display name in the frontend's language (locales/zh/nodeDefs.json)
        del n["title"]
    _x, top, _w, height = groups[1]["bounding"]  # the note: left of the lower row, under the loaders
    nodes.append({"id": len(nodes) + 1, "type": "MarkdownNote", "pos": [0, top + TITLE], "size": [NOTE_W, height - TITLE],
                  "flags": {}, "order": len(nodes), "mode": 0, "inputs": [], "outputs": [], "properties": {},
                  "widgets_values": [wf["note"]], "title": note_title, "color": "#432", "bgcolor": "#653"})
    extra = {"ds": opening_view(nodes, groups), "nexus_gen": {"description": wf["note"].split("\n\n")[1]}}
    if app:  # frontend 1.41+ opens it as an app: these widgets and outputs, the graph hidden; older ones as a graph
        extra["linearMode"] = True
        extra["linearData"] = {"inputs": [[ids[key], widget] for key, widget in app["inputs"]],
                               "outputs": [ids[key] for key in app["outputs"]]}
    return {"id": str(uuid.uuid5(uuid.NAMESPACE_URL, "nexus-gen/" + name)), "revision": 0,
            "last_node_id": len(nodes), "last_link_id": lid - 1, "nodes": nodes, "links": links, "groups": groups,
            "config": {}, "extra": extra, "version": 0.4}


def build_blueprint(name: str, bp: dict, info: dict) -> dict:
    """A subgraph blueprint as the frontend publishes one: a root graph of one subgraph node whose widgets are the
    subgraph's inputs, each linked to an inner node's widget. No properties.proxyWidgets: 1.35 would show those
    beside the inputs' own widgets, 1.58 migrates them to such inputs anyway."""
    spec = bp["graph"]
    sg_id = str(uuid.uuid5(uuid.NAMESPACE_URL, "nexus-gen/blueprint/" + name))
    sg_inputs, external = [], {}
    lid = 1
    wired = list(bp["widgets"])
    if bp["image_input"]:
        wired = [(bp["image_input"][0], bp["image_input"][1], "image", None)] + wired
    for key, widget, iname, _label in wired:
        external[(key, widget)] = lid
        lid += 1
    # an image fed from outside replaces the inner input's link; the sampler's seed changes on every run
    spec = [(k, c, {**w, "control_after_generate": "randomize"} if k == "sampler" else w,
             {n: s for n, s in inp.items() if (k, n) not in external}) for k, c, w, inp in spec]
    nodes, links, groups, ids, lid = graph_parts(spec, bp["layout"], info, x0=0, all_widget_inputs=True,
                                                 external=external, first_link=lid)
    by_id = {n["id"]: n for n in nodes}
    classes = {k: c for k, c, *_ in spec}
    sg_links = [{"id": l[0], "origin_id": l[1], "origin_slot": l[2], "target_id": l[3], "target_slot": l[4],
                 "type": l[5]} for l in links]
    outer_inputs = []
    x_in = -260
    for slot, (key, widget, iname, label) in enumerate(wired):
        target = by_id[ids[key]]
        tslot = next(i for i, e in enumerate(target["inputs"]) if e["name"] == widget)
        typ = target["inputs"][tslot]["type"]
        link = external[(key, widget)]
        sg_links.append({"id": link, "origin_id": -10, "origin_slot": slot, "target_id": ids[key],
                         "target_slot": tslot, "type": typ})
        entry = {"id": str(uuid.uuid5(uuid.NAMESPACE_URL, f"nexus-gen/{name}/in/{iname}")), "name": iname,
                 "type": typ, "linkIds": [link], "pos": [x_in + 100, 20 + 20 * slot]}
        outer = {"name": iname, "type": typ, "link": None}
        if label:
            entry["label"] = outer["label"] = label
        if typ != "IMAGE":
            outer["widget"] = {"name": iname}
        sg_inputs.append(entry)
        outer_inputs.append(outer)
    sg_outputs, outer_outputs = [], []
    right = max(n["pos"][0] + n["size"][0] for n in nodes) + 80
    for slot, (key, oslot, oname) in enumerate(bp["outputs"]):
        typ = info[classes[key]]["output"][oslot]
        sg_links.append({"id": lid, "origin_id": ids[key], "origin_slot": oslot, "target_id": -20,
                         "target_slot": slot, "type": typ})
        by_id[ids[key]]["outputs"][oslot]["links"].append(lid)
        sg_outputs.append({"id": str(uuid.uuid5(uuid.NAMESPACE_URL, f"nexus-gen/{name}/out/{oname}")),
                           "name": oname, "type": typ, "linkIds": [lid], "pos": [right + 20, 40 + 20 * slot]})
        outer_outputs.append({"name": oname, "type": typ, "links": []})
        lid += 1
    n_in = len(sg_inputs)
    subgraph = {
        "id": sg_id, "version": 1,
        "state": {"lastGroupId": len(groups), "lastNodeId": len(nodes), "lastLinkId": lid - 1, "lastRerouteId": 0},
        "revision": 0, "config": {}, "name": name,
        "inputNode": {"id": -10, "bounding": [x_in, 0, 120, 40 + 20 * n_in]},
        "outputNode": {"id": -20, "bounding": [right, 20, 120, 60]},
        "inputs": sg_inputs, "outputs": sg_outputs, "widgets": [], "nodes": nodes, "groups": groups,
        "links": sorted(sg_links, key=lambda l: l["id"]), "extra": {}, "category": "Nexus-Gen",
        "description": bp["description"]}
    outer = {"id": len(nodes) + 1, "type": sg_id, "pos": [0, 0], "size": [420, 160 + 24 * len(outer_inputs)], "flags": {},
             "order": 0, "mode": 0, "inputs": outer_inputs, "outputs": outer_outputs, "title": name,
             "properties": {"cnr_id": PACK_ID, "ver": PACK_VER}, "widgets_values": []}
    return {"revision": 0, "last_node_id": len(nodes) + 1, "last_link_id": 0, "nodes": [outer], "links": [],
            "version": 0.4, "definitions": {"subgraphs": [subgraph]},
            "extra": {"BlueprintDescription": bp["description"], "BlueprintSearchAliases": bp["aliases"]}}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--server", default="http://127.0.0.1:8188")
    a = p.parse_args(argv)
    with urllib.request.urlopen(a.server + "/object_info", timeout=60) as r:
        info = json.loads(r.read())
    missing = sorted({c for wf in WORKFLOWS.values() for _k, c, *_ in wf["graph"]} - set(info))
    if missing:
        p.error(f"the server lacks {missing}: load this pack, ComfyUI-GGUF and ComfyUI-Distributed")
    OUT.mkdir(exist_ok=True)
    BLUEPRINTS.mkdir(exist_ok=True)
    (OUT / "api").mkdir(exist_ok=True)
    for name, wf in WORKFLOWS.items():
        ui = build(name, wf, info)
        (OUT / f"{name}.json").write_text(json.dumps(ui, indent=1, ensure_ascii=False) + "\n")
        # the same graph in the API format POST /prompt takes (what scripts and services send), from the same spec
        (OUT / "api" / f"{name}.json").write_text(json.dumps(ui_to_api(ui, info), indent=1, ensure_ascii=False) + "\n")
        zh = build(name + "_zh", chinese(wf, name), info, note_title="说明")
        (OUT / f"{name}_zh.json").write_text(json.dumps(zh, indent=1, ensure_ascii=False) + "\n")
        print("wrote", OUT / f"{name}.json", "and", OUT / f"{name}_zh.json")
    (OUT / "apps").mkdir(exist_ok=True)
    for name, app in APPS.items():
        wf = build(name, WORKFLOWS[app["workflow"]], info, app=app)
        (OUT / "apps" / f"{name}.json").write_text(json.dumps(wf, indent=1, ensure_ascii=False) + "\n")
        print("wrote", OUT / "apps" / f"{name}.json")
    for name, bp in BLUEPRINTS_SPEC.items():
        path = BLUEPRINTS / f"{name}.json"
        path.write_text(json.dumps(build_blueprint(name, bp, info), indent=1, ensure_ascii=False) + "\n")
        print("wrote", path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
