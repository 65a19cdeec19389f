"""Run with ComfyUI's Python (it has aiohttp): several API clients at once, each with its own websocket, queueing
their prompts together, while some of their prompts are deleted from the queue or interrupted at random.

argv: url, jobs.json, seed. jobs.json: [{"client": k, "prompt": {...}}, ...]. Prints one JSON line:
{"clients": {k: {"queued": [pid...], "deleted": [...], "interrupted": [...], "events": [[type, prompt_id], ...],
"texts": [[own prompt running or null, node], ...]}}}. A progress-text frame carries no prompt id, so each one is
recorded with the client's own prompt that was running when it came (null: none of the client's prompts was).
Returns when every queued prompt has ended or left the queue: it waits for events only (each prompt's end, and the
"status" event the host sends every client whenever the queue changes), never for a time."""
import asyncio
import json
import random
import struct
import sys
import uuid

import aiohttp

ENDS = ("execution_success", "execution_error", "execution_interrupted")


async def client_run(session, url, name, prompts, rng, record, interrupt_wanted):
    cid = uuid.uuid4().hex
    rec = record[name] = {"queued": [], "deleted": [], "interrupted": [], "events": [], "texts": []}
    running = None
    async with session.ws_connect(f"{url}/ws?clientId={cid}", max_msg_size=0) as ws:
        for prompt in prompts:
            async with session.post(f"{url}/prompt", json={"prompt": prompt, "client_id": cid}) as r:
                body = await r.json()
            if r.status != 200:
                raise RuntimeError(f"/prompt refused a crowd prompt: {json.dumps(body)[:1500]}")
            pid = body["prompt_id"]
            rec["queued"].append(pid)
            if rng.random() < 0.12:  # interrupted when it starts (if it starts before it ends)
                interrupt_wanted.add(pid)
            if rng.random() < 0.12:  # taken back soon after queueing (it may have started already)
                await asyncio.sleep(rng.random() * 0.3)
                async with session.post(f"{url}/queue", json={"delete": [pid]}) as r:
                    await r.read()
                rec["deleted"].append(pid)
            await asyncio.sleep(rng.random() * 0.2)
        pending = set(rec["queued"])
        while pending:
            msg = await ws.receive()
            if msg.type == aiohttp.WSMsgType.BINARY:
                (kind,) = struct.unpack(">I", msg.data[:4])
                if kind == 3:
                    (n,) = struct.unpack(">I", msg.data[4:8])
                    rec["texts"].append([running, msg.data[8:8 + n].decode()])
                continue
            if msg.type != aiohttp.WSMsgType.TEXT:
                break
            m = json.loads(msg.data)
            d = m.get("data") or {}
            if m["type"] == "status":  # the queue changed (the host says so to every client, deletions included):
                pending = await still_pending(session, url, pending)  # a prompt deleted before it ran has left it
                continue
            pid = d.get("prompt_id")
            if pid is None:
                continue
            rec["events"].append([m["type"], pid])
            if m["type"] == "execution_start":
                running = pid
                if pid in interrupt_wanted:
                    await asyncio.sleep(rng.random() * 0.5)
                    async with session.post(f"{url}/interrupt", json={"prompt_id": pid}) as r:
                        await r.read()
                    rec["interrupted"].append(pid)
            if m["type"] in ENDS:
                if running == pid:
                    running = None
                pending.discard(pid)


async def still_pending(session, url, pending):
    """Prompts neither in the queue nor ended in the history have left (deleted before they ran)."""
    async with session.get(f"{url}/queue") as r:
        q = await r.json()
    queued = {item[1] for key in ("queue_running", "queue_pending") for item in q[key]}
    out = set()
    for pid in pending:
        async with session.get(f"{url}/history/{pid}") as r:
            hist = await r.json()
        if pid in queued or (pid in hist and hist[pid].get("status", {}).get("completed") is None):
            out.add(pid)
    return out


async def main(url, jobs_path, seed):
    jobs = json.load(open(jobs_path))
    rng = random.Random(seed)
    by_client = {}
    for job in jobs:
        by_client.setdefault(str(job["client"]), []).append(job["prompt"])
    interrupt_wanted = set()
    record = {}
    async with aiohttp.ClientSession() as session:
        await asyncio.gather(*(client_run(session, url, name, prompts, random.Random(rng.random()), record,
                                          interrupt_wanted) for name, prompts in by_client.items()))
    print(json.dumps({"clients": record}))


asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3])))
