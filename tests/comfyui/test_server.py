"""The pack on a shared server (a real ComfyUI, COMFYUI_PATH): what a careless or hostile API client sends is
refused when the prompt is posted, names never reach outside the model folders, work per prompt is bounded, and
several clients queueing at once, with deletions and interrupts thrown in, each get exactly what their prompt
gives when it runs alone, and only their own events.

NEXUS_SERVER=full runs the crowd at the issue's size (4 clients x 25 prompts); the default run is 4 x 4."""
import io
import json
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from client import messages
from test_comfyui import host_version
from workflow_format import shrink, ui_to_api

REPO = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
pytestmark = pytest.mark.comfyui
FULL = os.environ.get("NEXUS_SERVER", "") == "full"


def api(stem: str, object_info, **small) -> dict:
    wf = json.loads((REPO / "workflows" / f"{stem}.json").read_text())
    return shrink(ui_to_api(wf, object_info), **{"steps": 2, "width": 64, "height": 64, **small})


def node_id(prompt: dict, class_type: str) -> str:
    return next(k for k, n in prompt.items() if n["class_type"] == class_type)


def copy(prompt: dict) -> dict:
    return json.loads(json.dumps(prompt))


def refused_at_validation(client, prompt, node: str, pattern: str) -> str:
    """POST /prompt refuses `node` with a message matching `pattern` (in node_errors: a 400, or a 200 when another
    output of the graph does not depend on the node and still runs, as the host does); returns that message."""
    code, body = client.queue(prompt)
    assert code in (200, 400) and body.get("node_errors"), (code, json.dumps(body)[:1500])
    if code == 200:
        client.wait(body["prompt_id"])
    errs = body.get("node_errors", {}).get(node, {}).get("errors", [])
    details = [re.sub(r"^\w+ - ", "", e.get("details", "")) for e in errs]  # the host puts "<input> - " first
    assert any(re.search(pattern, d) for d in details), json.dumps(body)[:2000]
    return next(d for d in details if re.search(pattern, d))


def without_value(message: str) -> str:
    """A refusal with the (possibly shortened) quoted value taken out."""
    return re.sub(r"^(\w+): '.*?' (?=(is|holds|has) )", r"\1: 'X' ", message)


def log_since(log: Path, start: int) -> str:
    return log.read_text(errors="replace")[start:]


@pytest.fixture(scope="module")
def outside(comfy_server):
    """A copy of the tiny AR (with its decoders and a text encoder) outside every model folder, and a link to it
    that a user placed inside models/nexus_gen (which must keep working)."""
    _, base, _ = comfy_server
    models = base / "models"
    out = base / "outside"
    if not out.exists():
        shutil.copytree(models / "nexus_gen" / "Nexus-GenV2", out / "ar")
        shutil.copy(models / "text_encoders" / "clip_l.safetensors", out / "clip_l.safetensors")
        (models / "nexus_gen" / "linked_ar").symlink_to(out / "ar", target_is_directory=True)
    return out


FILE_INPUTS = [  # (workflow, node, input): every file or folder input of every node
    ("nexus_gen_text_to_image", "NexusGenARLoader", "model"),
    ("nexus_gen_text_to_image", "NexusGenDecoderLoader", "decoder"),
    ("nexus_gen_text_to_image", "NexusGenTextEncoderLoader", "clip_l"),
    ("nexus_gen_text_to_image", "NexusGenTextEncoderLoader", "t5xxl"),
    ("nexus_gen_text_to_image_gguf", "NexusGenProjectorLoader", "decoder"),
]


def hostile(out: Path, name: str) -> list[str]:
    """Names an API client may send: outside paths that exist, relative ones that climb out, and names no folder
    lists. The outside ones exist, so an answer that differed for them would be an existence oracle."""
    target = {"model": out / "ar", "decoder": out / "ar" / "generation_decoder.bin",
              "clip_l": out / "clip_l.safetensors", "t5xxl": out / "clip_l.safetensors"}[name]
    rel = os.path.relpath(target, "/")
    return [str(target), "../../../" + rel, "../" * 12 + rel, f"Nexus-GenV2/../../../{rel}",
            str(target).replace("/", "\\"), "Nexus-GenV2\x00", "a" * 5000,
            "Nexus-GenV2/model-00001-of-00002.safetensors", "Nexus-GenV2/config.json"]


