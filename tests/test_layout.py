"""nexus_core's layout: imports go one way between its folders, every folder says what it holds, and the core
never imports the host (the README's "Repository layout" states the order this test enforces)."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

CORE = Path(__file__).resolve().parents[1] / "nexus_core"
# A part may import parts of a lower rank and its own; nothing may import a part of a higher or equal other rank.
RANK = {"errors": 0, "settings": 1, "files": 2, "images": 3, "memory": 3, "loading": 4,
        "ar": 5, "decoder": 5, "flux": 5, "embeddings": 6, "synthetic": 6, "pipeline": 6, "cli": 7}
HOST_MODULES = {"comfy", "comfy_api", "comfy_execution", "folder_paths", "server", "nodes", "execution"}


def _part(rel: tuple[str, ...]) -> str:
    return rel[0].removesuffix(".py")


def _imports(path: Path):
    """(line, target part or None, absolute top-level module or None) of every import in `path`."""
    rel = path.relative_to(CORE).parts
    package = list(rel[:-1])
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.level:
            base = package[: len(package) - (node.level - 1)] if node.level > 1 else package
            if node.level - 1 > len(package):
                yield node.lineno, "<outside nexus_core>", None
                continue
            target = base + (node.module.split(".") if node.module else [])
            names = target or [a.name for a in node.names]
            yield node.lineno, names[0], None
        elif isinstance(node, ast.ImportFrom):
            yield node.lineno, None, (node.module or "").split(".")[0]
        elif isinstance(node, ast.Import):
            for a in node.names:
                yield node.lineno, None, a.name.split(".")[0]


def _modules():
    return sorted(p for p in CORE.rglob("*.py") if "__pycache__" not in p.parts)


def test_every_part_has_a_rank():
    parts = {_part(p.relative_to(CORE).parts) for p in _modules()} - {"__init__"}
    assert parts == set(RANK), f"new or removed parts: {parts ^ set(RANK)} (give them a place in RANK and the README)"


@pytest.mark.parametrize("path", _modules(), ids=lambda p: p.relative_to(CORE).as_posix())
def test_imports_go_one_way(path):
    rel = path.relative_to(CORE).parts
    if rel == ("__init__.py",):
        return
    own = _part(rel)
    for line, target, top in _imports(path):
        assert top not in HOST_MODULES, f"{path.name}:{line} imports the host module {top!r}"
        assert top != "nexus_core", f"{path.name}:{line}: import nexus_core's own modules relatively"
        if target is None or target == own or target == "__version__":
            continue
        assert target in RANK, f"{path.name}:{line} imports {target!r} from outside nexus_core"
        assert RANK[target] < RANK[own], (f"{'/'.join(rel)}:{line}: {own} (rank {RANK[own]}) imports {target} "
                                          f"(rank {RANK[target]}): imports go one way, down the README's list")


@pytest.mark.parametrize("folder", sorted(p.parent for p in CORE.glob("*/__init__.py")), ids=lambda p: p.name)
def test_every_folder_says_what_it_holds(folder):
    doc = ast.get_docstring(ast.parse((folder / "__init__.py").read_text(encoding="utf-8")))
    assert doc and len(doc.split()) >= 8, f"{folder.name}/__init__.py needs a docstring that says what lives there"
    modules = [p for p in folder.glob("*.py") if p.name not in ("__init__.py", "__main__.py")]
    assert len(modules) <= 10, f"{folder.name}/ holds {len(modules)} modules: split it by concern"


def test_the_benchmarks_import_each_other_without_a_circle():
    """Scripts in benchmarks/ share helpers through modules they all import (process_memory.py), never by importing
    each other both ways (full_size.py and full_size_comfy.py once did)."""
    bench = CORE.parent / "benchmarks"
    stems = {p.stem for p in bench.glob("*.py")}
    graph = {}
    for p in bench.glob("*.py"):
        deps = set()
        for node in ast.walk(ast.parse(p.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and not node.level and node.module in stems:
                deps.add(node.module)
            elif isinstance(node, ast.Import):
                deps |= {a.name for a in node.names if a.name in stems}
            elif isinstance(node, ast.Call) and getattr(node.func, "id", "") == "_module" and len(node.args) > 1:
                arg = node.args[0]  # _module(REPO / "benchmarks" / "x.py", ...): the scripts' own file loader
                text = ast.unparse(arg)
                deps |= {s for s in stems if f"'{s}.py'" in text or f'"{s}.py"' in text}
        graph[p.stem] = deps - {p.stem}

    def reach(start, seen):
        for d in graph.get(start, ()):
            if d not in seen:
                seen.add(d)
                reach(d, seen)
        return seen
    circles = sorted(s for s in graph if s in reach(s, set()))
    assert not circles, f"benchmarks importing each other in a circle: {circles} ({ {s: graph[s] for s in circles} })"


def test_the_command_line_is_split_by_what_each_part_does():
    """parser (reading), checks (refusing early), commands (what each does), decode (their shared plumbing),
    interrupts (stops from outside), entry (the program): none over 300 lines."""
    cli = CORE / "cli"
    for part in ("parser", "checks", "commands", "decode", "interrupts", "entry"):
        assert (cli / f"{part}.py").is_file(), part
    long = {p.name: n for p in cli.glob("*.py") if (n := len(p.read_text(encoding="utf-8").splitlines())) > 300}
    assert not long, f"split these by what they do: {long}"


def test_the_node_layer_shows_what_a_user_drags_apart_from_the_host_glue():
    """nodes/ holds the node classes (and their socket types); how the pack talks to ComfyUI lives in nodes/host/
    and what a prompt may name in nodes/inputs/; no folder holds more than 8 modules."""
    nodes = CORE.parent / "nodes"
    top = {p.stem for p in nodes.glob("*.py")} - {"__init__"}
    assert top == {"loaders", "embeds", "conditioning", "understand", "types"}, top
    for folder in (nodes, nodes / "host", nodes / "inputs"):
        modules = [p for p in folder.glob("*.py") if p.name != "__init__.py"]
        assert len(modules) <= 8, f"{folder.name}/ holds {len(modules)} modules"
        if folder != nodes:
            doc = ast.get_docstring(ast.parse((folder / "__init__.py").read_text(encoding="utf-8")))
            assert doc and len(doc.split()) >= 8, f"nodes/{folder.name}/__init__.py must say what lives there"
    for p in nodes.rglob("*.py"):  # the host glue never imports the node classes (one way, as in nexus_core)
        if p.parent != nodes:
            text = p.read_text(encoding="utf-8")
            for cls_module in ("loaders", "embeds", "conditioning", "understand"):
                assert f"from ..{cls_module} import" not in text and f"from .. import {cls_module}" not in text, p


def test_the_workflow_builder_keeps_its_data_apart():
    """tools/workflow_specs holds every example workflow as data (graphs, groups, notes per language, apps,
    blueprints); tools/build_workflows.py holds the code that lays them out and writes them."""
    import sys
    tools = CORE.parent / "tools"
    sys.path.insert(0, str(tools))
    try:
        from workflow_specs.apps import APPS, BLUEPRINTS_SPEC
        from workflow_specs.graphs import WORKFLOWS
        from workflow_specs.notes_zh import NOTES_ZH
    finally:
        sys.path.remove(str(tools))
    shipped = {p.stem for p in (CORE.parent / "workflows").glob("*.json") if not p.stem.endswith("_zh")}
    assert shipped == set(WORKFLOWS), shipped ^ set(WORKFLOWS)
    assert set(NOTES_ZH) == set(WORKFLOWS)  # every workflow has its Chinese note
    assert {p.stem for p in (CORE.parent / "workflows" / "apps").glob("*.json")} == set(APPS)
    assert {p.stem for p in (CORE.parent / "subgraphs").glob("*.json")} == set(BLUEPRINTS_SPEC)
    code = (tools / "build_workflows.py").read_text(encoding="utf-8")
    for data in ("WORKFLOWS = {", "NOTES_ZH = {", "APPS = {", "MODEL_URLS = {", "VRAM = ("):
        assert data not in code, f"{data!r} belongs in tools/workflow_specs"
