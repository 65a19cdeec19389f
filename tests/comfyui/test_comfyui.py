"""The node pack inside a real ComfyUI (COMFYUI_PATH), on tiny models: start-up, /object_info, every workflow in
workflows/ run through /prompt, latents equal to `nexus-gen generate`, interrupt, and bad input."""
import io
import json
import re
import shutil
from pathlib import Path

import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from client import messages
from workflow_format import input_specs, shrink, ui_to_api

REPO = Path(__file__).resolve().parents[2]
WORKFLOWS = sorted((REPO / "workflows").glob("*.json"))
NODES = ["NexusGenARLoader", "NexusGenDecoderLoader", "NexusGenTextEncoderLoader", "NexusGenPromptEmbeds",
         "NexusGenEditEmbeds", "NexusGenImageEmbeds", "NexusGenEmbedsBlend", "NexusGenConditioning",
         "NexusGenNegative", "NexusGenScheduler", "NexusGenUnderstand"]
pytestmark = pytest.mark.comfyui


def api(path: Path, object_info) -> dict:
    return ui_to_api(json.loads(path.read_text()), object_info)


def error_of(entry) -> dict:
    return messages(entry).get("execution_error", {})


def test_pack_imports_cleanly_and_fast(comfy_server):
    client, _, log = comfy_server
    text = log.read_text()
    assert not re.search(r"IMPORT FAILED.*Nexus-Gen", text), text[-3000:]
    assert "Cannot import" not in "".join(line for line in text.splitlines() if "Nexus-Gen" in line)
    plain = re.sub(r"\x1b\[[0-9;]*m", "", text)  # 0.13+ hosts colour their log lines
    times = [float(m.group(1)) for m in re.finditer(r"^(?:\[\w+\]\s*)?\s*([\d.]+) seconds.*ComfyUI-Nexus-Gen", plain,
                                                    re.M)]
    # a share of the host's own start-up (both stretch alike on a loaded machine), not a wall time
    assert times and times[0] < 0.05 * client.started_in, (times, client.started_in)


def test_object_info_lists_every_node_with_tooltips(object_info):
    for name in NODES:
        info = object_info[name]
        assert info["category"] == "Nexus-Gen" and info["description"]
        for inp, spec in input_specs(info):
            assert len(spec) > 1 and spec[1].get("tooltip"), f"{name}.{inp} has no tooltip"
        assert all(info["output_tooltips"]), name


def test_folders_are_listed(object_info):
    ar = object_info["NexusGenARLoader"]["input"]["required"]["model"]
    dec = object_info["NexusGenDecoderLoader"]["input"]["required"]["decoder"]
    assert "Nexus-GenV2" in str(ar)
    assert "Nexus-GenV2/generation_decoder.bin" in str(dec) and "Nexus-GenV2/edit_decoder.bin" in str(dec)
    assert "model-00001-of-00002.safetensors" not in str(dec)  # AR shards are not offered as decoders


def host_version(client) -> tuple:
    version = client.get("/system_stats")["system"]["comfyui_version"]
    return tuple(int(p) for p in re.findall(r"\d+", version)[:3])


def skip_unless_gguf_runs(client, object_info, wf: dict):
    """The GGUF workflow needs city96's ComfyUI-GGUF, and a host that reads a FLUX DiT's widths from its shapes:
    before 0.33 ComfyUI's FLUX detection hard-codes width 3072, so the TINY GGUF cannot load there."""
    if not any(n["type"] == "UnetLoaderGGUF" for n in wf["nodes"]):
        return
    if "UnetLoaderGGUF" not in object_info:
        pytest.skip("ComfyUI-GGUF is not loaded (set COMFYUI_GGUF to a checkout of city96/ComfyUI-GGUF)")
    if host_version(client) < (0, 33):
        pytest.skip("this ComfyUI's FLUX detection hard-codes width 3072: the tiny GGUF DiT loads on 0.33+ only "
                    "(the real-width GGUF is covered separately)")


def skip_unless_engine_loaded(object_info, wf: dict):
    """The distributed workflow needs robertvoy's ComfyUI-Distributed; on one host its nodes pass through."""
    if any(n["type"].startswith("Distributed") and n["type"] not in object_info for n in wf["nodes"]):
        pytest.skip("ComfyUI-Distributed is not loaded (set COMFYUI_DISTRIBUTED to a checkout of "
                    "robertvoy/ComfyUI-Distributed)")


