"""Run with ComfyUI's Python (it has aiohttp): queue an API prompt over HTTP with a websocket open, and print what
the websocket carried as JSON: progress events and progress-text frames (binary type 3) per node. argv: url, prompt.json"""
import asyncio
import json
import struct
import sys
import uuid

import aiohttp


async def main(url: str, prompt_path: str):
    client_id = uuid.uuid4().hex
    prompt = json.load(open(prompt_path))
    progress, texts = [], []
    async with aiohttp.ClientSession() as session:
        async with session.ws_connect(f"{url}/ws?clientId={client_id}", max_msg_size=0) as ws:
            async with session.post(f"{url}/prompt", json={"prompt": prompt, "client_id": client_id}) as r:
                pid = (await r.json())["prompt_id"]
            async for msg in ws:
                if msg.type == aiohttp.WSMsgType.BINARY:
                    (kind,) = struct.unpack(">I", msg.data[:4])
                    if kind == 3:
                        (n,) = struct.unpack(">I", msg.data[4:8])
                        texts.append({"node": msg.data[8:8 + n].decode(), "text": msg.data[8 + n:].decode()})
                elif msg.type == aiohttp.WSMsgType.TEXT:
                    m = json.loads(msg.data)
                    d = m.get("data", {})
                    if m["type"] == "progress" and d.get("prompt_id") == pid:
                        progress.append({"node": d.get("node"), "value": d["value"], "max": d["max"]})
                    if m["type"] in ("executing",) and d.get("node") is None and d.get("prompt_id") == pid:
                        break
                    if m["type"] in ("execution_error", "execution_interrupted") and d.get("prompt_id") == pid:
                        break
    print(json.dumps({"prompt_id": pid, "progress": progress, "texts": texts}))


asyncio.run(main(sys.argv[1], sys.argv[2]))
