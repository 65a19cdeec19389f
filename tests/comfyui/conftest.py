"""Start a real ComfyUI (COMFYUI_PATH) headless on 127.0.0.1 with only this pack and tiny models; skip without it."""
import os
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
PACK_NAME = "ComfyUI-Nexus-Gen"


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

    from host_launch import Host, copy_engine, copy_example, write_paths_yaml
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
    engine = os.environ.get("COMFYUI_DISTRIBUTED")  # robertvoy/ComfyUI-Distributed: on one host it runs as one
    if engine:
        copy_engine(Path(engine), nodes_dir)
    copy_example(comfy_root, inp / "example.png")
    write_paths_yaml(base, models, nodes_dir)
    host = Host(comfy_root, base)
    client = Client(host.url)
    try:
        host.start(pytest.fail)
        client.started_in = host.started_in
        yield client, base, host.log
    finally:
        host.stop()


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