# FLUX add-ons (a LoRA, Redux) are made for FLUX's real widths: these run on the real-width route instead
# (test_mixing_real_route.py::test_mixing_workflows_run_on_the_real_route)
REAL_WIDTH_ONLY = ("nexus_gen_lora_hires", "nexus_gen_redux")


@pytest.mark.parametrize("path", WORKFLOWS, ids=[p.stem for p in WORKFLOWS])
def test_workflow_runs(comfy_server, object_info, path):
    client, _, _ = comfy_server
    if path.stem.removesuffix("_zh") in REAL_WIDTH_ONLY:
        pytest.skip("a FLUX add-on at FLUX's real widths: run on the real-width route (test_mixing_real_route.py)")
    wf = json.loads(path.read_text())
    skip_unless_gguf_runs(client, object_info, wf)
    skip_unless_engine_loaded(object_info, wf)
    prompt = shrink(ui_to_api(wf, object_info))
    entry = client.run(prompt, wf)
    assert entry["status"]["status_str"] == "success", json.dumps(error_of(entry))[:3000]
    outputs = entry["outputs"]
    images = [img for out in outputs.values() for img in out.get("images", [])]
    texts = [t for out in outputs.values() for t in out.get("text", [])]
    scale = 1.5 if any(n["class_type"] == "LatentUpscaleBy" for n in prompt.values()) else 1
    for ref in images:
        size = Image.open(io.BytesIO(client.image(ref))).size
        assert size == (int(128 * scale), int(96 * scale)), (ref, size)
    assert images or texts, outputs
    for t in texts:
        assert t.strip()
    if "understanding" in path.stem:
        assert texts


def comfy_latents(client, base, prompt) -> torch.Tensor:
    """Run `prompt` with a SaveLatent after its SamplerCustom; return the saved latents (VAE space)."""
    sampler = next(k for k, n in prompt.items() if n["class_type"] == "SamplerCustom")
    prompt["900"] = {"class_type": "SaveLatent", "inputs": {"samples": [sampler, 0], "filename_prefix": "exact/x"}}
    entry = client.run(prompt)
    assert entry["status"]["status_str"] == "success", json.dumps(error_of(entry))[:3000]
    ref = entry["outputs"]["900"]["latents"][0]
    return load_file(str(base / "output" / ref["subfolder"] / ref["filename"]))["latent_tensor"].float()


def cli_latents(args: list, tmp_path) -> torch.Tensor:
    """`nexus-gen ARGS --save-latents` at the shrunk settings; the latents moved from DiT space to VAE space."""
    from nexus_core.cli import main

    out = tmp_path / "lat.safetensors"
    assert main(args + ["--max-new-tokens", "100", "--width", "128", "--height", "96", "--steps", "4",
                        "--out", str(tmp_path / "x.png"), "--save-latents", str(out), "--device", "cpu"]) == 0
    return load_file(str(out))["latents"].float() / 0.3611 + 0.1159


def test_editing_decoder_as_gguf(comfy_server, object_info):
    """The editing decoder converts to GGUF like the generation decoder (`nexus-gen convert edit_decoder.bin
    --layout gguf`): Unet Loader (GGUF) + Projector Loader + Model Patch run the editing workflow, editing ids
    and the reference embeddings included, and give the latents of the unquantized decoder (F16 GGUF)."""
    from nexus_core.decoder.convert import convert_to_gguf

    client, base, _ = comfy_server
    if "UnetLoaderGGUF" not in object_info:
        pytest.skip("ComfyUI-GGUF is not loaded (set COMFYUI_GGUF to a checkout of city96/ComfyUI-GGUF)")
    if host_version(client) < (0, 33):
        pytest.skip("the tiny GGUF DiT loads on 0.33+ only (FLUX detection reads the width from the shapes)")
    models = base / "models"
    name = "nexus_gen_edit_decoder-F16.gguf"
    if not (models / "diffusion_models" / name).is_file():
        convert_to_gguf(models / "nexus_gen" / "Nexus-GenV2" / "edit_decoder.bin", models / "diffusion_models" / name,
                        "F16")
    prompt = shrink(api(REPO / "workflows" / "nexus_gen_edit.json", object_info), steps=2)
    plain = comfy_latents(client, base, json.loads(json.dumps(prompt)))
    loader_id = next(k for k, n in prompt.items() if n["class_type"] == "NexusGenDecoderLoader")
    prompt["700"] = {"class_type": "UnetLoaderGGUF", "inputs": {"unet_name": name}}
    prompt["701"] = {"class_type": "NexusGenProjectorLoader", "inputs": {"decoder": name}}
    prompt["702"] = {"class_type": "NexusGenModelPatch", "inputs": {"model": ["700", 0], "projector": ["701", 0]}}
    for node in prompt.values():
        for key, value in node["inputs"].items():
            if isinstance(value, list) and value[0] == loader_id:
                node["inputs"][key] = ["702", 0] if value[1] == 0 else ["701", 0]
    del prompt[loader_id]
    gguf = comfy_latents(client, base, prompt)
    torch.testing.assert_close(gguf, plain, atol=2e-2, rtol=2e-2)  # F16 storage of a bf16 DiT: rounding only


