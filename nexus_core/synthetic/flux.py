"""Tiny random FLUX.1-dev subset (CLIP-L, T5, their tokenizers, the AE) in the layouts Nexus-Gen reads, and a
full-size random FLUX AE in the BFL layout (what ComfyUI's native VAE loader accepts)."""
from __future__ import annotations

from pathlib import Path

import torch

from .tokenizers import clip_style_tokenizer, t5_style_tokenizer

TINY_AE = dict(ch=32, ch_mult=(1, 1, 2, 2), num_res_blocks=2, z_channels=16)
FLUX_AE = dict(ch=128, ch_mult=(1, 2, 4, 4), num_res_blocks=2, z_channels=16)


def bfl_ae_shapes(ch, ch_mult, num_res_blocks, z_channels, in_channels=3) -> dict[str, tuple]:
    """Names and shapes of the BFL/LDM autoencoder (encoder.down.i.block.j..., decoder.up.i...)."""
    s: dict[str, tuple] = {}

    def conv(name, o, i, k=3):
        s[f"{name}.weight"], s[f"{name}.bias"] = (o, i, k, k), (o,)

    def norm(name, c):
        s[f"{name}.weight"], s[f"{name}.bias"] = (c,), (c,)

    def resnet(name, i, o):
        norm(f"{name}.norm1", i), conv(f"{name}.conv1", o, i), norm(f"{name}.norm2", o), conv(f"{name}.conv2", o, o)
        if i != o:
            conv(f"{name}.nin_shortcut", o, i, 1)

    def mid(prefix, c):
        resnet(f"{prefix}.mid.block_1", c, c)
        norm(f"{prefix}.mid.attn_1.norm", c)
        for p in ("q", "k", "v", "proj_out"):
            conv(f"{prefix}.mid.attn_1.{p}", c, c, 1)
        resnet(f"{prefix}.mid.block_2", c, c)

    levels = len(ch_mult)
    conv("encoder.conv_in", ch, in_channels)
    cin = ch
    for i, mult in enumerate(ch_mult):
        for j in range(num_res_blocks):
            resnet(f"encoder.down.{i}.block.{j}", cin, ch * mult)
            cin = ch * mult
        if i != levels - 1:
            conv(f"encoder.down.{i}.downsample.conv", cin, cin)
    mid("encoder", cin)
    norm("encoder.norm_out", cin)
    conv("encoder.conv_out", 2 * z_channels, cin)
    cin = ch * ch_mult[-1]
    conv("decoder.conv_in", cin, z_channels)
    mid("decoder", cin)
    for i in reversed(range(levels)):
        for j in range(num_res_blocks + 1):
            resnet(f"decoder.up.{i}.block.{j}", cin, ch * ch_mult[i])
            cin = ch * ch_mult[i]
        if i != 0:
            conv(f"decoder.up.{i}.upsample.conv", cin, cin)
    norm("decoder.norm_out", cin)
    conv("decoder.conv_out", in_channels, cin)
    return s


def write_bfl_ae(path, seed: int = 0, dtype=torch.bfloat16, **cfg) -> Path:
    from safetensors.torch import save_file

    g = torch.Generator().manual_seed(seed)
    state = {}
    for name, shape in bfl_ae_shapes(**{**TINY_AE, **cfg}).items():
        if "norm" in name and name.endswith("weight"):
            t = torch.ones(shape)
        elif len(shape) == 1:
            t = torch.zeros(shape)
        else:
            fan_in = shape[1] * shape[2] * shape[3]
            t = torch.randn(shape, generator=g) * (1.0 / fan_in) ** 0.5
        state[name] = t.to(dtype)
    save_file(state, str(path))
    return Path(path)


def write_tiny_flux(folder, seed: int = 0) -> Path:
    from transformers import CLIPTextConfig, CLIPTextModel, PreTrainedTokenizerFast, T5Config, T5EncoderModel

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    clip_tok = PreTrainedTokenizerFast(tokenizer_object=clip_style_tokenizer(), bos_token="<|startoftext|>",
                                       eos_token="<|endoftext|>", pad_token="<|endoftext|>",
                                       unk_token="<|endoftext|>", model_max_length=77)
    clip_tok.save_pretrained(str(folder / "tokenizer"))
    t5_tok = PreTrainedTokenizerFast(tokenizer_object=t5_style_tokenizer(), pad_token="<pad>", eos_token="</s>",
                                     unk_token="<unk>", model_max_length=512)
    t5_tok.save_pretrained(str(folder / "tokenizer_2"))
    torch.manual_seed(seed)
    clip = CLIPTextModel(CLIPTextConfig(
        # 64-wide heads like CLIP-L, so a single file's head count follows from its width (hidden / 64)
        vocab_size=len(clip_tok), hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=1,
        max_position_embeddings=77, hidden_act="quick_gelu", projection_dim=64, bos_token_id=len(clip_tok) - 2,
        eos_token_id=2, pad_token_id=1))
    from ..loading.hf_quiet import quiet_transformers
    with quiet_transformers():
        clip.save_pretrained(str(folder / "text_encoder"))
    t5 = T5EncoderModel(T5Config(vocab_size=-(-len(t5_tok) // 64) * 64, d_model=32, d_kv=16, d_ff=64,
                                 num_layers=2, num_heads=2, feed_forward_proj="gated-gelu",
                                 relative_attention_num_buckets=32, is_encoder_decoder=False))
    with quiet_transformers():
        t5.save_pretrained(str(folder / "text_encoder_2"))
    write_bfl_ae(folder / "ae.safetensors", seed=seed)
    (folder / "README.txt").write_text("Tiny random FLUX.1-dev subset made by `nexus-gen make-tiny`: noise only.\n")
    return folder
