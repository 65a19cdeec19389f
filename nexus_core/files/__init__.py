"""Files on disk: atomic writes (temp file + rename), safetensors headers checked before anything is loaded, and a
safetensors writer that keeps its order. Imports only errors, so any part of nexus_core may use it."""
