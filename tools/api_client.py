"""Run a Nexus-Gen workflow on a ComfyUI server through its API: post an API-format workflow (workflows/api/*.json)
with your prompt and seed, follow its progress over the websocket, and save what it makes.

    python tools/api_client.py workflows/api/nexus_gen_text_to_image.json --prompt "a red fox in the snow" \\
        --seed 7 --server http://127.0.0.1:8188 --out out/

With --workers the workflow goes to ComfyUI-Distributed's `POST /distributed/queue` on the master (--server), which
sends it to those workers too: each makes its own image with its own seed (workflows/api/nexus_gen_distributed.json)
and the master saves them all.

Needs aiohttp (every ComfyUI environment has it). Prints progress per node, saves images into --out and prints text
outputs (understanding); exits 1 when the server refuses the prompt or it fails, with the server's reason.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import sys
import uuid
from pathlib import Path

TEXT_INPUTS = {"NexusGenPromptEmbeds": "prompt", "NexusGenEditEmbeds": "instruction", "NexusGenUnderstand": "question"}
SEED_INPUTS = ("seed", "noise_seed")


def prepared(workflow: dict, prompt: str | None, seed: int | None) -> dict:
    """The workflow with the prompt (instruction, question) and every seed set."""
    for node in workflow.values():
        key = TEXT_INPUTS.get(node["class_type"])
        if prompt is not None and key and not isinstance(node["inputs"].get(key), list):
            node["inputs"][key] = prompt
        for name in SEED_INPUTS:
            if seed is not None and isinstance(node["inputs"].get(name), int):
                node["inputs"][name] = seed
    return workflow


def request(workflow: dict, client_id: str, workers: list[str] | None) -> tuple[str, dict]:
    """Where to post and what: ComfyUI's /prompt, or with workers ComfyUI-Distributed's /distributed/queue (the
    engine's API: the ids are those of its config, GET /distributed/config)."""
    if workers is None:
        return "/prompt", {"prompt": workflow, "client_id": client_id}
    return "/distributed/queue", {"prompt": workflow, "client_id": client_id, "enabled_worker_ids": workers}


async def run(server: str, workflow: dict, out: Path, workers: list[str] | None = None) -> int:
    import aiohttp  # here, so `prepared` can be used without it

    client_id = uuid.uuid4().hex
    async with aiohttp.ClientSession() as http:
        async with http.ws_connect(f"{server}/ws?clientId={client_id}", max_msg_size=0) as ws:
            path, payload = request(workflow, client_id, workers)
            async with http.post(server + path, json=payload) as r:
                body = await r.json(content_type=None)
            if r.status != 200 or body.get("node_errors"):  # the engine answers 500 when a worker refuses it
                print(f"refused: {json.dumps(body.get('node_errors') or body, ensure_ascii=False)[:2000]}",
                      file=sys.stderr)
                return 1
            if workers is not None:
                print(f"sent to {body.get('worker_count', 0)} of {len(workers)} workers", file=sys.stderr)
            prompt_id = body["prompt_id"]
            async for msg in ws:  # progress of our prompt until it ends
                if msg.type != aiohttp.WSMsgType.TEXT:
                    continue  # previews and streamed text frames
                m = json.loads(msg.data)
                data = m.get("data") or {}
                if data.get("prompt_id") != prompt_id:
                    continue
                if m["type"] == "progress":
                    print(f"\rnode {data['node']}: {data['value']}/{data['max']}", end="", file=sys.stderr, flush=True)
                elif m["type"] == "execution_error":
                    print(f"\nfailed in node {data.get('node_id')} ({data.get('node_type')}): "
                          f"{data.get('exception_message', '').strip()}", file=sys.stderr)
                    return 1
                elif m["type"] == "execution_interrupted":
                    print("\ninterrupted", file=sys.stderr)
                    return 1
                elif m["type"] == "executing" and data.get("node") is None:
                    break  # sent once the prompt's history is stored (execution_success comes before that)
        print(file=sys.stderr)
        async with http.get(f"{server}/history/{prompt_id}") as r:
            outputs = (await r.json())[prompt_id]["outputs"]
        out.mkdir(parents=True, exist_ok=True)
        for node_out in outputs.values():
            for image in node_out.get("images", []):
                params = {"filename": image["filename"], "subfolder": image.get("subfolder", ""),
                          "type": image.get("type", "output")}
                async with http.get(f"{server}/view", params=params) as r:
                    target = out / Path(image["filename"]).name
                    target.write_bytes(await r.read())
                print(f"saved {target}")
            for text in node_out.get("text", []):
                print(text)
    return 0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("workflow", help="an API-format workflow (workflows/api/*.json)")
    p.add_argument("--prompt", help="the prompt, instruction or question (default: the workflow's own)")
    p.add_argument("--seed", type=int, help="every seed of the workflow (default: the workflow's own)")
    p.add_argument("--server", default="http://127.0.0.1:8188", help="the ComfyUI server")
    p.add_argument("--out", default="out", help="folder for the images")
    p.add_argument("--workers", help="ComfyUI-Distributed worker ids, comma separated (GET /distributed/config on "
                   "the master lists them): run the workflow on the master and these workers")
    a = p.parse_args(argv)
    workflow = prepared(json.loads(Path(a.workflow).read_text(encoding="utf-8")), a.prompt, a.seed)
    workers = [w.strip() for w in a.workers.split(",") if w.strip()] if a.workers is not None else None
    return asyncio.run(run(a.server.rstrip("/"), workflow, Path(a.out), workers))


if __name__ == "__main__":
    sys.exit(main())
