"""How the pack talks to ComfyUI: its memory manager (patchers, cast-on-demand layers), the native FLUX MODEL glue,
the AR's handle, CLIP encodings from ComfyUI's own CLIP, schema fields across host versions, progress bars and
streamed text, and the skipped-LoRA notice."""
