"""Run with ComfyUI's Python (it has aiohttp): queue an API prompt, wait until node NODE reports at least START
tokens of progress (an event: the model is generating), interrupt, and print as JSON the progress value when the
interrupt was sent, the highest value seen after it, and how the prompt ended. argv: url, prompt.json, node, start"""
import asyncio
import json
import sys
import uuid

import aiohttp


async def main(url: str, prompt_path: str, node: str, start: int):
    cid = uuid.uuid4().hex
    prompt = json.load(open(prompt_path))
    at_interrupt, highest, ended = None, 0, None
    async with aiohttp.ClientSession() as session:
        async with session.ws_connect(f"{url}/ws?clientId={cid}", max_msg_size=0) as ws:
            async with session.post(f"{url}/prompt", json={"prompt": prompt, "client_id": cid}) as r:
                pid = (await r.json())["prompt_id"]
            async for msg in ws:
                if msg.type != aiohttp.WSMsgType.TEXT:
                    continue
                m = json.loads(msg.data)
                d = m.get("data", {})
                if d.get("prompt_id") not in (None, pid):
                    continue
                if m["type"] == "progress" and d.get("node") == node:
                    highest = max(highest, d["value"])
                    if at_interrupt is None and d["value"] >= start:
                        at_interrupt = d["value"]
                        async with session.post(f"{url}/interrupt", json={}) as r:
                            await r.read()
                elif m["type"] in ("execution_interrupted", "execution_error", "execution_success"):
                    ended = m["type"]
                    break
    print(json.dumps({"at_interrupt": at_interrupt, "highest": highest, "ended": ended}))


asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])))
