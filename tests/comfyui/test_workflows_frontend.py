"""The example workflows and the subgraph blueprints in the real ComfyUI frontend (headless Chromium through
playwright-core) of the host in COMFYUI_PATH:
* every workflow loads with no missing node, no overlapping nodes, every node inside a group, and the whole graph
  in view when it opens (1920x1080 and 1366x768): tools/screenshot_workflows.js --no-thumbnails;
* each blueprint in subgraphs/ is added as one node from the node search box, queued from the frontend and runs;
* the LoRA + hi-res workflow (with its Markdown note) is queued from the frontend and runs, and a LoRA whose keys
  all match nothing is said in a toast; the text-to-image app runs from its own Run button (1.41+).
Skips without COMFYUI_PATH, node, playwright-core (NODE_PATH=<its node_modules>) or Chromium (CHROMIUM=<path>)."""
import io
import json
import os
import re
import shutil
import subprocess
import urllib.error
from pathlib import Path

import pytest
from PIL import Image

REPO = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
WORKFLOWS = sorted((REPO / "workflows").glob("*.json"))
BLUEPRINTS = sorted((REPO / "subgraphs").glob("*.json"))
pytestmark = pytest.mark.comfyui


@pytest.fixture(scope="session")
def browser_env():
    node = shutil.which("node")
    if not node:
        pytest.skip("node is not installed: the frontend tests drive Chromium with playwright-core")
    chromium = os.environ.get("CHROMIUM") or next(
        (shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome") if shutil.which(n)), None)
    if not chromium or not os.path.exists(chromium):
        pytest.skip("no Chromium found (install Debian's chromium or set CHROMIUM)")
    env = dict(os.environ, CHROMIUM=chromium)
    if subprocess.run([node, "-e", "require.resolve('playwright-core')"], env=env, capture_output=True).returncode:
        pytest.skip("playwright-core not found: `npm install playwright-core` outside the repo and set NODE_PATH to "
                    "that node_modules")
    return node, env


def run_node(browser_env, args: list, timeout: float) -> tuple[subprocess.CompletedProcess, list[dict]]:
    node, env = browser_env
    proc = subprocess.run([node, *map(str, args)], env=env, capture_output=True, text=True, timeout=timeout,
                          cwd=REPO)
    return proc, [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]


@pytest.fixture(scope="module")
def frontend_reports(browser_env, comfy_server):
    client, _, _ = comfy_server
    env = dict(browser_env[1], COMFY_URL=client.base)
    proc, reports = run_node((browser_env[0], env), [REPO / "tools" / "screenshot_workflows.js", "--no-thumbnails",
                                                     *WORKFLOWS], timeout=900)
    assert proc.returncode in (0, 1) and reports, proc.stdout[-2000:] + proc.stderr[-3000:]
    return {Path(r["file"]).stem: r for r in reports}


@pytest.mark.parametrize("path", WORKFLOWS, ids=[p.stem for p in WORKFLOWS])
def test_workflow_loads_cleanly_in_the_frontend(browser_env, frontend_reports, object_info, path):
    report = frontend_reports[path.stem]
    missing = set(report["missing"])
    no_gguf = "UnetLoaderGGUF" not in object_info and "UnetLoaderGGUF" in missing
    if no_gguf:  # ComfyUI-GGUF not installed: the frontend rightly names it missing (and its warning covers a corner)
        missing -= {"UnetLoaderGGUF"}
    no_engine = {m for m in missing if m.startswith("Distributed") and m not in object_info}
    missing -= no_engine  # ComfyUI-Distributed not installed: likewise
    assert not missing, report
    assert report["overlaps"] == [], report
    assert report["outside_groups"] == [], report
    for key in (k for k in report if k.startswith("hidden_on_open_") and not no_gguf and not no_engine):
        assert report[key] == [], (key, report)
    for key in (k for k in report if k.startswith("text_drawn_on_open_")):  # not grey boxes at the opening zoom
        assert report[key] is True, (key, report)


def _served_blueprints(client) -> list[str]:
    try:
        listed = client.get("/global_subgraphs")
    except urllib.error.HTTPError as e:
        pytest.skip(f"this ComfyUI serves no subgraph blueprints (GET /global_subgraphs: {e.code}); 0.8 and 0.33 do")
    return [v["name"] for v in listed.values() if v.get("info", {}).get("node_pack", "").endswith("Nexus-Gen")]


def _image_size(client, ref) -> tuple:
    return Image.open(io.BytesIO(client.image(ref))).size


@pytest.mark.parametrize("path", BLUEPRINTS, ids=[p.stem for p in BLUEPRINTS])
def test_blueprint_runs_in_the_frontend(browser_env, comfy_server, path):
    client, _, _ = comfy_server
    assert path.stem in _served_blueprints(client)
    proc, out = run_node(browser_env, [HERE / "frontend_run.js", client.base, "blueprint", path.stem], timeout=600)
    assert out and out[-1]["ok"], proc.stdout[-3000:] + proc.stderr[-3000:]
    result = out[-1]
    assert result["missing"] == [] and "NexusGenConditioning" in result["class_types"], result
    assert [_image_size(client, ref) for ref in result["images"]] == [(128, 96)], result


def test_missing_model_is_offered_for_download(browser_env, comfy_server):
    """properties.models on the loaders: with ae.safetensors absent, the frontend's missing-models dialog (1.27,
    1.35) or issues panel (1.58) names it with a Download button."""
    client, base, _ = comfy_server
    vae = base / "models" / "vae" / "ae.safetensors"
    aside = base / "ae.safetensors.aside"
    vae.rename(aside)
    try:
        proc, out = run_node(browser_env, [HERE / "frontend_run.js", client.base, "missing-models",
                                           REPO / "workflows" / "nexus_gen_variation.json"], timeout=300)
    finally:
        aside.rename(vae)
    assert out and out[-1]["ok"], proc.stdout[-3000:] + proc.stderr[-3000:]
    assert re.search(r"ae\.safetensors.{0,40}Download", out[-1]["text"][:400], re.S), out[-1]["text"][:400]


def test_understanding_streams_onto_the_node_under_vue_nodes(browser_env, comfy_server, object_info):
    """Under the Vue node renderer (Nodes 2.0): every node of the workflow is drawn in the DOM, the widgets the run
    sets (reply budget, seed) reach the prompt, and the answer streams into the Understand node while it runs."""
    client, _, _ = comfy_server
    env = dict(browser_env[1], VUE_NODES="1", FRESH="1")
    path = REPO / "workflows" / "nexus_gen_understanding.json"
    try:
        proc, out = run_node((browser_env[0], env), [HERE / "frontend_run.js", client.base, "workflow", path],
                             timeout=600)
    finally:
        client.post("/settings", {"Comfy.VueNodes.Enabled": False})
    assert out and out[-1]["ok"], proc.stdout[-3000:] + proc.stderr[-3000:]
    result = out[-1]
    version = tuple(int(x) for x in re.findall(r"\d+", result["frontend"] or "0")[:2])
    if version < (1, 28):  # Nodes 2.0 (the setting) came in 1.27.1; checked on 1.58.1
        pytest.skip(f"frontend {result['frontend']} has no Vue node renderer")
    assert result["vue_nodes"] == result["graph_nodes"] == len(json.loads(path.read_text())["nodes"]), result
    (answer,) = result["texts"]
    title = object_info["NexusGenUnderstand"]["display_name"]
    understand = next(k for k, v in result["vue_text"].items() if title in v)
    # ours: the text is sent while it is written, and all of it in the end; the frontend's: each update reaches the
    # node's text preview. Read a moment after each event, a preview can already be gone when the prompt has just
    # ended (the frontend removes it then), so the last event is not required to find one (seen once on 1.58.1).
    events = [e for e in result["progress_text_events"] if e["node"] == understand]
    assert len(events) >= 2 and events[-1]["text"].strip() == answer.strip() != "", result
    shown = [e for e in events if e["preview"] is not None]
    assert len(shown) >= len(events) - 1 and all(e["preview"] == e["text"] for e in shown), result
    if version >= (1, 58):  # the renderer's: 1.58.1 draws text previews on Vue nodes, 1.35.9 does not (seen here)
        assert answer.strip() in result["vue_seen_while_running"][understand], result



def test_workflow_with_note_runs_from_the_frontend_and_a_skipped_lora_is_a_toast(browser_env, comfy_server, tmp_path):
    """The LoRA + hi-res workflow queued by the frontend itself: the Markdown note and the groups stay out of the
    prompt, and both passes run (a 1.5x image). Its LoRA is an XLabs file, whose keys ComfyUI's loaders skip (on the
    tiny decoder every LoRA is skipped; the layout gives the notice its advice): a toast that stays names the Load
    LoRA node, says that none of the file's keys matched, and how to convert it. (The same text is on the node while
    the prompt runs; the frontend removes it when the prompt ends.) The text-to-image graph runs from the frontend
    as the blueprint and, on 1.41+, as the app."""
    import torch
    from safetensors.torch import save_file

    client, base, _ = comfy_server
    name = "nexus_test_xlabs_tiny.safetensors"
    (base / "models" / "loras").mkdir(exist_ok=True)
    save_file({f"double_blocks.0.processor.qkv_lora1.{half}.weight": torch.zeros(4, 4) for half in ("down", "up")},
              str(base / "models" / "loras" / name))
    wf = json.loads((REPO / "workflows" / "nexus_gen_lora_hires.json").read_text())
    lora = next(n for n in wf["nodes"] if n["type"] == "LoraLoaderModelOnly")
    lora["widgets_values"][0] = name
    path = tmp_path / "lora_notice.json"
    path.write_text(json.dumps(wf))
    env = dict(browser_env[1], FRESH="1")
    proc, out = run_node((browser_env[0], env), [HERE / "frontend_run.js", client.base, "workflow", path],
                         timeout=600)
    assert out and out[-1]["ok"], proc.stdout[-3000:] + proc.stderr[-3000:]
    result = out[-1]
    assert "MarkdownNote" not in result["class_types"] and result["errors"] == [], result
    assert [_image_size(client, ref) for ref in result["images"]] == [(192, 144)], result
    (shown,) = [t for t in result["toasts"] if "Nexus-Gen" in t]
    assert f"#{lora['id']}" in shown and "2 of 2 keys" in shown and "nexus-gen convert-lora" in shown, shown


APPS = sorted((REPO / "workflows" / "apps").glob("*.json"))


@pytest.mark.parametrize("path", APPS, ids=[p.stem for p in APPS])
def test_app_opens_without_the_graph_and_runs_from_its_run_button(browser_env, comfy_server, path):
    """Frontend 1.41+ opens a workflow with extra.linearMode as an app: the graph hidden, the chosen widgets shown,
    and the app's own Run button makes the image."""
    client, _, _ = comfy_server
    env = dict(browser_env[1], FRESH="1")
    proc, out = run_node((browser_env[0], env), [HERE / "frontend_run.js", client.base, "app", path], timeout=600)
    result = out[-1] if out else {}
    version = tuple(int(x) for x in re.findall(r"\d+", result.get("frontend") or "0")[:2])
    if out and version < (1, 41):
        pytest.skip(f"frontend {result['frontend']} has no app mode (1.41+)")
    assert out and result["ok"], proc.stdout[-3000:] + proc.stderr[-3000:]
    assert result["app"]["graph_hidden"], result["app"]
    shown = json.loads(path.read_text())["extra"]["linearData"]["inputs"]
    for _node, widget in shown:
        assert f"\n{widget}\n" in result["app"]["text"], (widget, result["app"]["text"][-800:])
    assert [_image_size(client, ref) for ref in result["images"]] == [(128, 96)], result
