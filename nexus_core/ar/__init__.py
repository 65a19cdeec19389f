"""The autoregressive half of Nexus-Gen: loading, understanding, ViT encoding and embedding prediction."""
from ..loading import companions  # noqa: F401  (before transformers: hides a broken torchvision/torchaudio)
from .decoding import ArOutput, DecodeOptions, all2all_text, decode
from .embeds import Embeddings, Request, editing_request, generation_request, predict
from .model import NexusAR, load_ar
from .sampling import SamplingConfig
from .understand import understand
from .vit import encode_image, reference_embeddings

__all__ = ["ArOutput", "DecodeOptions", "Embeddings", "NexusAR", "Request", "SamplingConfig", "all2all_text",
           "decode", "editing_request", "encode_image", "generation_request", "load_ar", "predict",
           "reference_embeddings", "understand"]
