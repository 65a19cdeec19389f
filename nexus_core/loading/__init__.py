"""How models are built from files: hide a broken torchvision/torchaudio from transformers (companions), keep
transformers quiet while we load (hf_quiet), build a module on the meta device and take the checkpoint's tensors
as its parameters (meta_init), and fill such a module from safetensors shards one tensor at a time, quantizing
fp8 layers as they arrive (streamed).

Imported by ar/, decoder/, flux/ and synthetic/ (before they import transformers or diffusers); imports memory."""
