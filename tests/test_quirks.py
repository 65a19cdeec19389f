"""The reference's quirks that the golden fixture cannot pin, asserted directly on the tiny random model.

Q7: after the image span the reference continues 1-D, `index + rope_delta`, as if the 81 image tokens were
    text: <|vision_end|> at q + N + 1 when <|vision_start|> sits at q. The training layout (transformers'
    get_rope_index over the whole sequence) puts it at q + 1 + side. The fixture's replies end right after the
    span, so no golden token depends on it.
Q8: <|vision_end|> is masked at every step, even when its logit is the largest. The fixture never gives it a
    large logit, so the mask is never exercised there.

The model's logits are rigged through a forward hook on lm_head; the positions fed to the language model are
captured with a forward pre-hook, and compared with transformers' own Qwen2.5-VL get_rope_index (the oracle
the reference itself calls for the image span, and the training layout).
"""
import contextlib

import pytest
import torch
from PIL import Image

from nexus_core.ar import DecodeOptions, decode, editing_request, generation_request


@contextlib.contextmanager
def rigged_logits(ar, rig):
    """rig(call_index, logits) -> logits, applied to every lm_head output."""
    calls = []

    def hook(module, args, out):
        calls.append(None)
        return rig(len(calls) - 1, out.clone())

    h = ar.model.lm_head.register_forward_hook(hook)
    try:
        yield
    finally:
        h.remove()


@contextlib.contextmanager
def captured_positions(ar):
    """Yields a list that collects the position_ids (3, 1, L) of every language-model forward."""
    seen = []

    def pre(module, args, kwargs):
        seen.append(kwargs["position_ids"].detach().clone().cpu())

    h = ar.language_model.register_forward_pre_hook(pre, with_kwargs=True)
    try:
        yield seen
    finally:
        h.remove()


def rope_index(ar, ids: list[int], grids: list[list[int]]) -> tuple[torch.Tensor, int]:
    """transformers' get_rope_index (the training layout): positions (3, L) and the rope delta."""
    if not grids:
        return torch.arange(len(ids)).expand(3, -1), 0
    t = torch.tensor([ids])
    pos, delta = ar.model.model.get_rope_index(t, (t == ar.tokens.image_pad).int(),
                                               image_grid_thw=torch.tensor(grids))
    return pos[:, 0], int(delta.reshape(-1)[0])


def prompt_of(ar, kind: str):
    if kind == "text":
        return ar.formatter.encode(generation_request("a red fox").messages)[0], None, []
    img = Image.fromarray((torch.arange(84 * 112 * 3) % 251).reshape(84, 112, 3).to(torch.uint8).numpy())
    req = editing_request(ar, img, "make the sky purple")
    return ar.formatter.encode(req.messages, req.token_counts(ar.merge))[0], req.pixels, req.grids


# --- Q8 ---------------------------------------------------------------------------------------------------------

def _vision_end_on_top(ar):
    def rig(i, logits):
        logits[..., ar.tokens.vision_end] = logits.abs().max() + 100.0
        for e in ar.tokens.eos:  # keep the reply going
            logits[..., e] = -1e4
        return logits
    return rig


@pytest.mark.parametrize("sampling", [dict(do_sample=False),
                                      dict(do_sample=True, temperature=1.0, top_k=0, top_p=1.0),
                                      dict(do_sample=True, temperature=0.1, top_k=1, top_p=0.001)])
def test_vision_end_is_never_chosen_even_as_the_largest_logit(tiny_ar, sampling):
    ids, _, _ = prompt_of(tiny_ar, "text")
    cfg = tiny_ar.sampling.override(repetition_penalty=1.05, **sampling)
    with rigged_logits(tiny_ar, _vision_end_on_top(tiny_ar)):
        seq = torch.tensor([ids])
        top = tiny_ar.logits(tiny_ar.language_model(input_ids=seq).last_hidden_state[0, -1]).argmax()
        assert int(top) == tiny_ar.tokens.vision_end  # the rig works: unmasked, it would win
        out = decode(tiny_ar, ids, opts=DecodeOptions(sampling=cfg, seed=0, max_new_tokens=12))
    assert len(out.generated_ids) == 12
    assert tiny_ar.tokens.vision_end not in out.generated_ids


def test_vision_end_only_closes_the_span(tiny_ar):
    """With an image requested, <|vision_end|> appears exactly once: forced after the N slots, never chosen."""
    ids, _, _ = prompt_of(tiny_ar, "text")
    n, tk = tiny_ar.n_image_tokens, tiny_ar.tokens
    with rigged_logits(tiny_ar, _vision_end_on_top(tiny_ar)):
        out = decode(tiny_ar, ids, opts=DecodeOptions(want_image=True, max_new_tokens=n + 12))
    gen = out.generated_ids
    assert gen.count(tk.vision_end) == 1 and gen.count(tk.vision_start) == 1
    s = gen.index(tk.vision_start)
    assert gen[s + 1:s + 1 + n] == [tk.image_pad] * n and gen[s + 1 + n] == tk.vision_end


# --- Q7 ---------------------------------------------------------------------------------------------------------

def _open_image_first(ar):
    """The model opens the span at its first step and never stops by itself afterwards."""
    def rig(i, logits):
        if i == 0:
            logits[..., ar.tokens.vision_start] = logits.abs().max() + 100.0
        for e in ar.tokens.eos:
            logits[..., e] = -1e4
        return logits
    return rig


@pytest.mark.parametrize("span", ["single", "stepwise"])
@pytest.mark.parametrize("prompt", ["text", "image"])
@pytest.mark.parametrize("mode", ["reference", "training"])
def test_positions_after_the_image(tiny_ar, mode, prompt, span):
    ar, tk, n = tiny_ar, tiny_ar.tokens, tiny_ar.n_image_tokens
    side = round(n ** 0.5)
    ids, pixels, grids = prompt_of(ar, prompt)
    trailing = 6
    with rigged_logits(ar, _open_image_first(ar)), captured_positions(ar) as seen:
        out = decode(ar, ids, pixels, grids, DecodeOptions(want_image=True, max_new_tokens=n + 2 + trailing,
                                                           positions_after_image=mode, span=span))
    seq = ids + out.generated_ids
    assert out.generated_ids[0] == tk.vision_start and not out.forced_image
    fed = torch.cat([p[:, 0] for p in seen], dim=1)  # (3, tokens fed), in order
    assert fed.shape[1] in (len(seq) - 1, len(seq))  # the last token emitted may or may not be fed
    end = fed.shape[1]
    vs = len(ids)  # index of <|vision_start|>
    ve = vs + n + 1  # index of <|vision_end|>
    _, delta = rope_index(ar, ids, grids)
    q = vs + delta  # position of <|vision_start|> (1-D, like any text token)
    assert (fed[:, vs] == q).all()

    # The span itself is the same in both modes: the reference pads the sequence and calls get_rope_index.
    span_pos, _ = rope_index(ar, seq[:ve], list(grids) + [ar.image_grid])
    assert torch.equal(fed[:, :ve], span_pos[:, :ve])

    if mode == "reference":  # Q7: 1-D `index + delta` after the span, as if the image tokens were text
        assert (fed[:, ve] == q + n + 1).all()
        want_after = (torch.arange(ve, end) + delta).expand(3, -1)
    else:  # the training layout: transformers' get_rope_index over the whole sequence
        assert (fed[:, ve] == q + 1 + side).all()
        want_after = rope_index(ar, seq, list(grids) + [ar.image_grid])[0][:, ve:end]
    assert torch.equal(fed[:, ve:], want_after)