@pytest.mark.parametrize("stem,node_type,inp", FILE_INPUTS, ids=[f"{n}.{i}" for _, n, i in FILE_INPUTS])
def test_file_inputs_never_leave_the_model_folders(comfy_server, object_info, outside, stem, node_type, inp):
    client, _, log = comfy_server
    if node_type not in object_info or any(n["type"] not in object_info for n in json.loads(
            (REPO / "workflows" / f"{stem}.json").read_text())["nodes"] if n["type"] not in ("Note", "MarkdownNote")):
        pytest.skip("needs ComfyUI-GGUF (COMFYUI_GGUF)")
    good = api(stem, object_info)
    node = node_id(good, node_type)
    start = len(log.read_text(errors="replace"))
    answers = {}
    for value in hostile(outside, inp):
        bad = copy(good)
        bad[node]["inputs"][inp] = value
        answers[value] = refused_at_validation(client, bad, node, rf"^{inp}: '.*' (is not one of|is |holds|has )")
    # no existence oracle: an outside path that exists is answered like one that does not
    real = hostile(outside, inp)[0]
    made_up = real + "-nothing-here"
    bad = copy(good)
    bad[node]["inputs"][inp] = made_up
    other = refused_at_validation(client, bad, node, rf"^{inp}: ")
    assert without_value(answers[real]) == without_value(other), (answers[real], other)
    assert "Traceback" not in log_since(log, start)
    if stem.endswith("_gguf") and host_version(client) < (0, 33):  # the tiny GGUF DiT loads on 0.33+ only
        good = api("nexus_gen_text_to_image", object_info)
    assert client.run(good)["status"]["status_str"] == "success"  # the next prompt runs


def test_a_link_placed_in_a_model_folder_keeps_working(comfy_server, object_info, outside):
    client, _, _ = comfy_server
    info = client.get("/object_info/NexusGenARLoader")["NexusGenARLoader"]
    assert "linked_ar" in info["input"]["required"]["model"][1]["options"]
    prompt = api("nexus_gen_understanding", object_info, tokens=4)
    prompt[node_id(prompt, "NexusGenARLoader")]["inputs"]["model"] = "linked_ar"
    entry = client.run(prompt)
    assert entry["status"]["status_str"] == "success", json.dumps(messages(entry))[:2000]


def test_a_name_linked_from_another_node_is_checked_when_it_arrives(comfy_server, object_info, outside):
    """A combo fed by another node reaches validation as None: the loader refuses it at execution, before loading,
    with its message (and the next prompt runs)."""
    client, _, _ = comfy_server
    prompt = api("nexus_gen_understanding", object_info, tokens=4)
    prompt["990"] = {"class_type": "PrimitiveString", "inputs": {"value": str(outside / "ar")}}
    prompt[node_id(prompt, "NexusGenARLoader")]["inputs"]["model"] = ["990", 0]
    code, body = client.queue(prompt)
    if code == 400:  # the host refuses a STRING output into a COMBO input itself
        assert "NexusGenARLoader" in json.dumps(body) or body.get("node_errors"), body
        return
    entry = client.wait(body["prompt_id"])
    err = messages(entry).get("execution_error", {})
    assert entry["status"]["status_str"] == "error" and err.get("exception_message", "").startswith("model: '"), err
    assert client.run(api("nexus_gen_understanding", object_info, tokens=4))["status"]["status_str"] == "success"


TEXT_CASES = [  # (workflow, node, input)
    ("nexus_gen_text_to_image", "NexusGenPromptEmbeds", "prompt"),
    ("nexus_gen_edit", "NexusGenEditEmbeds", "instruction"),
    ("nexus_gen_understanding", "NexusGenUnderstand", "question"),
    ("nexus_gen_text_to_image", "NexusGenNegative", "text"),
]


