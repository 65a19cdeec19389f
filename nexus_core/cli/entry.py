"""`nexus-gen` itself: usable output streams, the checks before any work, the command, and one line and an exit
status for whatever ends it (a refusal, Ctrl-C, a stop signal, a reader that went away, a full disk)."""
from __future__ import annotations

import contextlib
import os
import signal
import sys

from ..errors import NexusCancelled, NexusError
from .interrupts import Stopped, note_interrupts
from .parser import build_parser, negative_values_joined


def _usable_streams() -> str | None:
    """Output that cannot go where it should degrades: a closed stdout is replaced by the null device (said on
    stderr), and characters a narrow encoding (PYTHONIOENCODING=ascii) cannot show are written as escapes."""
    said = None
    if sys.stdout is None:
        sys.stdout = open(os.devnull, "w")
        said = "standard output is closed: what this command prints is not shown"
    if sys.stderr is None:
        sys.stderr = open(os.devnull, "w")
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(AttributeError, ValueError, OSError):
            stream.reconfigure(errors="backslashreplace")
    return said


def main(argv=None) -> int:
    note = _usable_streams()
    if note:
        print(f"nexus-gen: {note}", file=sys.stderr)
    try:
        os.getcwd()
    except OSError:  # (libraries fail later with their own, less readable words: oneMKL aborts the process)
        print("nexus-gen: error: the current folder no longer exists (it was deleted or moved); cd to an existing "
              "folder and run again", file=sys.stderr)
        return 2
    with note_interrupts() as seen:
        try:
            from .checks import check_resources, check_settings

            a = build_parser().parse_args(negative_values_joined(sys.argv[1:] if argv is None else argv))
            check_settings(a)  # no torch yet: a bad value is refused at once
            check_resources(a)  # device, dtype, model files: still before any model loads
            a.func(a)
            sys.stdout.flush()  # a reader that went away shows here, not as a message at interpreter exit
        except NexusError as e:
            print(f"nexus-gen: error: {e}", file=sys.stderr)
            return 2
        except (NexusCancelled, KeyboardInterrupt):
            print("\nnexus-gen: cancelled", file=sys.stderr)
            return 130
        except Stopped as e:
            name = signal.Signals(e.signum).name
            print(f"\nnexus-gen: stopped by {name}; nothing was left half-written", file=sys.stderr)
            return 128 + e.signum
        except BrokenPipeError:  # the reader went away (`| head`): stop quietly, as other tools do
            with contextlib.suppress(OSError):
                os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            return 141
        except Exception as e:
            if seen["stopped"] is not None:  # a stop that a library (torch's zip writer) turned into its own error
                name = signal.Signals(seen["stopped"]).name
                print(f"\nnexus-gen: stopped by {name}; nothing was left half-written", file=sys.stderr)
                return 128 + seen["stopped"]
            if seen["sigint"]:
                print("\nnexus-gen: cancelled", file=sys.stderr)
                return 130
            if isinstance(e, OSError):  # a full disk, a vanished folder: the system's own words, in one line
                print(f"nexus-gen: error: {e}", file=sys.stderr)
                return 1
            raise
    return 0
