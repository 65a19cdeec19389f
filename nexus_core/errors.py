"""Exceptions with messages a user can act on."""


class NexusError(Exception):
    """Bad input: a missing or wrong file, an unusable value. The message names it and says what was expected."""


class NexusCancelled(Exception):
    """Raised when a cancellation hook asks a loop to stop; models stay usable afterwards."""