@pytest.mark.parametrize("stem,node_type,inp", TEXT_CASES, ids=[f"{n}.{i}" for _, n, i in TEXT_CASES])
def test_texts_are_bounded_and_checked_when_posted(comfy_server, object_info, stem, node_type, inp):
    client, _, log = comfy_server
    good = api(stem, object_info)
    node = node_id(good, node_type)
    start = len(log.read_text(errors="replace"))
    for value, pattern in (("x" * 200_000, r"is 200,000 characters long; at most 16,000"),
                           ("a cat " * 2667, r"is 16,002 characters long; at most 16,000"),
                           ("a photo of a \ud800 cat", r"not valid UTF-8 text \(a lone surrogate at character 14\)")):
        bad = copy(good)
        bad[node]["inputs"][inp] = value
        refused_at_validation(client, bad, node, rf"^{inp}: |{inp} is")
        refused_at_validation(client, bad, node, pattern)
    assert "Traceback" not in log_since(log, start)
    assert client.run(good)["status"]["status_str"] == "success"


def test_text_at_the_bound_runs(comfy_server, object_info):
    client, _, _ = comfy_server
    prompt = api("nexus_gen_understanding", object_info, tokens=2)
    question = ("What is in this picture? " * 700)[:16_000]
    prompt[node_id(prompt, "NexusGenUnderstand")]["inputs"]["question"] = question
    entry = client.run(prompt)
    assert entry["status"]["status_str"] == "success", json.dumps(messages(entry))[:2000]


def test_batches_are_bounded(comfy_server, object_info):
    client, _, _ = comfy_server
    prompt = api("nexus_gen_text_to_image", object_info)
    node = node_id(prompt, "NexusGenPromptEmbeds")
    prompt[node]["inputs"].update(one_per_line=True, prompt="\n".join(f"a cat number {i}" for i in range(65)))
    refused_at_validation(client, prompt, node, r"holds 65 prompts \(one per line\); at most 64 run")


@pytest.mark.parametrize("node_type,inp,value", [
    ("NexusGenConditioning", "guidance", float("nan")), ("NexusGenConditioning", "guidance", float("inf")),
    ("NexusGenNegative", "guidance", float("nan")), ("NexusGenNegative", "guidance", 100.5),
    ("NexusGenScheduler", "denoise", float("nan")), ("NexusGenScheduler", "shift", -float("inf")),
    ("NexusGenScheduler", "shift", 0.0), ("NexusGenEmbedsBlend", "weight", float("nan")),
    ("NexusGenEmbedsBlend", "weight", 2.5),
])
def test_numbers_are_checked_when_posted(comfy_server, object_info, node_type, inp, value):
    client, _, log = comfy_server
    stem = "nexus_gen_mix_prompt_image_upscale" if node_type == "NexusGenEmbedsBlend" else "nexus_gen_text_to_image"
    prompt = api(stem, object_info)
    node = node_id(prompt, node_type)
    prompt[node]["inputs"][inp] = value
    start = len(log.read_text(errors="replace"))
    refused_at_validation(client, prompt, node, rf"^{inp} must be (a finite number|in )")
    assert "Traceback" not in log_since(log, start)


def test_a_text_linked_from_another_node_is_checked_before_the_work(comfy_server, object_info):
    client, _, _ = comfy_server
    prompt = api("nexus_gen_understanding", object_info, tokens=4)
    prompt["991"] = {"class_type": "PrimitiveStringMultiline", "inputs": {"value": "why \udfff"}}
    prompt[node_id(prompt, "NexusGenUnderstand")]["inputs"]["question"] = ["991", 0]
    entry = client.run(prompt)
    err = messages(entry).get("execution_error", {})
    assert entry["status"]["status_str"] == "error", entry["status"]
    assert "question is not valid UTF-8" in err.get("exception_message", ""), err
    assert client.run(api("nexus_gen_understanding", object_info, tokens=4))["status"]["status_str"] == "success"


# --- many clients at once -----------------------------------------------------------------------------------------

CROWD_WORKFLOWS = ("nexus_gen_text_to_image", "nexus_gen_edit", "nexus_gen_understanding", "nexus_gen_variation")


