"""FLUX.1-dev parts Nexus-Gen's decoders use: text encoders (pooled CLIP-L, T5 negative) and the autoencoder."""
from ..loading import companions  # noqa: F401  (before transformers: hides a broken torchvision/torchaudio)
