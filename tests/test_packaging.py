"""Packaging rules: identical loose dependencies, no torch pin, a ComfyUI entry point that imports nothing heavy."""
import ast
import re
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_requirements_match_pyproject():
    deps = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    req = [line.strip() for line in (REPO / "requirements.txt").read_text().splitlines() if line.strip()]
    assert deps == req
    for d in deps:
        name = re.split(r"[<>=!~ \[]", d)[0].lower()
        assert name not in {"torch", "torchvision", "torchaudio", "flash-attn", "flash_attn"}, d
        assert "==" not in d, f"pinned: {d}"


def test_comfy_metadata():
    comfy = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["comfy"]
    assert comfy["PublisherId"] and comfy["DisplayName"] and comfy["requires-comfyui"]


def test_entry_point_imports_nothing_at_module_level():
    tree = ast.parse((REPO / "__init__.py").read_text())
    top_imports = [n for n in tree.body if isinstance(n, (ast.Import, ast.ImportFrom))]
    assert top_imports == []


def test_core_never_imports_comfyui():
    banned = re.compile(r"^\s*(import|from)\s+(comfy|comfy_api|folder_paths|server|nodes|execution)\b", re.M)
    for f in (REPO / "nexus_core").rglob("*.py"):
        assert not banned.search(f.read_text()), f


def test_no_unsafe_loading():
    for f in list((REPO / "nexus_core").rglob("*.py")) + list((REPO / "nodes").rglob("*.py")):
        text = f.read_text()
        assert "trust_remote_code" + "=True" not in text, f  # split so this file does not match itself
        for line in text.splitlines():
            if "torch" + ".load(" in line:
                assert "weights_only=True" in line, f"{f}: {line.strip()}"
