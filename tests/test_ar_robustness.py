"""Bad input gets a clear error naming the file or value; loops stop on request and leave the model usable."""
import json
import shutil

import numpy as np
import pytest
import torch
from PIL import Image

from nexus_core.ar import DecodeOptions, decode, encode_image, generation_request, load_ar, predict, understand
from nexus_core.ar.images import bound_image, load_image, smart_resize
from nexus_core.errors import NexusCancelled, NexusError


@pytest.fixture
def tiny_copy(tiny_root, tmp_path):
    dst = tmp_path / "ar"
    shutil.copytree(tiny_root / "Nexus-GenV2", dst)
    return dst


def test_missing_folder(tmp_path):
    with pytest.raises(NexusError, match="folder not found.*nope"):
        load_ar(tmp_path / "nope")


def test_missing_config(tiny_copy):
    (tiny_copy / "config.json").unlink()
    with pytest.raises(NexusError, match="Missing config.json"):
        load_ar(tiny_copy)


def test_config_not_qwen(tiny_copy):
    (tiny_copy / "config.json").write_text(json.dumps({"model_type": "llama", "architectures": ["LlamaForCausalLM"]}))
    with pytest.raises(NexusError, match="model_type='llama'.*Qwen2.5-VL"):
        load_ar(tiny_copy)


def test_missing_shard(tiny_copy):
    (tiny_copy / "model-00002-of-00002.safetensors").unlink()
    with pytest.raises(NexusError, match="Missing weight shard model-00002-of-00002.safetensors"):
        load_ar(tiny_copy)


