import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
FIXTURE = Path(os.environ.get("NEXUS_FIXTURES", REPO.parent / "shared" / "fixtures")) / "nexus-tiny-a"


def in_ci() -> bool:
    """CI=true (any value but '', 0, false, no): a missing golden fixture is an error there, not a skip."""
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def fixture_present() -> bool:
    return (FIXTURE / "manifest.json").is_file()


def missing_message() -> str:
    return f"golden fixture not found at {FIXTURE} (set NEXUS_FIXTURES to the shared/fixtures folder)"


def fixture_or_skip() -> Path:
    if not fixture_present():
        if in_ci():
            pytest.fail(f"CI is set and the {missing_message()}", pytrace=False)
        pytest.skip(missing_message())
    return FIXTURE


def pytest_report_header(config):
    state = "found" if fixture_present() else ("MISSING (an error: CI is set)" if in_ci() else
                                               "missing: golden tests skip")
    return f"nexus golden fixture: {FIXTURE} ({state})"


def pytest_collection_modifyitems(session, config, items):
    """With CI set, stop the whole run before any test when golden tests were collected but their data is
    missing: a green CI without the golden data would hide every parity regression. Tests that need no golden
    data (packaging, tests/comfyui without COMFYUI_PATH, ...) still run, or skip, as usual."""
    if not in_ci() or fixture_present():
        return
    import os
    host = bool(os.environ.get("COMFYUI_PATH"))  # real-host tests skip without a host, golden data or not
    golden = [item.nodeid for item in items if "fixture_dir" in getattr(item, "fixturenames", ())
              and (host or item.get_closest_marker("comfyui") is None)]
    if golden:
        raise pytest.UsageError(
            f"CI is set and the {missing_message()}: {len(golden)} collected tests need it "
            f"(e.g. {golden[0]}). Put shared/fixtures beside the repository, or unset CI to skip them.")


@pytest.fixture(scope="session", autouse=True)
def system_temp_of_our_own(tmp_path_factory):
    """What the code under test leaves in the system temp folder (a one-file AR's unpacked small files, a copy per
    file version) goes into this run's own folder, which pytest removes with its others: for this process and for
    every command and host it starts (TMPDIR)."""
    import tempfile

    folder = str(tmp_path_factory.mktemp("system-temp"))
    before = tempfile.tempdir, os.environ.get("TMPDIR")
    tempfile.tempdir, os.environ["TMPDIR"] = folder, folder
    yield Path(folder)
    tempfile.tempdir = before[0]
    if before[1] is None:
        os.environ.pop("TMPDIR", None)
    else:
        os.environ["TMPDIR"] = before[1]


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
def decoders(fixture_dir, fixture_ar):
    """The fixture's two decoders, float32 on the CPU: {'gen': ..., 'edit': ...}."""
    from nexus_core.decoder import load_decoder
    cfg = fixture_ar.checkpoint.config
    return {"gen": load_decoder(fixture_dir / "nexus" / "generation_decoder.bin", cfg),
            "edit": load_decoder(fixture_dir / "nexus" / "edit_decoder.bin", cfg)}


@pytest.fixture(scope="session")
def flux(fixture_dir):
    """(TextEncoders, VAE) of the fixture's FLUX.1-dev subset."""
    from nexus_core.pipeline import load_flux
    return load_flux(fixture_dir / "flux")


@pytest.fixture(scope="session")
def tiny_root(tmp_path_factory):
    from nexus_core.synthetic import make_tiny
    root = tmp_path_factory.mktemp("tiny")
    make_tiny(root, seed=0)
    return root


@pytest.fixture(scope="session")
def tiny_ar(tiny_root):
    from nexus_core.ar import load_ar
    return load_ar(tiny_root / "Nexus-GenV2", device="cpu", dtype="float32")
