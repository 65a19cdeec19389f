"""io.Schema across host versions: fields a host's V3 API does not know yet (search_aliases came after 0.8) are
dropped there instead of breaking the pack's import."""
from __future__ import annotations

import dataclasses

from comfy_api.latest import io

_FIELDS = {f.name for f in dataclasses.fields(io.Schema)}


def schema(**fields) -> io.Schema:
    return io.Schema(**{k: v for k, v in fields.items() if k in _FIELDS})
