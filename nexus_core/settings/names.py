"""Names a client picks from a list (a model folder, a decoder file, a text encoder): accepted only as one of the
listed values, and never as a path.

On a server every input arrives from a client that may be hostile. ComfyUI checks a combo value against its list
only for inputs a node does not validate itself (comfyui-host.md section 12), so a node that validates a file
input must check membership here. A listed value was found by walking the model folders (following the links a
user placed there), so membership alone keeps every lookup inside them; the spelling checks below refuse what is
never a model name before any list is consulted. Refusals read the same whether or not a path exists outside the
model folders: nothing here touches the file system.
"""
from __future__ import annotations

import os
import re

from ..errors import NexusError

MAX_NAME_CHARS = 1024  # whole relative name; each part is also held to the usual 255-byte file-name limit
MAX_PART_BYTES = 255
_DRIVE = re.compile(r"^[A-Za-z]:")


def name_problem(name) -> str | None:
    """Why `name` can never be a relative name inside a model folder, or None."""
    if not isinstance(name, str):
        return f"must be text, got {type(name).__name__}"
    if not name:
        return "is empty"
    if len(name) > MAX_NAME_CHARS:
        return f"is {len(name)} characters long (at most {MAX_NAME_CHARS})"
    if any(ord(c) < 32 or ord(c) == 127 for c in name):
        return "holds a control character"
    if any("\ud800" <= c <= "\udfff" for c in name):
        return "is not valid UTF-8 text"
    if name.startswith(("/", "\\")) or _DRIVE.match(name) or os.path.isabs(name):
        return "is an absolute path"
    if "\\" in name and os.sep != "\\":  # a separator only on Windows, where the host lists names with it
        return "holds a backslash"
    if name == ".":  # a model folder that is itself a root (extra_model_paths.yaml pointing at it)
        return None
    parts = re.split(r"[\\/]", name)
    if any(p in ("", ".", "..") for p in parts):
        return "holds an empty, '.' or '..' part"
    if any(len(p.encode("utf-8")) > MAX_PART_BYTES for p in parts):
        return f"has a part longer than {MAX_PART_BYTES} bytes"
    return None


def shown(value, limit: int = 80) -> str:
    """A client's value as a message may quote it: escaped, and cut to `limit` characters."""
    text = ascii(value) if not isinstance(value, str) else ascii(value)[1:-1]
    return text if len(text) <= limit else text[:limit] + f"... ({len(str(value))} characters)"


def check_listed(name, options, input_name: str, what: str) -> str:
    """`name` if it is one of `options` (the values the node lists) and spelled like a relative name; otherwise a
    NexusError that names the input and says the same thing wherever the name points."""
    problem = name_problem(name)
    if problem is not None:
        raise NexusError(f"{input_name}: '{shown(name)}' {problem}; choose one of the {what} listed under "
                         "ComfyUI's model folders (a file or folder name, not a path)")
    if name not in options:
        raise NexusError(f"{input_name}: '{shown(name)}' is not one of the {len(options)} {what} this ComfyUI lists "
                         "in its model folders; put it there and refresh (R)")
    return name


__all__ = ["MAX_NAME_CHARS", "check_listed", "name_problem", "shown"]
