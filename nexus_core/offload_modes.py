"""The offload modes' names, importable without torch (the CLI's --help lists them)."""
OFFLOAD_MODES = ("none", "model", "sequential")
