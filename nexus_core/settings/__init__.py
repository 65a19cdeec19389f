"""What a user can set: the defaults and fixed choices (defaults) and the checks of every value (validate).

Torch-free at import and dependent only on errors, so every other part of nexus_core may import it."""