def test_text_to_image_latents_equal_nexus_gen_generate(comfy_server, object_info, tmp_path):
    """The reference-exact workflow gives the latents `nexus-gen generate` gives with the same settings."""
    client, base, _ = comfy_server
    prompt = shrink(api(REPO / "workflows" / "nexus_gen_text_to_image.json", object_info), steps=4)
    comfy = comfy_latents(client, base, prompt)
    embeds = next(n for n in prompt.values() if n["class_type"] == "NexusGenPromptEmbeds")["inputs"]
    models = base / "models"
    ours = cli_latents(["generate", "--model", str(models / "nexus_gen" / "Nexus-GenV2"), "--flux", str(models),
                        "--prompt", embeds["prompt"], "--cfg", "3", "--seed", "52", "--negative", ""], tmp_path)
    print(f"max |ComfyUI - nexus-gen generate| latent diff: {(comfy - ours).abs().max():.2e}")
    torch.testing.assert_close(comfy, ours, atol=1e-4, rtol=1e-4)


def test_decoder_is_read_in_place_and_equals_its_converted_copy(comfy_server, object_info):
    """A .bin decoder is loaded in place: nothing is written under models/ (versions before Dec 2026 wrote a 24 GB
    converted copy on first use), and the latents equal those of the converted file loaded by the same node. A
    leftover converted copy beside the .bin is named in the log once, never deleted."""
    from nexus_core.decoder.convert import convert_decoder
    from nexus_core.files.safetensors_write import write_safetensors

    client, base, log = comfy_server
    models = base / "models"
    src = models / "nexus_gen" / "Nexus-GenV2" / "generation_decoder.bin"
    leftover = src.with_name("generation_decoder.comfyui.safetensors")
    write_safetensors(leftover, {"x": torch.zeros(1)}, {"source_stamp": "1:1"})
    before = {p: p.stat().st_mtime_ns for p in models.rglob("*") if p.is_file()}
    prompt = shrink(api(REPO / "workflows" / "nexus_gen_text_to_image.json", object_info), steps=2)
    prompt[next(k for k, n in prompt.items() if n["class_type"] == "NexusGenPromptEmbeds")]["inputs"]["seed"] = 7
    loader = next(n for n in prompt.values() if n["class_type"] == "NexusGenDecoderLoader")
    loader["inputs"]["weight_dtype"] = "fp8_e5m2"  # inputs no earlier test used: the loader runs, not its cache
    try:
        from_bin = comfy_latents(client, base, prompt)
        assert {p: p.stat().st_mtime_ns for p in models.rglob("*") if p.is_file()} == before
        assert leftover.is_file() and log.read_text().count(f"{leftover} ") == 1
        converted = models / "diffusion_models" / "generation_decoder_converted.safetensors"
        convert_decoder(src, converted, "comfyui", "bf16")
        loader["inputs"]["decoder"] = converted.name
        prompt.pop("900")
        torch.testing.assert_close(comfy_latents(client, base, prompt), from_bin, atol=0, rtol=0)
    finally:
        leftover.unlink(missing_ok=True)
        (models / "diffusion_models" / "generation_decoder_converted.safetensors").unlink(missing_ok=True)


