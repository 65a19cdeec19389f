"""Test-only shim for running ComfyUI on CPU torch: PyPI's torchvision wheels are CUDA builds whose compiled
operators cannot load here, and their fake-kernel registrations then fail at import. Pre-seeding an empty
`torchvision._meta_registrations` skips only those registrations; the pure-Python parts of torchvision work."""
import sys
import types

sys.modules.setdefault("torchvision._meta_registrations", types.ModuleType("torchvision._meta_registrations"))
