"""Host-independent Nexus-Gen V2 library (no ComfyUI imports). Submodules load torch lazily on use."""
__version__ = "0.1.0"