def test_edit_latents_equal_nexus_gen_edit(comfy_server, object_info, tmp_path):
    """The editing workflow (editing ids carried in model_conds, applied by the MODEL's wrapper) gives the latents
    `nexus-gen edit` gives: the position ids reach the DiT exactly as in the reference pipeline."""
    client, base, _ = comfy_server
    prompt = shrink(api(REPO / "workflows" / "nexus_gen_edit.json", object_info), steps=4)
    comfy = comfy_latents(client, base, prompt)
    embeds = next(n for n in prompt.values() if n["class_type"] == "NexusGenEditEmbeds")["inputs"]
    models = base / "models"
    ours = cli_latents(["edit", "--model", str(models / "nexus_gen" / "Nexus-GenV2"), "--flux", str(models),
                        "--image", str(base / "input" / "example.png"), "--instruction", embeds["instruction"],
                        "--cfg", "1", "--seed", "42"], tmp_path)
    print(f"max |ComfyUI - nexus-gen edit| latent diff: {(comfy - ours).abs().max():.2e}")
    torch.testing.assert_close(comfy, ours, atol=1e-4, rtol=1e-4)


def test_interrupt_stops_within_a_token_and_next_prompt_works(comfy_server, object_info, tmp_path):
    """Interrupted while it writes (seen on the websocket: its progress has passed 8 tokens), the answer stops
    within a few tokens: counted in tokens, not seconds, so a loaded machine cannot make it fail."""
    import os
    import subprocess

    client, _, _ = comfy_server
    prompt = api(REPO / "workflows" / "nexus_gen_understanding.json", object_info)
    ask = next(k for k, n in prompt.items() if n["class_type"] == "NexusGenUnderstand")
    prompt[ask]["inputs"]["max_new_tokens"] = 8192
    prompt[ask]["inputs"]["seed"] = 123  # a fresh cache key
    (tmp_path / "p.json").write_text(json.dumps(prompt))
    python = os.environ.get("COMFYUI_PYTHON", "python3")
    out = subprocess.run([python, str(Path(__file__).parent / "interrupt_probe.py"), client.base,
                          str(tmp_path / "p.json"), ask, "8"], capture_output=True, text=True, timeout=1800, check=True)
    got = json.loads(out.stdout.strip().splitlines()[-1])
    print(f"interrupt sent at token {got['at_interrupt']}, highest token seen after it {got['highest']}")
    assert got["ended"] == "execution_interrupted", got
    assert got["highest"] - got["at_interrupt"] <= 16, got  # the HTTP round trip plus the token in flight
    ok = client.run(shrink(api(REPO / "workflows" / "nexus_gen_understanding.json", object_info)))
    assert ok["status"]["status_str"] == "success"


def test_progress_and_streamed_text_over_the_websocket(comfy_server, object_info):
    """Understanding streams its text onto the node while it writes, and AR loops report progress."""
    client, _, _ = comfy_server
    prompt = api(REPO / "workflows" / "nexus_gen_understanding.json", object_info)
    ask = next(k for k, n in prompt.items() if n["class_type"] == "NexusGenUnderstand")
    prompt[ask]["inputs"].update(max_new_tokens=600, seed=4242)  # uncached, long enough to stream several times
    embeds_graph = shrink(api(REPO / "workflows" / "nexus_gen_text_to_image.json", object_info), tokens=300)
    pe = next(k for k, n in embeds_graph.items() if n["class_type"] == "NexusGenPromptEmbeds")
    embeds_graph[pe]["inputs"]["prompt"] = "a streamed fox"
    und = client.watch(prompt, timeout=300)
    node_texts = [t["text"] for t in und["texts"] if t["node"] == ask]
    assert len(node_texts) >= 2, und["texts"][:5]
    assert len(set(node_texts)) >= 2  # the text grew while it was written
    assert any(p["node"] == ask and p["value"] > 1 for p in und["progress"])
    gen = client.watch(embeds_graph, timeout=300)
    assert any(p["node"] == pe and p["value"] > 1 for p in gen["progress"]), gen["progress"][:5]
    print(f"understanding: {len(node_texts)} streamed text updates, {sum(p['node'] == ask for p in und['progress'])} "
          f"progress events")


