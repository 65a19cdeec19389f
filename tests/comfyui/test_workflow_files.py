"""The example workflows and subgraph blueprints as files (no ComfyUI needed): each workflow has its Markdown note
(what, which file where with links, which VRAM preset), groups holding every node, no overlapping nodes, a saved
view legible in a 1366x768 window, a Chinese copy of each (the same graph), the frontend's model metadata on
single-file loaders, a thumbnail of modest size; each blueprint is one subgraph node whose inputs reach inner
widgets; each app is its workflow plus what it shows."""
import json
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
WORKFLOWS = sorted((REPO / "workflows").glob("*.json"))
ENGLISH = [p for p in WORKFLOWS if not p.stem.endswith("_zh")]  # each has a Chinese copy, <stem>_zh.json
BLUEPRINTS = sorted((REPO / "subgraphs").glob("*.json"))
NEXUS = "https://huggingface.co/modelscope/Nexus-GenV2"
TE = "https://huggingface.co/comfyanonymous/flux_text_encoders"
FLUX = "https://huggingface.co/black-forest-labs/FLUX.1-dev"
MS = "https://www.modelscope.cn/models/"
HUBS = {  # the Chinese copies link ModelScope's copy of each file where it has one (SigLIP: none official)
    NEXUS: MS + "DiffSynth-Studio/Nexus-GenV2", TE: MS + "AI-ModelScope/flux_text_encoders",
    FLUX: MS + "black-forest-labs/FLUX.1-dev",
    "https://huggingface.co/black-forest-labs/FLUX.1-Redux-dev": MS + "black-forest-labs/FLUX.1-Redux-dev",
    "https://huggingface.co/alimama-creative/FLUX.1-Turbo-Alpha": MS + "alimama-creative/FLUX.1-Turbo-Alpha"}
TITLE = 30
NOTES = {"MarkdownNote", "Note"}


def load(path: Path) -> dict:
    return json.loads(path.read_text())


def rect(node) -> tuple:
    return node["pos"][0], node["pos"][1] - TITLE, node["size"][0], node["size"][1] + TITLE


def test_all_workflows_present():
    assert {p.stem for p in WORKFLOWS} >= {"nexus_gen_text_to_image", "nexus_gen_text_to_image_gguf", "nexus_gen_edit",
                                           "nexus_gen_edit_generation_decoder", "nexus_gen_understanding",
                                           "nexus_gen_variation", "nexus_gen_mix_prompt_image_upscale"}
    assert {p.stem for p in BLUEPRINTS} >= {"Nexus-Gen Text to Image", "Nexus-Gen Edit"}


@pytest.mark.parametrize("path", WORKFLOWS, ids=[p.stem for p in WORKFLOWS])
def test_note_says_what_where_and_which_preset(path):
    wf = load(path)
    notes = [n for n in wf["nodes"] if n["type"] in NOTES]
    assert len(notes) == 1
    text = notes[0]["widgets_values"][0]
    types = {n["type"] for n in wf["nodes"]}
    hub = HUBS.get if path.stem.endswith("_zh") else (lambda url: url)
    assert text.startswith("## ") and hub(NEXUS) in text and "models/nexus_gen/" in text
    if "NexusGenTextEncoderLoader" in types:
        assert hub(TE) in text and "models/text_encoders/" in text
    if "VAELoader" in types:
        assert hub(FLUX) in text and "models/vae/" in text
    assert "VRAM preset" in text and "VRAM presets" in text and "fp8_e4m3fn" in text
    if "NexusGenDecoderLoader" in types or "UnetLoaderGGUF" in types:
        for vram in ("8 GB", "12 GB", "16 GB", "24 GB", "48 GB"):
            assert vram in text
    if "UnetLoaderGGUF" in types:
        assert "ComfyUI-GGUF" in text
        assert ("nexus-gen convert generation_decoder.bin --layout gguf --dtype Q8_0 "
                "--out models/diffusion_models/nexus_gen_generation_decoder-Q8_0.gguf") in text


@pytest.mark.parametrize("path", ENGLISH, ids=[p.stem for p in ENGLISH])
def test_groups_hold_every_node_and_nothing_overlaps(path):
    wf = load(path)
    titles = [g["title"] for g in wf["groups"]]
    assert titles[0].startswith("Load")
    if "understanding" not in path.stem:
        assert [t.split(":")[0].split(",")[0] for t in titles] == ["Load models", "Prompt", "Sample", "Decode"]
    nodes = [n for n in wf["nodes"]]
    for n in nodes:
        if n["type"] in NOTES:
            continue
        x, y, w, h = rect(n)
        assert any(gx <= x and gy <= y and x + w <= gx + gw and y + h <= gy + gh
                   for gx, gy, gw, gh in (g["bounding"] for g in wf["groups"])), n["type"]
    for i, a in enumerate(nodes):
        for b in nodes[i + 1:]:
            ax, ay, aw, ah = rect(a)
            bx, by, bw, bh = rect(b)
            assert not (ax < bx + bw and bx < ax + aw and ay < by + bh and by < ay + ah), (a["type"], b["type"])


