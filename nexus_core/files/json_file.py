"""JSON files we read (model configs, chat templates): refused with a message that names the file when they are
missing, not UTF-8, not JSON, not an object, or hold a number that is not finite.

Python's json module accepts NaN and Infinity (not JSON, but what some tools write): a config with
`"rms_norm_eps": NaN` would load and turn every image black. parse_constant sees exactly those literals."""
from __future__ import annotations

import json
from pathlib import Path

from ..errors import NexusError


def _refuse_constant(name: str):
    raise ValueError(f"the number {name} is not finite")


def read_json(path, what: str) -> dict:
    """The object in `path`; `what` says what the file should hold (for the message)."""
    path = Path(path)
    if not path.is_file():
        raise NexusError(f"Missing {path.name} in {path.parent}: expected {what}")
    try:
        value = json.loads(path.read_text(encoding="utf-8"), parse_constant=_refuse_constant)
    except UnicodeDecodeError:
        raise NexusError(f"{path} is not UTF-8 text; expected {what}") from None
    except ValueError as e:  # JSONDecodeError, or a non-finite number
        raise NexusError(f"{path} is not valid JSON ({e}); expected {what}") from None
    except OSError as e:
        raise NexusError(f"{path} cannot be read ({e.strerror or e}); expected {what}") from None
    if not isinstance(value, dict):
        raise NexusError(f"{path} holds a JSON {type(value).__name__}, not an object; expected {what}")
    return value
