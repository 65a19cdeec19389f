"""A small HTTP client for a ComfyUI server on 127.0.0.1 (test helper; no ComfyUI imports)."""
from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
import uuid


class Client:
    def __init__(self, base: str):
        self.base = base.rstrip("/")
        self.client_id = uuid.uuid4().hex

    def get(self, path: str):
        with urllib.request.urlopen(self.base + path, timeout=60) as r:
            data = r.read()
        return json.loads(data) if data[:1] in (b"{", b"[") else data

    def post(self, path: str, payload: dict):
        req = urllib.request.Request(self.base + path, data=json.dumps(payload).encode(),
                                     headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=60) as r:
                body = r.read()
                return r.status, (json.loads(body) if body else {})
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read() or b"{}")

    def queue(self, prompt: dict, workflow: dict | None = None) -> tuple[int, dict]:
        payload = {"prompt": prompt, "client_id": self.client_id}
        if workflow is not None:
            payload["extra_data"] = {"extra_pnginfo": {"workflow": workflow}}
        return self.post("/prompt", payload)

    def wait(self, prompt_id: str, timeout: float = 1800) -> dict:
        end = time.time() + timeout
        while time.time() < end:
            hist = self.get(f"/history/{prompt_id}")
            if prompt_id in hist and hist[prompt_id].get("status", {}).get("completed") is not None:
                entry = hist[prompt_id]
                if entry["status"].get("status_str") in ("success", "error") or entry["status"]["completed"]:
                    return entry
            time.sleep(0.3)
        raise TimeoutError(f"prompt {prompt_id} did not finish in {timeout}s")

    def run(self, prompt: dict, workflow: dict | None = None, timeout: float = 1800) -> dict:
        code, body = self.queue(prompt, workflow)
        if code != 200:
            raise RuntimeError(f"/prompt refused the graph ({code}): {json.dumps(body)[:2000]}")
        return self.wait(body["prompt_id"], timeout)

    def watch(self, prompt: dict, timeout: float = 1800) -> dict:
        """Queues `prompt` with a websocket open (ws_probe.py, run in the host's Python, which has aiohttp) and
        returns what it carried: {"prompt_id", "progress": [...], "texts": [{"node", "text"}, ...]} (the
        progress-text frames, in order). Returns when the prompt has ended."""
        import os
        import subprocess
        import sys
        import tempfile
        from pathlib import Path

        with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
            json.dump(prompt, f)
        try:
            out = subprocess.run([os.environ.get("COMFYUI_PYTHON", sys.executable),
                                  str(Path(__file__).parent / "ws_probe.py"), self.base, f.name],
                                 capture_output=True, text=True, timeout=timeout)
        finally:
            os.unlink(f.name)
        assert out.returncode == 0, out.stderr[-3000:]
        return json.loads(out.stdout.strip().splitlines()[-1])

    def image(self, ref: dict) -> bytes:
        q = f"/view?filename={ref['filename']}&subfolder={ref.get('subfolder', '')}&type={ref.get('type', 'output')}"
        return self.get(q)


def messages(entry: dict) -> dict:
    return {m[0]: m[1] for m in entry.get("status", {}).get("messages", [])}
