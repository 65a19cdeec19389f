"""Device and dtype choices shared by every command."""
from __future__ import annotations

import torch

from ..errors import NexusError

DTYPES = {"float32": torch.float32, "fp32": torch.float32, "bfloat16": torch.bfloat16, "bf16": torch.bfloat16,
          "float16": torch.float16, "fp16": torch.float16}
DEVICE_TYPES = ("cpu", "cuda", "mps", "xpu")  # what the pipeline's offloading knows how to handle


def _backend(kind: str):
    """(available, device count) for an accelerator type in this torch build."""
    if kind == "cuda":
        return torch.cuda.is_available(), torch.cuda.device_count() if torch.cuda.is_available() else 0
    if kind == "xpu":
        xpu = getattr(torch, "xpu", None)
        ok = xpu is not None and xpu.is_available()
        return ok, xpu.device_count() if ok else 0
    if kind == "mps":
        mps = getattr(torch.backends, "mps", None)
        ok = mps is not None and mps.is_available()
        return ok, 1 if ok else 0
    return True, 1


def usable_devices() -> list[str]:
    found = ["cpu"]
    for kind in ("cuda", "xpu"):
        ok, n = _backend(kind)
        found += [f"{kind}:{i}" for i in range(n)] if ok else []
    found += ["mps"] if _backend("mps")[0] else []
    return found


def pick_device(device: str | torch.device | None = None) -> torch.device:
    """'auto' (cuda if available), or a device this torch can use; otherwise a NexusError that names it."""
    if device in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    usable = f"usable here: {', '.join(usable_devices())} (torch {torch.__version__})"
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError, ValueError):
        raise NexusError(f"Unknown device {device!r}: use cpu, cuda, cuda:N, mps or xpu; {usable}") from None
    if dev.type not in DEVICE_TYPES:
        raise NexusError(f"Device {device!r} is not supported: use cpu, cuda, cuda:N, mps or xpu; {usable}")
    ok, count = _backend(dev.type)
    if not ok:
        raise NexusError(f"Device {device!r} is not available: this torch has no working {dev.type} backend; "
                         f"{usable}")
    if dev.index is not None and dev.index >= count:
        raise NexusError(f"Device {device!r} does not exist: {count} {dev.type} device(s) found; {usable}")
    return dev


def pick_dtype(dtype: str | torch.dtype | None, device: torch.device) -> torch.dtype:
    """float32 on CPU, bfloat16 on GPU unless asked otherwise."""
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype in (None, "auto", "default"):
        return torch.float32 if device.type == "cpu" else torch.bfloat16
    if dtype not in DTYPES:
        raise NexusError(f"Unknown dtype {dtype!r}: use one of {', '.join(sorted(DTYPES))}")
    return DTYPES[dtype]
