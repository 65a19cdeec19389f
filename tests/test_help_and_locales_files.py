"""The translation and help files name exactly the nodes the pack registers (read from the node sources, no host):
the full per-input check against the schema runs in a real host (tests/comfyui/test_help_and_locales.py)."""
import json
import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
NODE_IDS = set(re.findall(r'node_id="(\w+)"', "".join(p.read_text() for p in (REPO / "nodes").glob("*.py"))))


def test_node_ids_are_found():
    assert len(NODE_IDS) == 13 and "NexusGenARLoader" in NODE_IDS


def test_zh_node_defs_name_every_registered_node():
    zh = json.loads((REPO / "locales" / "zh" / "nodeDefs.json").read_text(encoding="utf-8"))
    assert set(zh) == NODE_IDS
    for node_id, d in zh.items():
        assert set(d) == {"display_name", "description", "inputs", "outputs"}, node_id
        assert all(set(v) == {"name", "tooltip"} for v in list(d["inputs"].values()) + list(d["outputs"].values()))
        assert sorted(d["outputs"]) == [str(i) for i in range(len(d["outputs"]))], node_id


def test_help_pages_exist_for_every_node_and_no_other():
    docs = REPO / "web" / "docs"
    assert {p.stem for p in docs.glob("*.md")} == NODE_IDS
    assert {p.parent.name for p in docs.glob("*/zh.md")} == NODE_IDS
