"""Stops from outside: Ctrl-C remembered even when a library turns it into another error, and SIGTERM/SIGHUP
turned into an unwinding stop (so temp files and locks are removed on the way out), also when the command was
started with Ctrl-C ignored."""
from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading


class Stopped(BaseException):
    """SIGTERM or SIGHUP: unwinds like Ctrl-C, so temp files are removed on the way out."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum


@contextlib.contextmanager
def note_interrupts():
    """Remember a Ctrl-C even when a library turns the KeyboardInterrupt into another error (transformers'
    lazy imports re-raise it as ModuleNotFoundError); turn SIGTERM and SIGHUP into an unwinding stop."""
    from . import _cancel_at_start_up

    seen = {"sigint": False, "stopped": None}
    if threading.current_thread() is not threading.main_thread():
        yield seen  # embedded: signals are the host's
        return
    # Ctrl-C is ours unless someone else handles it, or it is ignored (`cmd &` in a script starts the command
    # with SIGINT ignored); SIGTERM and SIGHUP are handled either way, so a stop still removes temp files and locks
    own_sigint = signal.getsignal(signal.SIGINT) in (signal.default_int_handler, _cancel_at_start_up)

    def handler(signum, frame):
        seen["sigint"] = True
        if importing(frame):  # CPython may swallow it there ("Exception ignored in ... _get_module_lock"); nothing
            print("\nnexus-gen: cancelled", file=sys.stderr, flush=True)  # of ours is half-written mid-import
            os._exit(130)
        raise KeyboardInterrupt

    def stop(signum, frame):
        seen["stopped"] = signum  # remembered too: a library may turn the exception into one of its own
        raise Stopped(signum)

    stops = [getattr(signal, n) for n in ("SIGTERM", "SIGHUP") if hasattr(signal, n)]
    before = {s: signal.getsignal(s) for s in stops}
    sigint_before = signal.getsignal(signal.SIGINT)
    if own_sigint:
        signal.signal(signal.SIGINT, handler)
    for s in stops:
        if before[s] in (signal.SIG_DFL, None):
            signal.signal(s, stop)
    try:
        yield seen
    finally:
        if own_sigint:
            signal.signal(signal.SIGINT, signal.default_int_handler if sigint_before is _cancel_at_start_up
                          else sigint_before)
        for s, h in before.items():
            signal.signal(s, h if h is not None else signal.SIG_DFL)


def importing(frame) -> bool:
    """Whether the interrupted code runs inside Python's import machinery."""
    while frame is not None:
        if frame.f_code.co_filename.startswith("<frozen importlib"):
            return True
        frame = frame.f_back
    return False
