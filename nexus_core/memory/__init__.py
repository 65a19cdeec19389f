"""Where weights live and in what precision: device and dtype choices (devices), fp8 storage with per-row scales
(fp8), and offloading stages or layers for GPU users without ComfyUI (offload).

Imported by the models (ar/, decoder/), the pipeline and the command line; imports only errors and settings."""
