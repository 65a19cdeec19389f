"""Progress bars, streamed text and interrupts for nexus_core loops."""
from __future__ import annotations

import logging
import time

import comfy.model_management as mm
import comfy.utils

log = logging.getLogger("nexus_gen")


def token_callbacks(total: int, node_id=None, stream=None):
    """(on_token, should_stop) for nexus_core decoding: a progress bar per token (which also raises on
    interrupt inside the server) and, if `stream(text)` is given, the decoded text about 5 times a second."""
    bar = comfy.utils.ProgressBar(total, node_id=node_id)
    last = [0.0]

    def on_token(tok, ids):
        bar.update_absolute(min(len(ids), total), total)
        if stream is not None and (time.monotonic() - last[0] > 0.2 or tok is None):
            last[0] = time.monotonic()
            stream(ids)

    def finish():  # a loop that stops early (the reply ended) still shows a full bar; newer hosts throttle updates
        bar.update_absolute(total, total)

    on_token.finish = finish
    return on_token, _raise_if_interrupted


def finish(decode_kwargs: dict) -> None:
    """Fill the progress bar of a finished token loop (no-op for fast mode, which has none)."""
    on_token = decode_kwargs.get("on_token")
    if on_token is not None:
        on_token.finish()


def _raise_if_interrupted() -> bool:
    """Raise ComfyUI's own InterruptProcessingException (reported as an interruption, not an error)."""
    mm.throw_exception_if_processing_interrupted()
    return False


def send_text(text: str, node_id) -> None:
    """Show text on the node while it runs (ComfyUI's progress_text event), to the client whose prompt it is; a
    no-op outside the server. Without a client id the host sends the event to EVERY connected client (its
    send_bytes broadcasts when sid is None), and the text is the model's reply to someone's prompt: then nobody
    gets it."""
    try:
        from server import PromptServer
        server = PromptServer.instance
        client = getattr(server, "client_id", None)
        if server is not None and node_id is not None and client is not None:
            server.send_progress_text(text, node_id, client)
    except (ImportError, AttributeError):
        pass


def warn(text: str, node_id) -> None:
    """A warning the user sees on the node (and in the log), for choices that run but are probably wrong."""
    log.warning(text)
    send_text(text, node_id)
