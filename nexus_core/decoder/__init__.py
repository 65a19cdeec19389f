"""Nexus-Gen decoders: safe loading, key maps, projectors, conditioning and FLUX sampling."""
from ..loading import companions  # noqa: F401  (before transformers: hides a broken torchvision/torchaudio)
from .checkpoint import EDITING, GENERATION, DecoderFile, read_decoder
from .loaded import LoadedDecoder, load_decoder
from .sampler import Conditioning, initial_noise, sample
from .schedule import sigmas

__all__ = ["EDITING", "GENERATION", "Conditioning", "DecoderFile", "LoadedDecoder", "initial_noise", "load_decoder",
           "read_decoder", "sample", "sigmas"]
