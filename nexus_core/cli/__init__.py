"""The `nexus-gen` command line: argument parsing (commands), the checks run before any model loads (checks),
the demo on tiny models and the streamed reply printer. Nothing else in nexus_core imports from here.

Importing this package imports no torch, so `--help` and `--version` answer at once."""
from .commands import main

__all__ = ["main"]
