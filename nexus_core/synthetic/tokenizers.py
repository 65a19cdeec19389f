"""Tiny tokenizers built by our own code (no third-party tokenizer data is shipped in this repo)."""
from __future__ import annotations

# Qwen2.5's added tokens, in their id order after the base vocabulary.
QWEN_ADDED_TOKENS = [
    "<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|object_ref_start|>", "<|object_ref_end|>",
    "<|box_start|>", "<|box_end|>", "<|quad_start|>", "<|quad_end|>", "<|vision_start|>", "<|vision_end|>",
    "<|vision_pad|>", "<|image_pad|>", "<|video_pad|>", "<tool_call>", "</tool_call>", "<|fim_prefix|>",
    "<|fim_middle|>", "<|fim_suffix|>", "<|fim_pad|>", "<|repo_name|>", "<|file_sep|>",
]
QWEN_SPLIT = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|"
              r"\s*[\r\n]+|\s+(?!\S)|\s+")
# Training text for the tiny BPE: the task prompts and replies, so common words get merged tokens.
CORPUS = [
    "You are a helpful assistant.", "Generate an image according to the following description: ",
    "Here is an image based on the description: ", "Here is the image: ", "Please give a brief description of the image.",
    "A red fox sitting in the snow at sunset.", "Add a pair of sunglasses.", "The image shows a red square and a blue circle.",
    "What is the capital of France? The capital of France is Paris.", "a cat, a dog, a house, a tree, the sky",
    "根据以下描述生成一张图像：", "这是根据您的描述生成的图像：", "以下为编辑后的图像：", "一只戴着红色围巾的小猫在雪地里玩耍。",
]


def qwen_style_tokenizer(base_vocab: int = 512):
    """Byte-level BPE with Qwen2's pre-tokenizer and the 22 Qwen2.5 added tokens at ids base_vocab.."""
    from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(QWEN_SPLIT), behavior="isolated"),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=base_vocab, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=False, min_frequency=1)
    tok.train_from_iterator(CORPUS * 4, trainer=trainer)
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in QWEN_ADDED_TOKENS])
    return tok


def clip_style_tokenizer():
    """CLIP-style byte-level BPE (lower-cased, '</w>' word ends) with <|startoftext|>, <|endoftext|> as the last
    ids, so pooling at argmax(ids) finds the first end-of-text token as with the real CLIP-L. The vocabulary is
    written out (bytes, then bytes + '</w>', no merges) rather than trained: training orders it by hash."""
    from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors

    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    vocab = {c: i for i, c in enumerate(alphabet)}
    vocab.update({c + "</w>": len(alphabet) + i for i, c in enumerate(alphabet)})
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[], end_of_word_suffix="</w>", unk_token="<|endoftext|>"))
    tok.normalizer = normalizers.Sequence([normalizers.NFC(), normalizers.Replace(Regex(r"\s+"), " "),
                                           normalizers.Lowercase()])
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(r"'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+"),
                             behavior="removed", invert=True),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    tok.decoder = decoders.BPEDecoder(suffix="</w>")
    tok.add_special_tokens([AddedToken("<|startoftext|>", special=True), AddedToken("<|endoftext|>", special=True)])
    bos, eos = tok.token_to_id("<|startoftext|>"), tok.token_to_id("<|endoftext|>")
    tok.post_processor = processors.TemplateProcessing(
        single="<|startoftext|> $A <|endoftext|>", special_tokens=[("<|startoftext|>", bos), ("<|endoftext|>", eos)])
    return tok


def t5_style_tokenizer():
    """SentencePiece-style Unigram with <pad>=0, </s>=1, <unk>=2 and a closing </s>, like T5's. Pieces are the
    corpus' words and characters, written out in sorted order with fixed scores (deterministic)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors

    words = sorted({"▁" + w for line in CORPUS for w in line.split()})
    chars = sorted({c for line in CORPUS for c in line if not c.isspace()} | {"▁"})
    vocab = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0)]
    vocab += [(w, -2.0) for w in words] + [(c, -8.0) for c in chars if c not in words]
    tok = Tokenizer(models.Unigram(vocab, unk_id=2))
    tok.pre_tokenizer = pre_tokenizers.Metaspace()
    tok.decoder = decoders.Metaspace()
    tok.post_processor = processors.TemplateProcessing(single="$A </s>", special_tokens=[("</s>", 1)])
    return tok