@pytest.mark.parametrize("path", WORKFLOWS, ids=[p.stem for p in WORKFLOWS])
def test_opens_legible_in_a_small_window_and_has_a_small_thumbnail(path):
    """The saved view: at a zoom where the frontend draws text (1.58: 8 px of its 14 px font, 0.571; older: 0.6),
    every node inside a 1366x768 window. 1.4x-1.5x: the canvas fills the window, under the side bar (56 px) and the
    floating toolbar (to y 90); 1.27: the canvas starts at (40, 41), right of its side bar and below its menu (its
    tabs lie over the canvas's top, above where the graph starts)."""
    wf = load(path)
    ds = wf["extra"]["ds"]
    assert 0.6 <= ds["scale"] <= 1.0
    for n in wf["nodes"]:
        x, y, w, h = rect(n)
        sx, sy = (x + ds["offset"][0]) * ds["scale"], (y + ds["offset"][1]) * ds["scale"]
        ex, ey = sx + w * ds["scale"], sy + h * ds["scale"]
        assert sx >= 56 and sy >= 90 and ex <= 1366 and ey <= 768, ("1.58", n["type"], sx, sy, ex, ey)
        assert ex + 40 <= 1366 and ey + 41 <= 768, ("1.27", n["type"], ex + 40, ey + 41)
    assert all("title" not in n for n in wf["nodes"] if n["type"] not in NOTES)  # titles in the user's language
    thumb = path.with_suffix(".jpg")
    assert thumb.is_file() and thumb.stat().st_size < 200_000


CJK = re.compile(r"[\u4e00-\u9fff]")


@pytest.mark.parametrize("path", ENGLISH, ids=[p.stem for p in ENGLISH])
def test_chinese_copy_is_the_same_graph_in_chinese(path):
    en, zh = load(path), load(path.with_name(path.stem + "_zh.json"))
    assert zh["links"] == en["links"] and zh["extra"]["ds"] == en["extra"]["ds"]
    assert [g["bounding"] for g in zh["groups"]] == [g["bounding"] for g in en["groups"]]
    assert all(CJK.search(g["title"]) for g in zh["groups"])
    for a, b in zip(en["nodes"], zh["nodes"], strict=True):
        assert {k: v for k, v in a.items() if k not in ("widgets_values", "title")} == \
            {k: v for k, v in b.items() if k not in ("widgets_values", "title")}
        if a["type"] == "NexusGenPromptEmbeds":  # a Chinese prompt gets the Chinese prompt template
            assert "zh" in b["widgets_values"] and "zh" not in a["widgets_values"], b["widgets_values"]
        for va, vb in zip(a["widgets_values"], b["widgets_values"], strict=True):
            # only what people read changes: notes, prompts and questions in Chinese, the prompt template zh
            assert va == vb or CJK.search(str(vb)) or (va, vb) == ("en", "zh"), (a["type"], va, vb)
        if a["type"] in NOTES:  # the same download links, on ModelScope where it has the file
            assert [HUBS.get(u, u) for u in re.findall(r"\]\((https://[^)]+)\)", a["widgets_values"][0])] == \
                re.findall(r"\]\((https://[^)]+)\)", b["widgets_values"][0])
            code = r"`[^`]+`"  # the first file names and commands, as written
            assert re.findall(code, a["widgets_values"][0])[:3] == re.findall(code, b["widgets_values"][0])[:3]


@pytest.mark.parametrize("path", WORKFLOWS, ids=[p.stem for p in WORKFLOWS])
def test_single_file_models_carry_download_metadata(path):
    for node in load(path)["nodes"]:
        files = [v for v in node.get("widgets_values") or [] if isinstance(v, str)
                 and re.search(r"\.(safetensors|sft)$", v)]
        if node["type"] not in ("NexusGenTextEncoderLoader", "VAELoader") or not files:
            continue
        models = {m["name"]: m for m in node["properties"]["models"]}
        for f in files:
            m = models[f]
            assert m["url"].startswith("https://huggingface.co/") and m["url"].endswith("/" + f)
            assert m["directory"] == ("vae" if node["type"] == "VAELoader" else "text_encoders")


