"""CLIP-L and T5-XXL for Nexus-Gen conditioning: pooled CLIP-L of "" (positive) and the CFG negative
(T5 padded to 512, no mask, plus its pooled CLIP-L). Built with transformers from HF folders or single files,
every size read from the tensors. Encodings are cached, T5 is loaded only when first needed."""
from __future__ import annotations

import re
from pathlib import Path

import torch

from ..errors import NexusError
from ..files.safetensors_check import tensor_names
from ..loading.hf_quiet import quiet_transformers

CLIP_MAX_LENGTH = 77
T5_MAX_LENGTH = 512


def _count(keys, pattern) -> int:
    idx = {int(m.group(1)) for k in keys if (m := re.search(pattern, k))}
    return max(idx) + 1 if idx else 0


def _state(path: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file
    tensor_names(path)  # refuses truncated files with a clear message
    return load_file(str(path))


def normalize_clip_keys(sd: dict) -> dict:
    """HF CLIPTextModel names ('text_model.*'); accepts ComfyUI's 'transformer.' prefix and prefix-less saves."""
    out = {}
    for k, v in sd.items():
        k = k.removeprefix("transformer.")
        if k.startswith(("embeddings.", "encoder.", "final_layer_norm.")):
            k = "text_model." + k
        out[k] = v
    return out


def normalize_t5_keys(sd: dict) -> dict:
    """T5EncoderModel names with both the shared and the encoder embedding present."""
    sd = {k.removeprefix("transformer."): v for k, v in sd.items()}
    emb = sd.get("shared.weight", sd.get("encoder.embed_tokens.weight"))
    if emb is None:
        raise NexusError("T5 file has no token embedding (shared.weight / encoder.embed_tokens.weight)")
    sd.setdefault("shared.weight", emb)
    sd.setdefault("encoder.embed_tokens.weight", emb)
    return sd


def clip_config_from_state(sd) -> dict:
    sd = normalize_clip_keys(sd)
    vocab, hidden = sd["text_model.embeddings.token_embedding.weight"].shape
    return dict(vocab_size=vocab, hidden_size=hidden,
                max_position_embeddings=sd["text_model.embeddings.position_embedding.weight"].shape[0],
                num_hidden_layers=_count(sd, r"text_model\.encoder\.layers\.(\d+)\."),
                intermediate_size=sd["text_model.encoder.layers.0.mlp.fc1.weight"].shape[0],
                num_attention_heads=max(1, hidden // 64), hidden_act="quick_gelu", eos_token_id=2,
                bos_token_id=0, pad_token_id=1, projection_dim=hidden)


def t5_config_from_state(sd) -> dict:
    q = sd["encoder.block.0.layer.0.SelfAttention.q.weight"]
    rel = sd["encoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight"]
    emb = sd.get("shared.weight", sd.get("encoder.embed_tokens.weight"))
    gated = "encoder.block.0.layer.1.DenseReluDense.wi_0.weight" in sd
    wi = sd["encoder.block.0.layer.1.DenseReluDense." + ("wi_0" if gated else "wi") + ".weight"]
    heads = rel.shape[1]
    return dict(vocab_size=emb.shape[0], d_model=q.shape[1], d_kv=q.shape[0] // heads, num_heads=heads,
                d_ff=wi.shape[0], num_layers=_count(sd, r"encoder\.block\.(\d+)\."),
                relative_attention_num_buckets=rel.shape[0], feed_forward_proj="gated-gelu" if gated else "relu",
                is_encoder_decoder=False, dense_act_fn="gelu_new" if gated else "relu")


def load_clip(source: Path, dtype, device):
    from transformers import CLIPTextConfig, CLIPTextModel
    source = Path(source)
    if source.is_dir():
        with quiet_transformers():
            return CLIPTextModel.from_pretrained(str(source), dtype=dtype, local_files_only=True).to(device).eval()
    sd = normalize_clip_keys(_state(source))
    with torch.device("meta"):
        model = CLIPTextModel(CLIPTextConfig(**clip_config_from_state(sd)))
    sd.pop("text_projection.weight", None)
    own = {n for n, _ in model.named_parameters()}
    if not any(n.startswith("text_model.") for n in own):  # newer transformers drop the prefix
        sd = {k.removeprefix("text_model."): v for k, v in sd.items()}
    model.load_state_dict({k: v.to(dtype) for k, v in sd.items() if not k.endswith("position_ids")}, strict=False,
                          assign=True)
    _rebuild_position_ids(model)
    _check_no_meta(model, source)
    return model.to(device).eval()


def load_t5(source: Path, dtype, device):
    from transformers import T5Config, T5EncoderModel
    source = Path(source)
    if source.is_dir():
        with quiet_transformers():
            return T5EncoderModel.from_pretrained(str(source), dtype=dtype, local_files_only=True).to(device).eval()
    sd = normalize_t5_keys(_state(source))
    with torch.device("meta"):
        model = T5EncoderModel(T5Config(**t5_config_from_state(sd)))
    model.load_state_dict({k: v.to(dtype) for k, v in sd.items()}, strict=False, assign=True)
    _check_no_meta(model, source)
    return model.to(device).eval()


def _rebuild_position_ids(model):
    """CLIP keeps a non-persistent position_ids buffer; rebuild it off the meta device."""
    for name, buf in list(model.named_buffers()):
        if buf.is_meta and name.endswith("position_ids"):
            owner = model.get_submodule(name.rsplit(".", 1)[0])
            owner.register_buffer("position_ids", torch.arange(buf.shape[-1]).expand(buf.shape), persistent=False)


def _check_no_meta(model, source):
    missing = [n for n, p in list(model.named_parameters()) + list(model.named_buffers()) if p.is_meta]
    if missing:
        raise NexusError(f"{source} lacks tensors the text encoder needs: {missing[:6]}")


def _device_of(model) -> torch.device:
    return next(model.parameters()).device


class TextEncoders:
    """Pooled CLIP-L and T5 encodings with caching; T5 is optional and loaded lazily."""

    def __init__(self, clip, clip_tokenizer, t5=None, t5_tokenizer=None, dtype=torch.float32, device="cpu",
                 prepare=None):
        """prepare(name, module), if given, is called before each use: a host (ComfyUI) loads the module there and
        returns the device it computes on (it may stream weights that stay elsewhere). Without it, encodings run
        wherever the module's weights are."""
        self.clip_source, self.clip_tokenizer_dir = clip, clip_tokenizer
        self.t5_source, self.t5_tokenizer_dir = t5, t5_tokenizer
        self.dtype, self.device = dtype, torch.device(device)
        self.prepare = prepare
        self._clip = self._t5 = self._clip_tok = self._t5_tok = None
        self._cache: dict = {}

    @property
    def has_t5(self) -> bool:
        return self.t5_source is not None and self.t5_tokenizer_dir is not None

    def _clip_model(self):
        if self._clip is None:
            from transformers import AutoTokenizer
            self._clip = load_clip(self.clip_source, self.dtype, self.device)
            self._clip_tok = AutoTokenizer.from_pretrained(str(self.clip_tokenizer_dir), local_files_only=True)
        return self._clip

    def _t5_model(self):
        if not self.has_t5:
            raise NexusError("A negative prompt with cfg > 1 needs the T5-XXL text encoder and its tokenizer, "
                             "which were not given (text_encoder_2/ + tokenizer_2/, or a t5xxl file)")
        if self._t5 is None:
            from transformers import AutoTokenizer
            self._t5 = load_t5(self.t5_source, self.dtype, self.device)
            self._t5_tok = AutoTokenizer.from_pretrained(str(self.t5_tokenizer_dir), local_files_only=True)
        return self._t5

    def _ready(self, name, model) -> torch.device:
        device = self.prepare(name, model) if self.prepare is not None else None
        return torch.device(device) if device is not None else _device_of(model)

    @torch.inference_mode()
    def _encode(self, name: str, model, tokenizer, text: str, max_length: int, output: str) -> torch.Tensor:
        """Padded to max_length, no attention mask (as the reference), cached per (encoder, text)."""
        key = (name, text)
        if key not in self._cache:
            device = self._ready(name, model)
            ids = tokenizer(text, max_length=max_length, padding="max_length", truncation=True,
                            return_tensors="pt").input_ids.to(device)
            self._cache[key] = getattr(model(ids), output)
        return self._cache[key]

    def clip_pooled(self, text: str = "") -> torch.Tensor:
        model = self._clip_model()
        return self._encode("clip", model, self._clip_tok, text, CLIP_MAX_LENGTH, "pooler_output")

    def t5(self, text: str = "") -> torch.Tensor:
        model = self._t5_model()
        return self._encode("t5", model, self._t5_tok, text, T5_MAX_LENGTH, "last_hidden_state")

    def unload_t5(self):
        self._t5 = None
