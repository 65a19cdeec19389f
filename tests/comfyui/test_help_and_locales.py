"""Help pages and Chinese translations as a real ComfyUI (COMFYUI_PATH) serves them to its frontend:
* locales/zh/nodeDefs.json names every node, every input and every output that /object_info lists, nothing more,
  and reaches the frontend through the host's /i18n;
* web/docs/<NodeId>.md and web/docs/<NodeId>/zh.md are served under /extensions/<pack folder>/ for every node."""
import json
import re
import urllib.parse
from pathlib import Path

import pytest
from conftest import PACK_NAME
from workflow_format import input_specs

REPO = Path(__file__).resolve().parents[2]
ZH = json.loads((REPO / "locales" / "zh" / "nodeDefs.json").read_text(encoding="utf-8"))
CJK = re.compile(r"[\u4e00-\u9fff]")
pytestmark = pytest.mark.comfyui


def our_nodes(object_info: dict) -> dict:
    return {k: v for k, v in object_info.items() if v.get("python_module", "").endswith(PACK_NAME)}


def test_zh_node_defs_cover_every_node_input_and_output(object_info):
    ours = our_nodes(object_info)
    assert len(ours) == 13, sorted(ours)
    assert set(ZH) == set(ours), set(ZH) ^ set(ours)
    for node_id, info in ours.items():
        zh = ZH[node_id]
        assert CJK.search(zh["display_name"]) and CJK.search(zh["description"]), node_id
        inputs = [name for name, _ in input_specs(info)]
        assert sorted(zh["inputs"]) == sorted(inputs), (node_id, sorted(zh["inputs"]), inputs)
        for name in inputs:
            assert zh["inputs"][name]["name"] and CJK.search(zh["inputs"][name]["tooltip"]), (node_id, name)
        outputs = [str(i) for i in range(len(info["output"]))]
        assert sorted(zh["outputs"]) == outputs, (node_id, zh["outputs"], info["output_name"])
        for i in outputs:
            assert zh["outputs"][i]["name"] and CJK.search(zh["outputs"][i]["tooltip"]), (node_id, i)


def test_host_serves_the_zh_translations(comfy_server):
    client, _, _ = comfy_server
    served = client.get("/i18n")
    assert served["zh"]["nodeDefs"]["NexusGenARLoader"] == ZH["NexusGenARLoader"]
    assert set(ZH) <= set(served["zh"]["nodeDefs"])


def test_every_node_has_a_help_page_in_english_and_chinese(comfy_server, object_info):
    client, _, _ = comfy_server
    folder = urllib.parse.quote(PACK_NAME)
    for node_id, info in our_nodes(object_info).items():
        en = client.get(f"/extensions/{folder}/docs/{node_id}.md").decode("utf-8")
        zh = client.get(f"/extensions/{folder}/docs/{node_id}/zh.md").decode("utf-8")
        assert en.startswith("# ") and info["display_name"] in en.splitlines()[0], (node_id, en[:80])
        assert zh.startswith("# ") and CJK.search(zh), (node_id, zh[:80])
        for name, _ in input_specs(info):  # each page explains every input by its identifier
            assert f"`{name}`" in en and f"`{name}`" in zh, (node_id, name)
