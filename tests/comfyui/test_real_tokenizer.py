"""The real Qwen2.5 tokenizer, as ComfyUI bundles it (comfy/text_encoders/qwen25_tokenizer: vocab.json, merges.txt,
tokenizer_config.json), on a tiny AR with the real vocabulary size (152064 rows) and the published Qwen2.5-VL chat
template (the golden fixture's nexus/chat_template.json). Nothing may assume the tiny vocabulary:

  * our prompt ids equal transformers' own apply_chat_template on the same files, rendered the reference's way
    (editing: the instruction as one text with <image> replaced; understanding: [image, text] after a system message),
    with each <|image_pad|> expanded to t*h*w/4 copies as the processor does, in English and Chinese;
  * the special ids (reference 0) as NexusAR reads them;
  * replies decode to the <image> form (all2all_text);
  * generation / editing / understanding requests run end to end in reference and fast mode. lm_head rows are designed
    (hidden states do not depend on lm_head) so that greedy decoding writes the training-data reply: the reference-mode
    reply must then read "Here is an image based on the description: <image>" etc., and its embeddings must equal the
    fast mode's, whose fixed prefix is tokenized separately.

Runs in this Python (transformers 5.x) reading ComfyUI's files; skips without COMFYUI_PATH or the bundled tokenizer.
"""
import json
import shutil
from contextlib import contextmanager

import pytest
import torch

pytestmark = pytest.mark.comfyui

REAL_IDS = {"<|endoftext|>": 151643, "<|im_start|>": 151644, "<|im_end|>": 151645, "<|vision_start|>": 151652,
            "<|vision_end|>": 151653, "<|vision_pad|>": 151654, "<|image_pad|>": 151655, "<|video_pad|>": 151656}
REAL_VOCAB = 152064
VISION = "<|vision_start|><|image_pad|><|vision_end|>"
SYSTEM = "You are a helpful assistant."
# 2.2: the user turns and the training-data replies, written out
GENERATION_TEXT = {"en": "Generate an image according to the following description: {}",
                   "zh": "根据以下描述生成一张图像：{}"}
REPLY = {("generation", "en"): "Here is an image based on the description: ",
         ("generation", "zh"): "这是根据您的描述生成的图像：",
         ("editing", "en"): "Here is the image: ", ("editing", "zh"): "以下为编辑后的图像："}
CASES = {  # name: (kind, language, prompt or instruction, image: None | "fixture" (150x100) | (w, h))
    "gen_en": ("generation", "en", "A red fox sitting in the snow at sunset.", None),
    "gen_zh": ("generation", "zh", "一只戴着红色围巾的小猫在雪地里玩耍。", None),
    "gen_en_odd_text": ("generation", "en", "  2 cats 🐱,\n\n 3 dogs — «naïve» 'quoted'  ", None),
    "edit_en": ("editing", "en", "Add a pair of sunglasses.", "fixture"),
    "edit_zh": ("editing", "zh", "把天空变成紫色。", (512, 512)),
    "edit_placeholder": ("editing", "en", "Put <image> in a golden frame.", (1024, 768)),
}
# image -> (grid, tokens): 2.3 (150x100 -> 140x112; 512x512 -> 504x504; 1024x768 -> 588x420)
GRIDS = {"fixture": ([1, 8, 10], 20), (512, 512): ([1, 36, 36], 324), (1024, 768): ([1, 30, 42], 315)}


@pytest.fixture(scope="session", autouse=True)
def _host_first(comfy_root):
    """Resolved before the golden fixture: without a host these tests skip, whatever the golden data."""
    return comfy_root


@pytest.fixture(scope="module")
def qwen_tokenizer_dir(comfy_root):
    folder = comfy_root / "comfy" / "text_encoders" / "qwen25_tokenizer"
    missing = [n for n in ("vocab.json", "merges.txt", "tokenizer_config.json") if not (folder / n).is_file()]
    if missing:
        pytest.skip(f"this ComfyUI ({comfy_root}) bundles no Qwen2.5 tokenizer: {folder} lacks {missing}")
    return folder


@pytest.fixture(scope="module")
def hf_tokenizer(qwen_tokenizer_dir):
    """transformers' own tokenizer straight from ComfyUI's folder."""
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(qwen_tokenizer_dir), local_files_only=True)


@pytest.fixture(scope="module")
def template(fixture_dir) -> str:
    return json.loads((fixture_dir / "nexus" / "chat_template.json").read_text(encoding="utf-8"))["chat_template"]