def _bad(client, prompt, pattern, when=("validation", "execution")) -> str:
    """The graph is refused with a message matching `pattern`: at validation (node_errors, shown on the node; the
    node and what depends on it never run) or as a node error while running; either way the server stays alive. Returns where it was refused."""
    code, body = client.queue(prompt)
    if body.get("node_errors"):  # 400, or 200 when other outputs of the graph are still valid and run
        if code == 200:
            client.wait(body["prompt_id"])
        details = [e.get("details", "") + " " + e.get("message", "")
                   for n in body.get("node_errors", {}).values() for e in n.get("errors", [])]
        assert any(re.search(pattern, d) for d in details), body
        stage = "validation"
    else:
        entry = client.wait(body["prompt_id"])
        err = error_of(entry)
        assert entry["status"]["status_str"] == "error" and re.search(pattern, err.get("exception_message", "")), err
        stage = "execution"
    assert stage in when, (stage, when)
    assert client.get("/system_stats")  # the server is alive
    return stage


def test_truncated_decoder_is_a_node_error(comfy_server, object_info):
    client, base, _ = comfy_server
    src = base / "models" / "nexus_gen" / "Nexus-GenV2" / "generation_decoder.bin"
    broken = base / "models" / "nexus_gen" / "broken_generation_decoder.bin"
    broken.write_bytes(src.read_bytes()[: src.stat().st_size // 3])
    prompt = shrink(api(REPO / "workflows" / "nexus_gen_variation.json", object_info))
    loader = next(n for n in prompt.values() if n["class_type"] == "NexusGenDecoderLoader")
    loader["inputs"]["decoder"] = "broken_generation_decoder.bin"
    _bad(client, prompt, r"broken_generation_decoder.bin.*(truncated|corrupt)", when=("validation",))


def _broken_ar(models: Path, name: str, how: str) -> Path:
    folder = models / "nexus_gen" / name
    if not folder.exists():
        shutil.copytree(models / "nexus_gen" / "Nexus-GenV2", folder, ignore=shutil.ignore_patterns("*.bin"))
        if how == "nan":
            cfg = folder / "config.json"
            cfg.write_text(cfg.read_text().replace('"rms_norm_eps": 1e-06', '"rms_norm_eps": NaN'))
        else:
            for f in ("tokenizer.json", "tokenizer_config.json", "vocab.json", "merges.txt"):
                (folder / f).unlink(missing_ok=True)
    return folder


@pytest.mark.parametrize("case", ["nan config", "no tokenizer", "wrong-shape decoder tensor"])
def test_bad_files_are_refused_at_validation_and_the_next_prompt_runs(comfy_server, object_info, case):
    """Issue #19's node cases: refused when the prompt is queued, named on the node, before anything loads."""
    client, base, _ = comfy_server
    models = base / "models"
    prompt = shrink(api(REPO / "workflows" / "nexus_gen_text_to_image.json", object_info), steps=1)
    good = json.loads(json.dumps(prompt))
    if case == "wrong-shape decoder tensor":
        sd = torch.load(models / "nexus_gen" / "Nexus-GenV2" / "generation_decoder.bin", weights_only=True)
        sd["pipe.dit.single_blocks.0.to_qkv_mlp.weight"] = sd["pipe.dit.single_blocks.0.to_qkv_mlp.weight"][:-1].clone()
        torch.save(sd, models / "nexus_gen" / "odd_generation_decoder.bin")
        next(n for n in prompt.values() if n["class_type"] == "NexusGenDecoderLoader")["inputs"]["decoder"] = \
            "odd_generation_decoder.bin"
        pattern = r"pipe\.dit\.single_blocks\.0\.to_qkv_mlp\.weight has shape"
    else:
        name = "nan_ar" if case == "nan config" else "no_tokenizer_ar"
        _broken_ar(models, name, "nan" if case == "nan config" else "tokenizer")
        next(n for n in prompt.values() if n["class_type"] == "NexusGenARLoader")["inputs"]["model"] = name
        pattern = r"the number NaN is not finite" if case == "nan config" else r"No tokenizer in"
    _bad(client, prompt, pattern, when=("validation",))
    entry = client.run(good)
    assert entry["status"]["status_str"] == "success", json.dumps(error_of(entry))[:2000]


def test_missing_file_is_refused_before_running(comfy_server, object_info):
    client, _, _ = comfy_server
    prompt = shrink(api(REPO / "workflows" / "nexus_gen_variation.json", object_info))
    next(n for n in prompt.values() if n["class_type"] == "NexusGenDecoderLoader")["inputs"]["decoder"] = "nope.bin"
    code, body = client.queue(prompt)
    # every host: the node checks the name against its list itself (it takes the host's list check over)
    assert code == 400 and "decoder: 'nope.bin' is not one of the" in json.dumps(body), body
    assert client.get("/system_stats")


def test_negative_without_t5_is_a_node_error(comfy_server, object_info):
    client, _, _ = comfy_server
    prompt = shrink(api(REPO / "workflows" / "nexus_gen_text_to_image.json", object_info))
    next(n for n in prompt.values() if n["class_type"] == "NexusGenTextEncoderLoader")["inputs"]["t5xxl"] = "none"
    _bad(client, prompt, r"needs T5-XXL")


def test_plain_qwen_folder_is_a_node_error(comfy_server, object_info):
    client, base, _ = comfy_server
    src = base / "models" / "nexus_gen" / "Nexus-GenV2"
    plain = base / "models" / "nexus_gen" / "Plain-Qwen2.5-VL"
    if not plain.exists():
        shutil.copytree(src, plain, ignore=shutil.ignore_patterns("*decoder*"))
        index = json.loads((plain / "model.safetensors.index.json").read_text())
        from safetensors.torch import save_file
        for key in ("vision_head.weight", "image_prefill_embeds.weight"):
            shard = plain / index["weight_map"].pop(key)
            state = load_file(str(shard))
            del state[key]
            save_file(state, str(shard))
        (plain / "model.safetensors.index.json").write_text(json.dumps(index))
    prompt = shrink(api(REPO / "workflows" / "nexus_gen_understanding.json", object_info))
    next(n for n in prompt.values() if n["class_type"] == "NexusGenARLoader")["inputs"]["model"] = "Plain-Qwen2.5-VL"
    _bad(client, prompt, r"no 'vision_head.weight'.*not Nexus-Gen", when=("validation",))


@pytest.mark.parametrize("node,inputs,pattern", [
    ("NexusGenPromptEmbeds", {"prompt": "   "}, r"prompt: it is empty"),
    ("NexusGenARLoader", {"model": "no-such-model"}, r"model: 'no-such-model' is not one of the \d+ Nexus-Gen models"),
    ("NexusGenTextEncoderLoader", {"clip_l": "missing_clip.safetensors"},
     r"clip_l: 'missing_clip.safetensors' is not one of"),
    ("NexusGenTextEncoderLoader", {"t5xxl": "missing_t5.safetensors"}, r"t5xxl: 'missing_t5.safetensors' is not one"),
    ("NexusGenScheduler", {"steps": 0}, r"steps|smaller than min"),
    ("NexusGenConditioning", {"guidance": -1.0}, r"guidance|smaller than min"),
])
def test_bad_values_are_refused_before_running_and_the_next_prompt_runs(comfy_server, object_info, node, inputs,
                                                                        pattern):
    client, _, _ = comfy_server
    good = shrink(api(REPO / "workflows" / "nexus_gen_text_to_image.json", object_info), steps=2)
    bad = json.loads(json.dumps(good))
    next(n for n in bad.values() if n["class_type"] == node)["inputs"].update(inputs)
    _bad(client, bad, pattern, when=("validation",))
    assert client.run(good)["status"]["status_str"] == "success"


def test_editing_decoder_for_text_to_image_says_so(comfy_server, object_info, tmp_path):
    """It runs (the editing decoder accepts 81 target tokens), but the node says the kind is wrong."""
    client, _, _ = comfy_server
    prompt = shrink(api(REPO / "workflows" / "nexus_gen_text_to_image.json", object_info), steps=2)
    next(n for n in prompt.values() if n["class_type"] == "NexusGenDecoderLoader")["inputs"]["decoder"] = \
        "Nexus-GenV2/edit_decoder.bin"
    cond = next(k for k, n in prompt.items() if n["class_type"] == "NexusGenConditioning")
    got = client.watch(prompt, timeout=300)
    texts = [t["text"] for t in got["texts"] if t["node"] == cond]
    assert any("editing decoder" in t and "generation_decoder.bin" in t for t in texts), got["texts"][:5]