def test_gguf_loader_names_its_pack():
    wf = load(REPO / "workflows" / "nexus_gen_text_to_image_gguf.json")
    gguf = next(n for n in wf["nodes"] if n["type"] == "UnetLoaderGGUF")
    assert gguf["properties"]["cnr_id"] == "comfyui-gguf" and gguf["properties"]["aux_id"] == "city96/ComfyUI-GGUF"
    proj = next(n for n in wf["nodes"] if n["type"] == "NexusGenProjectorLoader")
    assert proj["widgets_values"] == gguf["widgets_values"]  # the projector comes from the same GGUF file


@pytest.mark.parametrize("path", BLUEPRINTS, ids=[p.stem for p in BLUEPRINTS])
def test_blueprint_is_one_subgraph_node(path):
    bp = load(path)
    (sub,) = bp["definitions"]["subgraphs"]
    (root,) = bp["nodes"]
    assert root["type"] == sub["id"] and sub["name"] == path.stem and sub["category"] == "Nexus-Gen"
    assert bp["extra"]["BlueprintDescription"] == sub["description"]
    links = {link["id"]: link for link in sub["links"]}
    inner = {n["id"]: n for n in sub["nodes"]}
    assert [i["name"] for i in root["inputs"]] == [i["name"] for i in sub["inputs"]]
    for slot, inp in enumerate(sub["inputs"]):
        (lid,) = inp["linkIds"]
        link = links[lid]
        assert link["origin_id"] == -10 and link["origin_slot"] == slot
        target = inner[link["target_id"]]["inputs"][link["target_slot"]]
        assert target["link"] == lid and target["type"] == inp["type"]
    (out,) = sub["outputs"]
    assert out["type"] == "IMAGE" and links[out["linkIds"][0]]["target_id"] == -20


APPS = sorted((REPO / "workflows" / "apps").glob("*.json"))


@pytest.mark.parametrize("path", APPS, ids=[p.stem for p in APPS])
def test_app_is_its_workflow_with_the_widgets_it_shows(path):
    """An app (frontend 1.41+: extra.linearMode) is a workflow of workflows/ plus the widgets and outputs it shows;
    each names a node of the graph (that the widget exists is checked where the frontend shows it,
    test_workflows_frontend.py), the outputs are image savers."""
    app = load(path)
    base = load(REPO / "workflows" / (path.stem.removesuffix("_app") + ".json"))
    assert app["nodes"] == base["nodes"] and app["links"] == base["links"] and app["groups"] == base["groups"]
    assert app["extra"]["linearMode"] is True
    nodes = {n["id"]: n for n in app["nodes"]}
    data = app["extra"]["linearData"]
    assert data["inputs"] and data["outputs"]
    for node_id, widget in data["inputs"]:
        assert node_id in nodes and nodes[node_id]["type"] not in NOTES and widget, (node_id, widget)
    assert all(nodes[i]["type"] == "SaveImage" for i in data["outputs"])


@pytest.mark.parametrize("stem", ["nexus_gen_distributed", "nexus_gen_distributed_zh"])
def test_distributed_workflow_seeds_every_worker_and_collects_after_decode(stem):
    """ComfyUI-Distributed's pattern: one Distributed Seed feeding the AR's seed and the noise seed, a Distributed
    Collector between VAE Decode and Save Image; the note says what each worker needs and how to add one."""
    wf = load(REPO / "workflows" / f"{stem}.json")
    by_id = {n["id"]: n for n in wf["nodes"]}
    feeds = {}  # (target type, input name) -> source type
    for _lid, src, _slot, dst, tslot, _typ in wf["links"]:
        feeds[(by_id[dst]["type"], by_id[dst]["inputs"][tslot]["name"])] = by_id[src]["type"]
    assert feeds[("NexusGenPromptEmbeds", "seed")] == "DistributedSeed"
    assert feeds[("SamplerCustom", "noise_seed")] == "DistributedSeed"
    assert feeds[("DistributedCollector", "images")] == "VAEDecode"
    assert feeds[("SaveImage", "images")] == "DistributedCollector"
    for n in wf["nodes"]:
        if n["type"].startswith("Distributed"):
            assert n["properties"]["cnr_id"] == "comfyui-distributed"
            assert n["properties"]["aux_id"] == "robertvoy/ComfyUI-Distributed"
    text = next(n for n in wf["nodes"] if n["type"] in NOTES)["widgets_values"][0]
    for needed in ("+ 1", "+ 2", "Add Worker", "--listen --enable-cors-header", "16.6 GB", "24 GB", "6.8 GB",
                   "0.6 GB", "https://github.com/robertvoy/ComfyUI-Distributed", "POST /distributed/queue"):
        assert needed in text, needed