def outputs_of(client, entry) -> dict:
    """{node: [pixels of each image] or [texts]} of a finished prompt."""
    out = {}
    for node, o in entry["outputs"].items():
        if o.get("images"):
            out[node] = [np.asarray(Image.open(io.BytesIO(client.image(ref)))).tolist() for ref in o["images"]]
        elif o.get("text"):
            out[node] = list(o["text"])
    return out


def test_many_clients_at_once(comfy_server, object_info):
    """4 API clients queue their prompts at the same time; some prompts are taken back or interrupted. Every
    prompt that ran to the end gives, bit for bit, what it gives alone; none runs twice or is lost; each client
    hears only of its own prompts."""
    client, base, _ = comfy_server
    per_client = 25 if FULL else 4
    rng = random.Random(11)
    jobs = []
    for c in range(4):
        for j in range(per_client):
            prompt = api(CROWD_WORKFLOWS[(c + j) % len(CROWD_WORKFLOWS)], object_info, tokens=90)
            for n in prompt.values():
                for key in ("seed", "noise_seed"):
                    if key in n["inputs"]:
                        n["inputs"][key] = rng.randrange(2**32)
            q = next((n for n in prompt.values() if n["class_type"] == "NexusGenUnderstand"), None)
            if q is not None:
                q["inputs"]["question"] = f"Client {c}, question {j}: what is in the picture?"
                q["inputs"]["max_new_tokens"] = 12
            jobs.append({"client": c, "prompt": prompt})
    alone = []
    for job in jobs:  # each prompt alone first
        entry = client.run(copy(job["prompt"]))
        assert entry["status"]["status_str"] == "success", json.dumps(messages(entry))[:1500]
        alone.append(outputs_of(client, entry))
    client.post("/free", {"free_memory": True, "unload_models": True})  # no cached result answers the crowd
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump(jobs, f)
    try:
        run = subprocess.run([os.environ.get("COMFYUI_PYTHON", sys.executable), str(HERE / "crowd_probe.py"),
                              client.base, f.name, "7"], capture_output=True, text=True, timeout=3600)
    finally:
        os.unlink(f.name)
    assert run.returncode == 0, run.stderr[-3000:]
    crowd = json.loads(run.stdout.strip().splitlines()[-1])["clients"]
    ids = {pid: (c, i) for c, rec in crowd.items() for i, pid in enumerate(rec["queued"])}
    assert len(ids) == len(jobs)
    # seed 7 asks for deletions and interrupts in the short run too (the probe's choices follow its seed alone)
    assert any(r["deleted"] for r in crowd.values()) and any(r["interrupted"] for r in crowd.values())
    finished, compared = 0, 0
    for c, rec in crowd.items():
        own = set(rec["queued"])
        for kind, pid in rec["events"]:  # only this client's prompts, each started at most once
            assert pid in own, (c, kind, pid)
        starts = [pid for kind, pid in rec["events"] if kind == "execution_start"]
        assert len(starts) == len(set(starts)), starts
        assert all(running in own for running, _ in rec["texts"]), rec["texts"][:5]  # no text outside its prompts
        cancelled = set(rec["deleted"]) | set(rec["interrupted"])
        for i, pid in enumerate(rec["queued"]):
            hist = client.get(f"/history/{pid}")
            if pid not in hist:
                assert pid in rec["deleted"], f"prompt {pid} of client {c} was lost"
                continue
            entry = hist[pid]
            status = entry["status"]["status_str"]
            if status != "success":
                assert pid in cancelled and "execution_interrupted" in messages(entry), (pid, entry["status"])
                continue
            finished += 1
            job_index = [k for k, job in enumerate(jobs) if job["client"] == int(c)][i]
            assert outputs_of(client, entry) == alone[job_index], f"client {c} prompt {i} differs from its run alone"
            compared += 1
    assert compared >= len(jobs) // 2, (compared, len(jobs))
    print(f"crowd: {len(jobs)} prompts, {finished} finished and equal to their runs alone, "
          f"{sum(len(r['deleted']) for r in crowd.values())} deletions, "
          f"{sum(len(r['interrupted']) for r in crowd.values())} interrupts asked")
