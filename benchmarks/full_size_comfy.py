"""The real-host rows of full_size.py: a real ComfyUI on the CPU with full-size random models.

The server gets a models folder of links to the make-full-size files (nothing copied), plus what the graph needs
beside them: a random full-size CLIP-L and FLUX AE, and the GGUF of the generation decoder (made once, beside the
models). Its RSS is sampled every 20 ms; per-node times come from the websocket's "executing" events.
"""
from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from process_memory import GB, REPO, Sampler, drop_caches, reset_hwm, status_kb

PROBE = r"""
import asyncio, json, sys, time, uuid
import aiohttp

async def main(url, prompt):
    cid, events, t0 = uuid.uuid4().hex, [], time.time()
    async with aiohttp.ClientSession() as s:
        async with s.ws_connect(f"{url}/ws?clientId={cid}", max_msg_size=0) as ws:
            async with s.post(f"{url}/prompt", json={"prompt": prompt, "client_id": cid}) as r:
                body = await r.json()
                if "prompt_id" not in body:
                    print(json.dumps({"error": body})); return
                pid = body["prompt_id"]
            async for msg in ws:
                if msg.type != aiohttp.WSMsgType.TEXT:
                    continue
                m = json.loads(msg.data); d = m.get("data", {})
                if d.get("prompt_id") not in (None, pid):
                    continue
                if m["type"] == "executing":
                    events.append([d.get("node"), time.time() - t0])
                    if d.get("node") is None:
                        break
                elif m["type"] in ("execution_error", "execution_interrupted"):
                    print(json.dumps({"error": d.get("exception_message", m["type"]), "events": events})); return
                elif m["type"] == "execution_cached":
                    events.append(["cached:" + ",".join(d.get("nodes", [])), time.time() - t0])
    print(json.dumps({"events": events, "seconds": time.time() - t0}))

asyncio.run(main(sys.argv[1], json.loads(sys.argv[2])))
"""


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def prepare(models: Path, gguf_needed: bool = True) -> Path:
    """models/comfy/: ComfyUI's folder layout as links to the full-size files (the one-file AR too, when there),
    plus CLIP-L, AE and, when asked, the Q4_0 GGUF (3 minutes to make)."""
    from nexus_core.decoder.convert import convert_to_gguf
    from nexus_core.synthetic.flux import FLUX_AE, write_bfl_ae
    from nexus_core.synthetic.full_size import write_clip_l

    root = models / "comfy"
    for sub in ("nexus_gen", "text_encoders", "vae", "diffusion_models"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    single = "nexus_gen_ar-fp8_e4m3fn.safetensors"
    links = {root / "nexus_gen" / "Nexus-GenV2": models / "Nexus-GenV2",
             root / "nexus_gen" / "generation_decoder.bin": models / "generation_decoder.bin",
             root / "nexus_gen" / single: models / single}
    for link, target in links.items():
        if target.exists() and not link.is_symlink():
            link.symlink_to(target)
    if not (models / "clip_l.safetensors").is_file():
        write_clip_l(models / "clip_l.safetensors")
    if not (models / "ae.safetensors").is_file():
        write_bfl_ae(models / "ae.safetensors", seed=40, **FLUX_AE)
    gguf = models / "nexus_gen_generation_decoder-Q4_0.gguf"
    if gguf_needed and not gguf.is_file() and (models / "generation_decoder.bin").is_file():
        convert_to_gguf(models / "generation_decoder.bin", gguf, "Q4_0")
    for link, target in ((root / "text_encoders" / "clip_l.safetensors", models / "clip_l.safetensors"),
                         (root / "vae" / "ae.safetensors", models / "ae.safetensors"),
                         (root / "diffusion_models" / gguf.name, gguf)):
        if target.exists() and not link.is_symlink():
            link.symlink_to(target)
    return root


class Host:
    def __init__(self, comfy: Path, python: str, models: Path, gguf_pack: Path | None):
        self.base = Path(tempfile.mkdtemp(prefix="nexus-full-size-comfy-"))
        nodes = self.base / "custom_nodes"
        nodes.mkdir()
        (nodes / "ComfyUI-Nexus-Gen").symlink_to(REPO, target_is_directory=True)
        if gguf_pack:
            (nodes / "ComfyUI-GGUF").symlink_to(gguf_pack, target_is_directory=True)
        for d in ("output", "input", "user"):
            (self.base / d).mkdir()
        yaml = self.base / "paths.yaml"
        yaml.write_text(f"bench:\n    base_path: {models}\n    nexus_gen: nexus_gen\n    text_encoders: text_encoders\n"
                        f"    vae: vae\n    diffusion_models: diffusion_models\n    custom_nodes: {nodes}\n")
        self.port = _port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join([str(REPO / "tests" / "comfyui" / "shim"), env.get("PYTHONPATH", "")])
        self.python = python
        self.log = self.base / "comfyui.log"
        cmd = [python, "main.py", "--cpu", "--listen", "127.0.0.1", "--port", str(self.port), "--disable-auto-launch",
               "--extra-model-paths-config", str(yaml), "--output-directory", str(self.base / "output"),
               "--input-directory", str(self.base / "input"), "--user-directory", str(self.base / "user"),
               "--database-url", "sqlite:///:memory:"]
        with open(self.log, "w") as fh:
            self.proc = subprocess.Popen(cmd, cwd=comfy, stdout=fh, stderr=subprocess.STDOUT, env=env)
        while True:  # an event, not a clock: the server answers, or the process has ended
            if self.proc.poll() is not None:
                raise RuntimeError(f"ComfyUI exited:\n{self.log.read_text()[-3000:]}")
            try:
                urllib.request.urlopen(self.url + "/system_stats", timeout=5).read()
                break
            except OSError:
                time.sleep(0.5)

    def run(self, prompt: dict) -> dict:
        """Queue `prompt`; returns the probe's events plus the server's RSS figures while it ran."""
        reset_hwm(self.proc.pid)
        before = status_kb(self.proc.pid)
        with Sampler(self.proc.pid) as s:
            p = subprocess.run([self.python, "-c", PROBE, self.url, json.dumps(prompt)], capture_output=True, text=True)
        after = status_kb(self.proc.pid)
        res = json.loads(p.stdout.strip().splitlines()[-1]) if p.stdout.strip() else {"error": p.stderr[-2000:]}
        res.update(server_rss_before_gb=before["VmRSS"] * 1024 / GB, server_peak_gb=after["VmHWM"] * 1024 / GB,
                   server_rss_after_gb=after["VmRSS"] * 1024 / GB, server_peak_anon_gb=s.peak["RssAnon"] * 1024 / GB,
                   server_peak_file_gb=s.peak["RssFile"] * 1024 / GB)
        return res

    def free(self):
        req = urllib.request.Request(self.url + "/free", data=json.dumps({"unload_models": True, "free_memory": True})
                                     .encode(), headers={"Content-Type": "application/json"})
        urllib.request.urlopen(req, timeout=60).read()

    def close(self):
        self.proc.terminate()
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        shutil.rmtree(self.base, ignore_errors=True)


def decoder_prompt(weight_dtype: str) -> dict:
    return {"1": {"class_type": "NexusGenDecoderLoader",
                  "inputs": {"decoder": "generation_decoder.bin", "weight_dtype": weight_dtype}},
            "2": {"class_type": "PreviewAny", "inputs": {"source": ["1", 1]}}}


def t2i_prompt(dit: str, size: int = 256, steps: int = 2) -> dict:
    """The text -> image workflow as the README's small-card rows set it: AR fp8, DiT fp8 or GGUF Q4_0; cfg 1 (no
    T5: a CFG negative would add T5-XXL, 4.9 GB in fp8)."""
    p = {
        "1": {"class_type": "NexusGenARLoader", "inputs": {"model": "Nexus-GenV2", "dtype": "bfloat16",
                                                            "weight_dtype": "fp8_e4m3fn", "device": "default"}},
        "3": {"class_type": "NexusGenTextEncoderLoader", "inputs": {"clip_l": "clip_l.safetensors", "t5xxl": "none",
                                                                     "device": "default"}},
        "4": {"class_type": "VAELoader", "inputs": {"vae_name": "ae.safetensors"}},
        "5": {"class_type": "NexusGenPromptEmbeds", "inputs": {
            "nexus_ar": ["1", 0], "prompt": "A red fox sitting in the snow at sunset.", "language": "en",
            "one_per_line": False, "mode": "fast", "seed": 0, "max_new_tokens": 1024}},
        "6": {"class_type": "NexusGenConditioning", "inputs": {"embeds": ["5", 0], "projector": ["2", 1],
                                                                "guidance": 3.5, "use_reference": True,
                                                                "text_encoders": ["3", 0]}},
        "7": {"class_type": "ConditioningZeroOut", "inputs": {"conditioning": ["6", 0]}},
        "8": {"class_type": "EmptySD3LatentImage", "inputs": {"width": size, "height": size, "batch_size": 1}},
        "9": {"class_type": "NexusGenScheduler", "inputs": {"steps": steps, "denoise": 1.0, "shift": 3.0}},
        "10": {"class_type": "KSamplerSelect", "inputs": {"sampler_name": "euler"}},
        "11": {"class_type": "SamplerCustom", "inputs": {
            "model": ["2", 0], "add_noise": True, "noise_seed": 52, "cfg": 1.0, "positive": ["6", 0],
            "negative": ["7", 0], "sampler": ["10", 0], "sigmas": ["9", 0], "latent_image": ["8", 0]}},
        "12": {"class_type": "VAEDecode", "inputs": {"samples": ["11", 0], "vae": ["4", 0]}},
        "13": {"class_type": "SaveImage", "inputs": {"images": ["12", 0], "filename_prefix": "full_size"}},
    }
    if dit == "fp8":
        p["2"] = {"class_type": "NexusGenDecoderLoader", "inputs": {"decoder": "generation_decoder.bin",
                                                                     "weight_dtype": "fp8_e4m3fn"}}
    else:  # GGUF Q4_0 through ComfyUI-GGUF, the projector from the same file
        name = "nexus_gen_generation_decoder-Q4_0.gguf"
        p["20"] = {"class_type": "UnetLoaderGGUF", "inputs": {"unet_name": name}}
        p["21"] = {"class_type": "NexusGenProjectorLoader", "inputs": {"decoder": name}}
        p["2"] = {"class_type": "NexusGenModelPatch", "inputs": {"model": ["20", 0], "projector": ["21", 0]}}
        p["6"]["inputs"]["projector"] = ["21", 0]
    return p


STAGES = {"1": "AR load", "2": "DiT load", "20": "DiT load (GGUF)", "21": "projector load", "3": "CLIP-L load",
          "4": "VAE load", "5": "AR embeddings", "6": "conditioning", "11": "sampling", "12": "VAE decode",
          "13": "save"}


def stage_times(events) -> dict[str, float]:
    """Seconds each node ran: from its 'executing' event to the next one."""
    out = {}
    for (node, t), (_, t_next) in zip(events, events[1:]):
        if node and not str(node).startswith("cached:"):
            out[STAGES.get(str(node), str(node))] = round(t_next - t, 1)
    return out


def _used(path: Path) -> int:
    st = os.statvfs(path)
    return (st.f_blocks - st.f_bfree) * st.f_frsize


def ar_file_prompt(name: str, tokens: int = 90) -> dict:
    """The one-file fp8 AR through the AR Model Loader, then reference-mode embeddings (a token loop: every token
    computes the output head's logits, under ComfyUI's cast layers)."""
    return {"1": {"class_type": "NexusGenARLoader", "inputs": {"model": name, "dtype": "bfloat16",
                                                                "weight_dtype": "default", "device": "default"}},
            "5": {"class_type": "NexusGenPromptEmbeds", "inputs": {
                "nexus_ar": ["1", 0], "prompt": "A red fox sitting in the snow at sunset.", "language": "en",
                "one_per_line": False, "mode": "reference", "seed": 0, "max_new_tokens": tokens}},
            "6": {"class_type": "PreviewAny", "inputs": {"source": ["5", 1]}}}


def measure_comfy(models: Path, comfy: Path, python: str | None, gguf_pack: Path | None = None,
                  parts=("decoder", "ar", "t2i")) -> list[dict]:
    """parts: decoder (the Decoder Loader's first and second use), ar (the one-file AR and reference-mode
    embeddings, when the file is there), t2i (the text -> image workflow)."""
    if comfy is None:
        raise SystemExit("--only comfy needs --comfyui (a ComfyUI checkout)")
    root = prepare(models, gguf_needed=bool(gguf_pack) and "t2i" in parts)
    rows = []
    host = Host(comfy, python or sys.executable, root, gguf_pack)
    single = models / "nexus_gen_ar-fp8_e4m3fn.safetensors"
    try:
        if "ar" in parts and single.is_file():
            host.free()
            drop_caches([str(single)])
            r = host.run(ar_file_prompt(single.name))
            r["stages"] = stage_times(r.get("events", []))
            rows.append({"row": "ComfyUI AR Model Loader, the one fp8 file, + reference embeddings (90 tokens)", **r})
        for label in ("first use", "second use") if "decoder" in parts else ():
            host.free()
            drop_caches([str(models / "generation_decoder.bin")])
            used = _used(models)
            r = host.run(decoder_prompt("fp8_e4m3fn"))
            r["disk_written_gb"] = (_used(models) - used) / GB
            rows.append({"row": f"ComfyUI decoder loader (fp8_e4m3fn), {label}", **r})
        host.free()
        for dit in (("fp8", "gguf") if gguf_pack else ("fp8",)) if "t2i" in parts else ():
            drop_caches([str(p) for p in models.rglob("*") if p.is_file()])
            r = host.run(t2i_prompt(dit))
            r["stages"] = stage_times(r.get("events", []))
            rows.append({"row": f"ComfyUI text -> image 256², 2 steps, AR fp8, DiT {dit}", **r})
            host.free()
    finally:
        host.close()
    return rows
