"""Skipped LoRA keys, said on the LoRA node instead of only in the server log.

ComfyUI's LoRA loaders skip every key that matches no weight of the model with one log line each ("lora key not
loaded: ..."), and the node then returns the model unchanged: the user sees the same image and no error. While a
prompt that uses Nexus-Gen nodes runs, this log handler counts those lines for the node that is executing and shows
the count on that node (ComfyUI's progress-text event), with what to do: an XLabs LoRA can be converted with
`nexus-gen convert-lora`; a LoRA for another model family cannot apply to a FLUX DiT. The frontend removes a
node's text when the prompt ends, so the final count also goes to the prompt's client as a "nexus-gen.notice"
event, which web/js/notices.js shows as a toast that stays until closed. It changes nothing else and is silent for
prompts without Nexus-Gen nodes."""
from __future__ import annotations

import logging
import threading

from ...nexus_core.flux.lora_layouts import looks_xlabs
from .progress import send_text

SKIPPED = "lora key not loaded: "
# kohya/sd-scripts and diffusers names of a LoRA's text-encoder parts, which a LoRA for FLUX often carries
TEXT_ENCODER_KEYS = ("lora_te", "text_encoder", "te1.", "te2.", "text_encoders.")
log = logging.getLogger("nexus_gen")


class SkippedLoraKeys(logging.Handler):
    def __init__(self):
        super().__init__(logging.WARNING)
        self._lock = threading.Lock()
        self._seen: dict[tuple, dict] = {}  # (prompt id, node id) -> {"n": count, "total": keys in the file, ...}

    def emit(self, record: logging.LogRecord) -> None:
        try:
            msg = record.getMessage()
            if not msg.startswith(SKIPPED):
                return
            where = _executing_node()
            if where is None:
                return
            prompt_id, node_id, node = where
            with self._lock:
                state = self._seen.setdefault((prompt_id, node_id), {"n": 0, "first": msg[len(SKIPPED):]})
                if len(self._seen) > 64:  # only the running prompt matters
                    self._seen = {k: v for k, v in self._seen.items() if k[0] == prompt_id}
                state["n"] += 1
                if "total" not in state:
                    state["total"] = _keys_in_file(node)
                n, total = state["n"], state["total"]
            if n == 1 or n == total:  # said when it starts, and again when the whole file turned out skipped
                text = notice(node, state["first"], n, total)
                send_text(text, node_id)
                if n == total or (n == 1 and total is None):
                    log.warning(text)
                    # the frontend drops a node's text when the prompt ends: a toast (web/js/notices.js) stays
                    _send_toast(node_id, node.get("class_type", ""), text)
        except Exception:  # a log handler must never break the logging call (or the node) that reached it
            pass


def notice(node: dict, first_key: str, skipped: int, total: int | None) -> str:
    name = node.get("inputs", {}).get("lora_name", "this LoRA")
    if total is not None and skipped >= total:
        head = f"Nexus-Gen: {skipped} of {total} keys of {name} match nothing in the model: the LoRA has no effect."
    else:
        head = (f"Nexus-Gen: keys of {name} that match nothing in the model were skipped (the first: {first_key}); "
                "the server log lists them all.")
    if first_key.startswith(TEXT_ENCODER_KEYS):
        how = (" Those are the LoRA's text-encoder (CLIP-L/T5) weights: a Nexus-Gen prompt goes through its own AR "
               "model, so they have no use here; its DiT weights apply as usual.")
    elif looks_xlabs([first_key]):
        how = (" It is an XLabs LoRA, a layout ComfyUI's LoRA loaders do not read: convert it once with "
               "`nexus-gen convert-lora <file> --out <models/loras/new name>.safetensors` and load the new file.")
    else:
        how = (" Nexus-Gen decoders are FLUX.1-dev DiTs: FLUX.1-dev LoRAs in the ComfyUI/BFL, kohya and diffusers "
               "layouts apply; LoRAs made for other models (SD 1.5, SDXL, FLUX.2...) do not.")
    return head + how


def _send_toast(node_id: str, class_type: str, text: str) -> None:
    from server import PromptServer

    server = PromptServer.instance
    client = getattr(server, "client_id", None)
    if client is None:  # the host would send it to every connected client: a prompt without one hears nothing
        return
    server.send_sync("nexus-gen.notice", {"node": node_id, "class_type": class_type, "text": text}, client)


def _executing_node():
    """(prompt id, node id, node dict) of the node the server is executing, when its prompt has Nexus-Gen nodes."""
    from server import PromptServer

    server = PromptServer.instance
    node_id = getattr(server, "last_node_id", None)
    queue = getattr(server, "prompt_queue", None)
    if node_id is None or queue is None:
        return None
    for item in list(getattr(queue, "currently_running", {}).values()):
        prompt = item[2]
        if str(node_id) in prompt and any(str(n.get("class_type", "")).startswith("NexusGen")
                                          for n in prompt.values()):
            return item[1], str(node_id), prompt[str(node_id)]
    return None


def _keys_in_file(node: dict) -> int | None:
    """How many keys the node's LoRA file holds (its header only), or None when that cannot be told."""
    name = node.get("inputs", {}).get("lora_name")
    if not isinstance(name, str):
        return None
    import folder_paths

    from ...nexus_core.files.safetensors_check import tensor_names

    path = folder_paths.get_full_path("loras", name)
    if not path or not str(path).endswith(".safetensors"):
        return None
    return len(tensor_names(path))


_handler: SkippedLoraKeys | None = None


def install() -> None:
    """Adds the handler to the root logger once (the host logs through it)."""
    global _handler
    if _handler is None:
        _handler = SkippedLoraKeys()
        logging.getLogger().addHandler(_handler)
