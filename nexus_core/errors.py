"""Exceptions with messages a user can act on."""


class NexusError(Exception):
    """Bad input: a missing or wrong file, an unusable value. The message names it and says what was expected."""


class NexusCancelled(Exception):
    """Raised when a cancellation hook asks a loop to stop; models stay usable afterwards."""


# Hosts report an error's type as module + class name; inside ComfyUI the module name is the pack's file path.
NexusError.__module__ = NexusCancelled.__module__ = "nexus_gen"
