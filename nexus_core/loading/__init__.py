"""Manners around the libraries that build our models: hide a broken torchvision/torchaudio from transformers
(companions), keep transformers quiet while we load (hf_quiet), and build a module on the meta device, then take
the checkpoint's tensors as its parameters (meta_init).

Imported by ar/, decoder/, flux/ and tiny/ before they import transformers or diffusers."""