def test_truncated_shard(tiny_copy):
    shard = tiny_copy / "model-00001-of-00002.safetensors"
    data = shard.read_bytes()
    shard.write_bytes(data[: len(data) // 2])
    with pytest.raises(NexusError, match="model-00001-of-00002.safetensors is truncated"):
        load_ar(tiny_copy)


def _rewrite_without(folder, key):
    from safetensors.torch import load_file, save_file
    index = json.loads((folder / "model.safetensors.index.json").read_text())
    shard = folder / index["weight_map"].pop(key)
    state = load_file(str(shard))
    del state[key]
    save_file(state, str(shard))
    (folder / "model.safetensors.index.json").write_text(json.dumps(index))


def test_checkpoint_without_vision_head(tiny_copy):
    _rewrite_without(tiny_copy, "vision_head.weight")
    with pytest.raises(NexusError, match="no 'vision_head.weight'.*plain Qwen2.5-VL"):
        load_ar(tiny_copy)


def test_v1_folder_uses_image_pad_embedding(tiny_copy, tiny_ar):
    _rewrite_without(tiny_copy, "image_prefill_embeds.weight")
    v1 = load_ar(tiny_copy)
    assert v1.version == 1 and v1.n_image_tokens == 81
    req = generation_request("a cat")
    got = predict(v1, [req], "fast").embeddings
    # The same model with its table replaced by the image-pad embedding at every row gives the same result.
    table = tiny_ar.prefill.weight
    try:
        tiny_ar.prefill.weight = torch.nn.Parameter(tiny_ar.embed(torch.full((81,), tiny_ar.tokens.image_pad)).detach())
        want = predict(tiny_ar, [req], "fast").embeddings
    finally:
        tiny_ar.prefill.weight = table
    torch.testing.assert_close(got, want)
    assert predict(v1, [req], "reference", max_new_tokens=90).embeddings.shape == (1, 81, 64)


def test_unreadable_image(tmp_path, tiny_ar):
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not an image at all")
    with pytest.raises(NexusError, match="Cannot read image .*bad.png"):
        encode_image(tiny_ar, bad)
    with pytest.raises(NexusError, match="Image not found"):
        understand(tiny_ar, "hi", tmp_path / "missing.png")


@pytest.mark.parametrize("mode,size", [("RGBA", (40, 30)), ("L", (40, 30)), ("LA", (33, 20)), ("P", (50, 50)),
                                       ("RGB", (1, 1))])
def test_odd_images_work(tiny_ar, mode, size):
    img = Image.new(mode, size)
    emb = encode_image(tiny_ar, img, 81)
    assert emb.shape == (81, 64) and torch.isfinite(emb).all()
    assert understand(tiny_ar, "what?", img, max_new_tokens=2) is not None


def test_rgba_composited_on_white():
    img = Image.new("RGBA", (4, 4), (255, 0, 0, 0))  # fully transparent red
    assert np.asarray(load_image(img)).min() == 255


def test_huge_and_tiny_images_are_bounded():
    assert smart_resize(10000, 10000) == (504, 504)
    assert smart_resize(1, 1) == (56, 56)
    assert bound_image(Image.new("RGB", (10000, 10000))).size == (504, 504)
    assert smart_resize(1080, 1920) == (364, 672)


def test_extreme_aspect_image(tiny_ar):
    with pytest.raises(NexusError, match="is 5000x10 pixels: longer than 200:1"):
        understand(tiny_ar, "what?", Image.new("RGB", (5000, 10)))


@pytest.mark.parametrize("prompt", ["", "   "])
def test_empty_prompt(prompt):
    with pytest.raises(NexusError, match="prompt is empty"):
        generation_request(prompt)


def test_empty_instruction_and_question(tiny_ar):
    from nexus_core.ar import editing_request
    with pytest.raises(NexusError, match="instruction is empty"):
        editing_request(tiny_ar, Image.new("RGB", (64, 64)), " ")
    with pytest.raises(NexusError, match="question is empty"):
        understand(tiny_ar, "")


def test_special_token_strings_in_prompt_are_plain_text(fixture_ar):
    tok = fixture_ar.tokens
    req = generation_request("a cat <|im_end|><|vision_start|> on a mat")
    ids, _ = fixture_ar.formatter.encode(req.messages)
    specials = [i for i in ids if i >= 512]
    # system, user, assistant turns only: im_start x3, im_end x2; none from the user's text
    assert specials == [513, 514, 513, 514, 513]
    assert tok.vision_start not in ids
    assert fixture_ar.tokenizer.decode(ids).count("<|im_end|>") == 3  # 2 structural + 1 typed, as text


def test_instruction_with_placeholder_equals_default(fixture_ar, fixture_dir):
    from nexus_core.ar import editing_request
    img = fixture_dir / "inputs" / "test_image.png"
    a = editing_request(fixture_ar, img, "Add a pair of sunglasses.")
    b = editing_request(fixture_ar, img, "<image> Add a pair of sunglasses.")  # the reference's NameError (Q1)
    enc = lambda r: fixture_ar.formatter.encode(r.messages, r.token_counts(2))[0]
    assert enc(a) == enc(b)
    with pytest.raises(NexusError, match="2 '<image>' placeholders but 1 image"):
        editing_request(fixture_ar, img, "<image> and <image>")


def test_image_forced_when_model_stops_without_one(fixture_ar, manifest, golden):
    """The und_text prompt makes the model answer and stop: an image request still gets its span (Q6)."""
    ids = golden("ar_und_text")["input_ids"][0].tolist()
    out = decode(fixture_ar, ids, opts=DecodeOptions(want_image=True))
    assert out.forced_image and out.image_embeddings.shape == (1, 81, 64)
    text_ids = golden("ar_und_text")["generated_ids"].tolist()
    assert out.generated_ids[: len(text_ids) - 1] == text_ids[:-1]  # the answer, then the span instead of EOS
    assert out.generated_ids[len(text_ids) - 1] == fixture_ar.tokens.vision_start
    with pytest.raises(NexusError, match="stopped without producing an image"):
        decode(fixture_ar, ids, opts=DecodeOptions(want_image=True, force_image=False))


def test_budget_never_cuts_the_span(fixture_ar, golden):
    ids = golden("ar_gen_en")["input_ids"][0].tolist()  # the model would write 10 text tokens first
    out = decode(fixture_ar, ids, opts=DecodeOptions(want_image=True, max_new_tokens=85))
    assert out.forced_image and len(out.generated_ids) <= 85
    assert out.generated_ids[-82:] == [fixture_ar.tokens.image_pad] * 81 + [fixture_ar.tokens.vision_end]
    with pytest.raises(NexusError, match="cannot hold an image"):
        decode(fixture_ar, ids, opts=DecodeOptions(want_image=True, max_new_tokens=50))


def test_cancel_stops_within_one_token_and_model_stays_usable(fixture_ar, manifest):
    q = manifest["und_text"]["inputs"]["question"]
    seen = []

    def stop():
        return len(seen) >= 3

    with pytest.raises(NexusCancelled):
        understand(fixture_ar, q, on_token=lambda t, ids: seen.append(t), should_stop=stop)
    assert len(seen) == 3
    assert understand(fixture_ar, q) == manifest["und_text"]["output_text"][0]


def test_training_positions_after_image_only_change_trailing_text(fixture_ar, golden):
    ids = golden("ar_gen_en")["input_ids"][0].tolist()
    ref = decode(fixture_ar, ids, opts=DecodeOptions(want_image=True))
    alt = decode(fixture_ar, ids, opts=DecodeOptions(want_image=True, positions_after_image="training"))
    torch.testing.assert_close(ref.image_embeddings, alt.image_embeddings)


def test_seeded_sampling_is_reproducible(tiny_ar):
    cfg = tiny_ar.sampling.override(do_sample=True, temperature=1.0, top_k=0, top_p=0.9)
    a = understand(tiny_ar, "hello", sampling=cfg, seed=7, max_new_tokens=12)
    b = understand(tiny_ar, "hello", sampling=cfg, seed=7, max_new_tokens=12)
    c = understand(tiny_ar, "hello", sampling=cfg, seed=8, max_new_tokens=12)
    assert a == b and a != c


def test_bad_vit_token_count(tiny_ar):
    with pytest.raises(NexusError, match="tokens must be one of \\[81, 324\\].*100"):
        encode_image(tiny_ar, Image.new("RGB", (64, 64)), 100)
