import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
FIXTURE = Path(os.environ.get("NEXUS_FIXTURES", REPO.parent / "shared" / "fixtures")) / "nexus-tiny-a"


def fixture_or_skip() -> Path:
    if not (FIXTURE / "manifest.json").is_file():
        pytest.skip(f"golden fixture not found at {FIXTURE} (set NEXUS_FIXTURES to the shared/fixtures folder)")
    return FIXTURE


@pytest.fixture(scope="session")
def fixture_dir() -> Path:
    return fixture_or_skip()


@pytest.fixture(scope="session")
def manifest(fixture_dir):
    import json
    return json.loads((fixture_dir / "manifest.json").read_text())["cases"]


@pytest.fixture(scope="session")
def golden(fixture_dir):
    from safetensors.torch import load_file
    return lambda name: load_file(str(fixture_dir / "golden" / f"{name}.safetensors"))


@pytest.fixture(scope="session")
def fixture_ar(fixture_dir):
    from nexus_core.ar import load_ar
    return load_ar(fixture_dir / "nexus", device="cpu", dtype="float32")


@pytest.fixture(scope="session")
def tiny_root(tmp_path_factory):
    from nexus_core.tiny import make_tiny
    root = tmp_path_factory.mktemp("tiny")
    make_tiny(root, seed=0)
    return root


@pytest.fixture(scope="session")
def tiny_ar(tiny_root):
    from nexus_core.ar import load_ar
    return load_ar(tiny_root / "Nexus-GenV2", device="cpu", dtype="float32")
