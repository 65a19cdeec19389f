"""The `nexus-gen` command line: argument parsing (commands), the checks run before any model loads (checks),
the demo on tiny models and the streamed reply printer. Nothing else in nexus_core imports from here.

Importing this package imports no torch, so `--help` and `--version` answer at once. When it is the program
(`nexus-gen`, `python -m nexus_core.cli`), a Ctrl-C is handled from its first line: one that arrives while the
command is still starting ends it with the cancel line (nothing has been written yet), not a traceback."""
import os as _os
import signal as _signal
import sys as _sys
import threading as _threading


def _cancel_at_start_up(signum, frame):
    try:
        _sys.stderr.write("\nnexus-gen: cancelled\n")
        _sys.stderr.flush()
    finally:
        _os._exit(130)


def _started_as_program() -> bool:
    orig = list(getattr(_sys, "orig_argv", []))
    as_module = any(a == "-m" and b == __name__ for a, b in zip(orig, orig[1:]))
    script = _os.path.basename(_sys.argv[0] if _sys.argv else "").lower()
    return as_module or script.startswith("nexus-gen")


if (_started_as_program() and _threading.current_thread() is _threading.main_thread()
        and _signal.getsignal(_signal.SIGINT) is _signal.default_int_handler):
    _signal.signal(_signal.SIGINT, _cancel_at_start_up)

from .entry import main  # noqa: E402  (after the handler: this import is where start-up time goes)

__all__ = ["main"]
