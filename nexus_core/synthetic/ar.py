"""A tiny random Nexus-Gen V2 AR folder in the published layout (flat 4.49 config, sharded 4.49 keys)."""
from __future__ import annotations

import json
from pathlib import Path

import torch

from .tokenizers import QWEN_ADDED_TOKENS, qwen_style_tokenizer

# Our own rendering of the standard Qwen2.5-VL chat template (same output for images, text and strings).
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{% if loop.first and message['role'] != 'system' %}<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n{% endif %}"
    "<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for item in message['content'] %}"
    "{% if item['type'] == 'image' or 'image' in item %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif item['type'] == 'video' %}<|vision_start|><|video_pad|><|vision_end|>"
    "{% elif 'text' in item %}{{ item['text'] }}{% endif %}"
    "{% endfor %}{% endif %}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

TINY_TEXT = dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                 intermediate_size=128, mrope_section=[2, 3, 3])
TINY_VISION = dict(depth=4, hidden_size=32, num_heads=2, intermediate_size=64, window_size=112,
                   fullatt_block_indexes=[1, 3])


def _config(base_vocab: int, text=TINY_TEXT, vision=TINY_VISION, vocab_size: int | None = None,
            ids: dict[str, int] | None = None) -> dict:
    ids = ids or {t: base_vocab + i for i, t in enumerate(QWEN_ADDED_TOKENS)}
    vocab = vocab_size or -(-(base_vocab + len(QWEN_ADDED_TOKENS)) // 64) * 64  # padded rows, like the real 152064
    return {
        "architectures": ["Qwen2_5_VLForConditionalGeneration"], "model_type": "qwen2_5_vl",
        "attention_dropout": 0.0, "hidden_act": "silu", "initializer_range": 0.02,
        "hidden_size": text["hidden_size"], "intermediate_size": text["intermediate_size"],
        "num_hidden_layers": text["num_hidden_layers"], "num_attention_heads": text["num_attention_heads"],
        "num_key_value_heads": text["num_key_value_heads"], "max_position_embeddings": 128000,
        "max_window_layers": text["num_hidden_layers"], "rms_norm_eps": 1e-6, "rope_theta": 1000000.0,
        "rope_scaling": {"type": "default", "rope_type": "default", "mrope_section": text["mrope_section"]},
        "sliding_window": 32768, "use_sliding_window": False, "tie_word_embeddings": False,
        "torch_dtype": "float32", "transformers_version": "4.49.0", "use_cache": False, "vocab_size": vocab,
        "bos_token_id": ids["<|endoftext|>"], "eos_token_id": ids["<|im_end|>"], "pad_token_id": ids["<|endoftext|>"],
        "vision_start_token_id": ids["<|vision_start|>"], "vision_end_token_id": ids["<|vision_end|>"],
        "vision_token_id": ids["<|vision_pad|>"], "image_token_id": ids["<|image_pad|>"],
        "video_token_id": ids["<|video_pad|>"],
        "vision_config": {
            "depth": vision["depth"], "hidden_act": "silu", "hidden_size": vision["hidden_size"],
            "intermediate_size": vision["intermediate_size"], "num_heads": vision["num_heads"], "in_chans": 3,
            "out_hidden_size": text["hidden_size"], "patch_size": 14, "spatial_patch_size": 14,
            "spatial_merge_size": 2, "temporal_patch_size": 2, "window_size": vision["window_size"],
            "fullatt_block_indexes": vision["fullatt_block_indexes"], "tokens_per_second": 2,
            "model_type": "qwen2_5_vl", "torch_dtype": "float32",
        },
    }


def _legacy_name(key: str) -> str:
    """transformers 5.x names -> the 4.49 names used by the published checkpoint."""
    if key.startswith("model.visual."):
        return key[len("model."):]
    if key.startswith("model.language_model."):
        return "model." + key[len("model.language_model."):]
    return key


TOKENIZER_FILES = ("vocab.json", "merges.txt", "tokenizer_config.json", "tokenizer.json", "added_tokens.json",
                   "special_tokens_map.json")


def write_tiny_ar(folder, seed: int = 0, base_vocab: int = 512, n_image_tokens: int = 81, shards: int = 2,
                  text: dict = TINY_TEXT, vision: dict = TINY_VISION, vocab_size: int | None = None,
                  tokenizer_files=None) -> Path:
    """vocab_size: rows of the embedding and lm_head (default: the tokenizer's size padded to a multiple of 64).
    tokenizer_files: a folder with an existing Qwen2 tokenizer (e.g. the real one) to copy instead of training the
    tiny BPE; the special token ids in config.json are then read from it."""
    import shutil

    from safetensors.torch import save_file
    from transformers import PreTrainedTokenizerFast, Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    if tokenizer_files is not None:
        from transformers import AutoTokenizer

        for name in TOKENIZER_FILES:
            if (Path(tokenizer_files) / name).is_file():
                shutil.copy(Path(tokenizer_files) / name, folder / name)
        tok = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
        ids = {t: tok.convert_tokens_to_ids(t) for t in QWEN_ADDED_TOKENS}
        cfg = _config(base_vocab, text, vision, vocab_size or -(-len(tok) // 64) * 64, ids)
    else:
        cfg = _config(base_vocab, text, vision, vocab_size)
        tok = PreTrainedTokenizerFast(tokenizer_object=qwen_style_tokenizer(base_vocab), eos_token="<|im_end|>",
                                      pad_token="<|endoftext|>", unk_token=None)
        tok.save_pretrained(str(folder))
        tc = json.loads((folder / "tokenizer_config.json").read_text())
        tc.update(tokenizer_class="Qwen2Tokenizer", model_max_length=32768, clean_up_tokenization_spaces=False)
        tc.pop("chat_template", None)
        (folder / "tokenizer_config.json").write_text(json.dumps(tc, indent=2, ensure_ascii=False))
    (folder / "config.json").write_text(json.dumps(cfg, indent=2))
    (folder / "chat_template.json").write_text(json.dumps({"chat_template": CHAT_TEMPLATE}, indent=2))
    (folder / "generation_config.json").write_text(json.dumps({
        "bos_token_id": cfg["bos_token_id"], "pad_token_id": cfg["pad_token_id"], "do_sample": True,
        "eos_token_id": [cfg["eos_token_id"], cfg["bos_token_id"]], "repetition_penalty": 1.05,
        "temperature": 0.1, "top_k": 1, "top_p": 0.001}, indent=2))
    (folder / "preprocessor_config.json").write_text(json.dumps({
        "min_pixels": 3136, "max_pixels": 12845056, "patch_size": 14, "temporal_patch_size": 2, "merge_size": 2,
        "image_mean": [0.48145466, 0.4578275, 0.40821073], "image_std": [0.26862954, 0.26130258, 0.27577711],
        "image_processor_type": "Qwen2VLImageProcessor", "processor_class": "Qwen2_5_VLProcessor"}, indent=2))

    torch.manual_seed(seed)
    model = Qwen2_5_VLForConditionalGeneration(Qwen2_5_VLConfig(**cfg))
    state = {_legacy_name(k): v.detach().clone() for k, v in model.state_dict().items()}
    d = cfg["hidden_size"]
    g = torch.Generator().manual_seed(seed + 1)
    state["vision_head.weight"] = torch.randn(d, d, generator=g) / d ** 0.5
    state["image_prefill_embeds.weight"] = torch.randn(n_image_tokens, d, generator=g) * 0.02
    names = sorted(state)
    weight_map = {}
    for i in range(shards):
        part = names[i::shards]
        fname = f"model-{i + 1:05d}-of-{shards:05d}.safetensors"
        save_file({k: state[k].contiguous() for k in part}, str(folder / fname), metadata={"format": "pt"})
        weight_map.update({k: fname for k in part})
    total = sum(v.numel() * v.element_size() for v in state.values())
    (folder / "model.safetensors.index.json").write_text(json.dumps(
        {"metadata": {"total_size": total}, "weight_map": dict(sorted(weight_map.items()))}, indent=2))
    return folder