@pytest.fixture(scope="module")
def real_vocab_ar(qwen_tokenizer_dir, fixture_dir, tmp_path_factory):
    from nexus_core.ar import load_ar
    from nexus_core.synthetic.ar import write_tiny_ar

    folder = write_tiny_ar(tmp_path_factory.mktemp("realvocab") / "Nexus-GenV2", seed=3, vocab_size=REAL_VOCAB,
                           tokenizer_files=qwen_tokenizer_dir)
    shutil.copy(fixture_dir / "nexus" / "chat_template.json", folder / "chat_template.json")
    return load_ar(folder, device="cpu", dtype="float32")


def understand_module():
    """nexus_core.ar.understand (the package re-exports a function of the same name over the submodule)."""
    import importlib

    return importlib.import_module("nexus_core.ar.understand")


def image_for(spec, fixture_dir):
    from PIL import Image

    if spec == "fixture":
        return Image.open(fixture_dir / "inputs" / "test_image.png").convert("RGB")
    img = Image.new("RGB", spec, (30, 90, 160))
    img.paste((220, 40, 40), (spec[0] // 4, spec[1] // 4, spec[0] // 2, spec[1] // 2))
    return img


def hf_prompt(tok, template, messages, image_tokens=(), suffix=""):
    """transformers' rendering, each <|image_pad|> expanded to its token count, then tokenized as one string."""
    text = tok.apply_chat_template(messages, chat_template=template, tokenize=False, add_generation_prompt=True)
    parts = text.split("<|image_pad|>")
    assert len(parts) - 1 == len(image_tokens)
    text = parts[0] + "".join("<|image_pad|>" * n + p for n, p in zip(image_tokens, parts[1:])) + suffix
    return text, tok(text, add_special_tokens=False).input_ids


def reference_messages(kind, language, text):
    """The reference scripts' conversation (2.2), independent of our request builders."""
    if kind == "generation":
        content = GENERATION_TEXT[language].format(text)
    else:
        content = (text if "<image>" in text else "<image> " + text).replace("<image>", VISION)
    return [{"role": "user", "content": [{"type": "text", "text": content}]}]


def our_request(ar, case, fixture_dir):
    from nexus_core.ar import editing_request, generation_request

    kind, language, text, image = CASES[case]
    if kind == "generation":
        return generation_request(text, language)
    return editing_request(ar, image_for(image, fixture_dir), text, language)


def test_special_ids_as_nexus_ar_reads_them(real_vocab_ar, hf_tokenizer):
    ar = real_vocab_ar
    for token, i in REAL_IDS.items():
        assert hf_tokenizer.convert_tokens_to_ids(token) == i, token
        assert ar.tokenizer.convert_tokens_to_ids(token) == i, token
    t = ar.tokens
    assert (t.image_pad, t.vision_start, t.vision_end, t.eos, t.pad) == (151655, 151652, 151653, (151645, 151643),
                                                                          151643)
    cfg = ar.model.config
    assert (cfg.image_token_id, cfg.vision_start_token_id, cfg.vision_end_token_id) == (151655, 151652, 151653)
    assert cfg.text_config.vocab_size == REAL_VOCAB
    assert ar.model.lm_head.weight.shape[0] == ar.language_model.embed_tokens.weight.shape[0] == REAL_VOCAB
    assert 151665 <= len(hf_tokenizer) < REAL_VOCAB  # 151643 BPE tokens + added tokens; the rest is padding rows
    assert (hf_tokenizer.eos_token, hf_tokenizer.pad_token) == ("<|im_end|>", "<|endoftext|>")


@pytest.mark.parametrize("case", list(CASES))
def test_prompt_ids_match_transformers(real_vocab_ar, hf_tokenizer, template, fixture_dir, case):
    """The ids predict() feeds (formatter.encode of the request, image pads expanded) equal transformers' rendering
    of the reference conversation; the shown text equals transformers' text."""
    ar = real_vocab_ar
    kind, language, text, image = CASES[case]
    req = our_request(ar, case, fixture_dir)
    counts = req.token_counts(ar.merge)
    if image is not None:
        assert req.grids == [GRIDS[image][0]] and counts == [GRIDS[image][1]]
    ids, shown = ar.formatter.encode(req.messages, counts)
    hf_text, hf_ids = hf_prompt(hf_tokenizer, template, reference_messages(kind, language, text), counts)
    assert shown == hf_text
    assert ids == hf_ids
    assert hf_ids[:3] == [151644, 8948, 198]  # <|im_start|> system \n
    assert hf_ids[-3:] == [151644, 77091, 198]  # <|im_start|> assistant \n
    assert hf_ids.count(151655) == sum(counts)


@pytest.mark.parametrize("with_image", [True, False])
def test_understanding_prompt_matches_transformers(real_vocab_ar, hf_tokenizer, template, fixture_dir, monkeypatch,
                                                   with_image):
    und = understand_module()

    seen = {}
    real_decode = und.decode

    def spy(ar, ids, pv, grids, opts):
        seen.update(ids=ids, grids=grids)
        return real_decode(ar, ids, pv, grids, opts)

    monkeypatch.setattr(und, "decode", spy)
    question = "Please give a brief description of the image." if with_image else "法国的首都是哪里？"
    image = image_for("fixture", fixture_dir) if with_image else None
    und.understand(real_vocab_ar, question, image, max_new_tokens=1)
    content = ([{"type": "image"}] if with_image else []) + [{"type": "text", "text": question}]
    messages = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": content}]
    _, hf_ids = hf_prompt(hf_tokenizer, template, messages, [20] if with_image else [])
    assert seen["grids"] == ([[1, 8, 10]] if with_image else [])
    assert seen["ids"] == hf_ids


def test_replies_decode_to_the_image_form(real_vocab_ar, hf_tokenizer):
    """batch_decode_all2all (1.2): the span becomes <image>, <|im_end|> is dropped."""
    from nexus_core.ar import all2all_text

    span = [151652] + [151655] * 81 + [151653]
    for reply in REPLY.values():
        ids = hf_tokenizer(reply, add_special_tokens=False).input_ids + span + [151645]
        assert all2all_text(real_vocab_ar.tokenizer, ids) == reply + "<image>"
    ids = hf_tokenizer("Here is an image based on the description: ", add_special_tokens=False).input_ids
    assert all2all_text(real_vocab_ar.tokenizer, ids + span + [151645]) == \
        "Here is an image based on the description: <image>"


@contextmanager
def designed_logits(ar, prompt_ids, pixels, grids, steps: list[dict[int, float]]):
    """lm_head rows set so that after prompt_ids + the first len(steps)-1 designed tokens (each step's largest), step i
    gives the logits steps[i] to its tokens and 0 to the other designed tokens (minimal-norm solve on the teacher-forced
    final-norm states; the remaining rows stay random, |logit| < 1). Hidden states do not depend on lm_head. Restored
    afterwards."""
    from nexus_core.ar.decoding import _prompt_embeds
    from nexus_core.ar.positions import prompt_positions

    fed = [max(step, key=step.get) for step in steps[:-1]]
    ids = torch.tensor([list(prompt_ids) + fed])
    with torch.no_grad():
        pos, _ = prompt_positions(ar, ids, list(grids))
        embeds = _prompt_embeds(ar, ids, pixels, list(grids))
        hidden = ar.language_model(inputs_embeds=embeds, position_ids=pos, use_cache=False).last_hidden_state
        h = hidden[0, len(prompt_ids) - 1:].double()
        tokens = sorted({t for step in steps for t in step})
        target = torch.zeros(len(steps), len(tokens), dtype=torch.float64)
        for i, step in enumerate(steps):
            for t, logit in step.items():
                target[i, tokens.index(t)] = logit
        rows = (torch.linalg.pinv(h) @ target).T
        weight = ar.model.lm_head.weight
        saved = weight[tokens].clone()
        weight[tokens] = rows.to(weight.dtype)
    try:
        yield
    finally:
        with torch.no_grad():
            weight[tokens] = saved


def designed_reply(ar, prompt_ids, pixels, grids, reply_ids, margin=10.0):
    """Greedy decoding after prompt_ids writes reply_ids."""
    return designed_logits(ar, prompt_ids, pixels, grids, [{t: margin} for t in reply_ids])


@pytest.fixture
def fast_ids(monkeypatch):
    """The id rows fast mode builds (it computes their positions with prompt_positions, imported at call time)."""
    import nexus_core.ar.positions as positions

    rows = []
    real = positions.prompt_positions

    def spy(ar, ids, grids):
        rows.append(ids[0].tolist())
        return real(ar, ids, grids)

    monkeypatch.setattr(positions, "prompt_positions", spy)
    return rows


@pytest.mark.parametrize("case", ["gen_en", "gen_zh", "edit_en", "edit_zh"])
def test_requests_end_to_end_on_the_real_vocabulary(real_vocab_ar, hf_tokenizer, template, fixture_dir, fast_ids,
                                                    case):
    from nexus_core.ar import predict

    ar = real_vocab_ar
    kind, language, text, image = CASES[case]
    req = our_request(ar, case, fixture_dir)
    counts = req.token_counts(ar.merge)
    _, hf_ids = hf_prompt(hf_tokenizer, template, reference_messages(kind, language, text), counts)
    reply = REPLY[(kind, language)]
    reply_ids = hf_tokenizer(reply, add_special_tokens=False).input_ids + [151652]
    with designed_reply(ar, hf_ids, req.pixels, req.grids, reply_ids):
        ref = predict(ar, [req], mode="reference", max_new_tokens=120, stop_after_image=True)
    out = ref.outputs[0]
    assert out.prompt_ids == hf_ids
    assert out.generated_ids == reply_ids + [151655] * 81 + [151653]
    assert not out.forced_image  # the model opened the image itself
    assert ref.texts == [reply + "<image>"]
    assert tuple(ref.embeddings.shape) == (1, 81, ar.hidden_size)
    first, last = out.image_positions[0].tolist(), out.image_positions[80].tolist()
    assert [b - a for a, b in zip(first, last)] == [0, 8, 8]  # the 9x9 grid (1.5)
    if kind == "generation":  # text-only prompt: <|vision_start|> sits at q = its index, token 0 at (q+1,)*3
        assert first == [len(hf_ids) + len(reply_ids)] * 3

    fast_ids.clear()
    fast = predict(ar, [req], mode="fast")
    _, hf_fast = hf_prompt(hf_tokenizer, template, reference_messages(kind, language, text), counts,
                           suffix=reply + "<|vision_start|>" + "<|image_pad|>" * 81 + "<|vision_end|>")
    assert fast_ids == [hf_fast]
    assert fast.texts == [reply + "<image>"]
    torch.testing.assert_close(fast.embeddings, ref.embeddings, atol=1e-5, rtol=1e-5)


def test_fast_batch_on_the_real_vocabulary(real_vocab_ar, fixture_dir):
    """Two prompts of different lengths in one fast forward (right-padded with <|endoftext|> 151643) give each
    prompt's own embeddings."""
    from nexus_core.ar import predict

    ar = real_vocab_ar
    reqs = [our_request(ar, c, fixture_dir) for c in ("gen_en", "gen_zh")]
    both = predict(ar, reqs, mode="fast")
    for i, r in enumerate(reqs):
        torch.testing.assert_close(both.embeddings[i:i + 1], predict(ar, [r], mode="fast").embeddings,
                                   atol=1e-5, rtol=1e-5)
    assert both.texts == [REPLY[("generation", "en")] + "<image>", REPLY[("generation", "zh")] + "<image>"]


@pytest.mark.parametrize("with_image", [True, False])
def test_understanding_end_to_end_on_the_real_vocabulary(real_vocab_ar, hf_tokenizer, template, fixture_dir,
                                                         monkeypatch, with_image):
    und = understand_module()

    ar = real_vocab_ar
    seen = {}
    real_decode = und.decode

    def spy(ar_, ids, pv, grids, opts):
        seen.update(ids=ids, pv=pv, grids=grids)
        return real_decode(ar_, ids, pv, grids, opts)

    monkeypatch.setattr(und, "decode", spy)
    image = image_for("fixture", fixture_dir) if with_image else None
    question = "" if with_image else "What is the capital of France?"  # empty: the default question (2.2)
    und.understand(ar, question, image, max_new_tokens=1)
    answer = "The image shows a red square and a blue circle." if with_image else "巴黎是法国的首都。"
    reply_ids = hf_tokenizer(answer, add_special_tokens=False).input_ids + [151645]
    with designed_reply(ar, seen["ids"], seen["pv"], seen["grids"], reply_ids):
        text = und.understand(ar, question, image, max_new_tokens=40)
    assert text == answer


def test_vision_end_is_masked_at_its_real_id(real_vocab_ar, hf_tokenizer):
    """Q8: <|vision_end|> (151653) is masked at every step. Its designed logit 10 beats "Here" (5): the model must still
    write "Here"."""
    from nexus_core.ar import DecodeOptions, decode, generation_request

    ar = real_vocab_ar
    ids, _ = ar.formatter.encode(generation_request("A red fox", "en").messages)
    here = hf_tokenizer("Here", add_special_tokens=False).input_ids[0]
    with designed_logits(ar, ids, None, [], [{151653: 10.0, here: 5.0}]):
        out = decode(ar, ids, opts=DecodeOptions(max_new_tokens=1))
    assert out.generated_ids == [here]
