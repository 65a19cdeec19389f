"""Files on disk: atomic writes (temp file + rename, a writer lock, stale temps cleaned), JSON configs refused
when they are not what they should be, safetensors headers checked before anything is loaded, safetensors read
one tensor at a time into memory of our own, and a writer that keeps its order. Imports errors and settings."""
