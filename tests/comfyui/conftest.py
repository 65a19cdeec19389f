"""Start a real ComfyUI (COMFYUI_PATH) headless on 127.0.0.1 with only this pack and tiny models; skip without it."""
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
PACK_NAME = "ComfyUI-Nexus-Gen"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def comfy_root() -> Path:
    root = os.environ.get("COMFYUI_PATH")
    if not root:
        pytest.skip("COMFYUI_PATH is not set: the real-ComfyUI integration tests need a ComfyUI checkout")
    root = Path(root)
    if not (root / "main.py").is_file():
        pytest.skip(f"COMFYUI_PATH={root} has no main.py")
    return root


@pytest.fixture(scope="session")
def comfy_server(comfy_root, tmp_path_factory):
    """Yields (client, base_dir, log_path). Python: $COMFYUI_PYTHON (ComfyUI's own environment) or this one."""
    from client import Client

    from nexus_core.synthetic import make_tiny
    from workflow_format import write_stand_ins

    base = tmp_path_factory.mktemp("comfy")
    models, nodes_dir, out, user, inp = (base / n for n in ("models", "custom_nodes", "output", "user", "input"))
    for d in (nodes_dir, out, user, inp):
        d.mkdir()
    make_tiny(models, seed=0, comfyui=True)
    write_stand_ins(models, (REPO / "workflows").glob("*.json"))  # the mixing workflows' LoRA, Redux, SigLIP
    (nodes_dir / PACK_NAME).symlink_to(REPO, target_is_directory=True)
    gguf_pack = os.environ.get("COMFYUI_GGUF")  # city96/ComfyUI-GGUF, run beside ours when given
    if gguf_pack:
        (nodes_dir / "ComfyUI-GGUF").symlink_to(Path(gguf_pack), target_is_directory=True)
    shutil.copy(comfy_root / "input" / "example.png", inp / "example.png") if (comfy_root / "input" / "example.png").exists() \
        else _write_example(inp / "example.png")
    yaml = base / "paths.yaml"
    yaml.write_text("nexus_test:\n"
                    f"    base_path: {models}\n"
                    "    nexus_gen: nexus_gen\n    text_encoders: text_encoders\n    vae: vae\n"
                    "    diffusion_models: diffusion_models\n    loras: loras\n    controlnet: controlnet\n"
                    "    style_models: style_models\n    clip_vision: clip_vision\n"
                    f"    custom_nodes: {nodes_dir}\n")
    port = _free_port()
    log = base / "comfyui.log"
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(HERE / "shim"), env.get("PYTHONPATH", "")])
    python = os.environ.get("COMFYUI_PYTHON", sys.executable)
    cmd = [python, "main.py", "--cpu", "--listen", "127.0.0.1", "--port", str(port), "--disable-auto-launch",
           "--extra-model-paths-config", str(yaml), "--output-directory", str(out), "--input-directory", str(inp),
           "--user-directory", str(user), "--database-url", "sqlite:///:memory:"]
    with open(log, "w") as fh:
        proc = subprocess.Popen(cmd, cwd=comfy_root, stdout=fh, stderr=subprocess.STDOUT, env=env)
    client = Client(f"http://127.0.0.1:{port}")
    started = time.monotonic()
    try:
        while True:  # an event, not a clock: the server answers, or the process ends (a loaded machine is slow)
            if proc.poll() is not None:
                pytest.fail(f"ComfyUI exited early:\n{log.read_text()[-4000:]}")
            try:
                client.get("/system_stats")
                break
            except OSError:
                if time.monotonic() - started > 1800:  # only so that a hung start cannot hang the suite
                    pytest.fail(f"ComfyUI did not answer in 30 minutes:\n{log.read_text()[-4000:]}")
                time.sleep(0.5)
        client.started_in = time.monotonic() - started
        yield client, base, log
    finally:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()


def _write_example(path: Path):
    from PIL import Image, ImageDraw
    img = Image.new("RGB", (768, 512), (230, 230, 220))
    ImageDraw.Draw(img).ellipse((200, 100, 560, 460), fill=(200, 60, 40))
    img.save(path)


@pytest.fixture(scope="session")
def object_info(comfy_server):
    client, _, _ = comfy_server
    return client.get("/object_info")


@pytest.fixture(scope="session")
def wide(comfy_server):
    """(client, base) with the real-width decoders, their GGUF and a full-size CLIP-L in the server's models
    (real_width.py), written once for every module that samples the real route."""
    from real_width import write_wide_models

    client, base, _ = comfy_server
    write_wide_models(base / "models")
    return client, base


@pytest.fixture(scope="session")
def bf16_latents(wide):
    """The generation decoder's latents on the real route, no add-on: the base the mixing tests compare with."""
    from real_width import generation_graph, run

    client, base = wide
    return run(client, base, generation_graph())


@pytest.fixture(scope="session")
def edit_latents(wide):
    """The editing decoder's latents on the real route (image + instruction), no add-on."""
    from real_width import edit_graph, run

    client, base = wide
    return run(client, base, edit_graph())
