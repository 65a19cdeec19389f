"""Next-token choice against transformers' own logits processors and its own generate().

The golden fixture cannot pin these: its greedy margins are wide (7.45 logits after the penalty), so a broken
repetition penalty, temperature, top-k or top-p still reproduces every golden id. Here the oracles are
transformers' RepetitionPenaltyLogitsProcessor, TemperatureLogitsWarper, TopKLogitsWarper and TopPLogitsWarper
(in generate()'s order, see GenerationMixin._get_logits_processor) on random logits, and generate() itself on the
tiny random model, whose logits are close together so that every processor changes the ids.
"""
import pytest
import torch
from PIL import Image
from transformers import (LogitsProcessorList, RepetitionPenaltyLogitsProcessor, TemperatureLogitsWarper,
                          TopKLogitsWarper, TopPLogitsWarper)

from nexus_core.ar import DecodeOptions, decode, editing_request, generation_request
from nexus_core.ar.sampling import SamplingConfig, choose_token

V = 64


def oracle(cfg: SamplingConfig) -> LogitsProcessorList:
    """What generate() builds for these settings: the penalty always, the warpers only when sampling."""
    procs = LogitsProcessorList()
    if cfg.repetition_penalty != 1.0:
        procs.append(RepetitionPenaltyLogitsProcessor(cfg.repetition_penalty))
    if cfg.do_sample:
        if cfg.temperature != 1.0:
            procs.append(TemperatureLogitsWarper(cfg.temperature))
        if cfg.top_k != 0:
            procs.append(TopKLogitsWarper(cfg.top_k))
        if cfg.top_p < 1.0:
            procs.append(TopPLogitsWarper(cfg.top_p))
    return procs


def random_case(g: torch.Generator, all_negative: bool = False):
    scores = torch.randn(V, generator=g) * 3
    if all_negative:
        scores = -scores.abs() - 0.1
    # a history with repeats, covering top tokens and negative-logit tokens alike
    history = torch.cat([torch.randint(0, V, (12,), generator=g), scores.topk(3).indices, scores.topk(2).indices])
    return scores, history


@pytest.fixture
def multinomial_spy(monkeypatch):
    """Records the probabilities choose_token draws from (and still draws, with the caller's generator)."""
    seen = []
    real = torch.multinomial

    def spy(probs, *a, **kw):
        seen.append(probs.detach().clone())
        return real(probs, *a, **kw)

    monkeypatch.setattr(torch, "multinomial", spy)
    return seen


def _cfg(p=1.0, t=1.0, k=0, tp=1.0):
    return dict(repetition_penalty=p, temperature=t, top_k=k, top_p=tp)


CONFIGS = [_cfg(), _cfg(p=1.3), _cfg(p=0.8), _cfg(t=0.1), _cfg(t=1.6), _cfg(k=1), _cfg(k=5), _cfg(k=V + 10),
           _cfg(tp=0.9), _cfg(tp=0.5), _cfg(tp=0.001), _cfg(1.05, 0.7, 5, 0.9), _cfg(1.5, 1.6, 50, 0.5),
           _cfg(1.05, 0.1, 1, 0.001),  # Qwen2.5-VL's generation_config.json
           _cfg(0.8, 0.7, 0, 0.9), _cfg(1.3, 2.0, 20, 0.95)]


@pytest.mark.parametrize("kw", CONFIGS, ids=lambda kw: "p{repetition_penalty}-t{temperature}-k{top_k}-tp{top_p}"
                         .format(**kw))
def test_sampling_distribution_equals_transformers_processors(multinomial_spy, kw):
    cfg = SamplingConfig(do_sample=True, **kw)
    procs = oracle(cfg)
    g = torch.Generator().manual_seed(CONFIGS.index(kw))
    for trial in range(12):
        scores, history = random_case(g, all_negative=trial % 3 == 0)
        want = procs(history.unsqueeze(0), scores.unsqueeze(0).clone())[0]
        seed = int(torch.randint(0, 2**31, (1,), generator=g))
        tok = choose_token(scores.clone(), history, cfg, torch.Generator().manual_seed(seed))
        probs = multinomial_spy[-1].reshape(-1)
        want_probs = want.softmax(-1)
        assert torch.equal(probs == 0, want_probs == 0), f"kept tokens differ (trial {trial})"
        torch.testing.assert_close(probs, want_probs, atol=1e-6, rtol=1e-5)
        assert tok == int(torch.multinomial(want_probs, 1, generator=torch.Generator().manual_seed(seed)))


@pytest.mark.parametrize("penalty", [1.0, 1.05, 1.3, 2.0, 0.7])
def test_greedy_choice_equals_transformers_penalty_then_argmax(penalty):
    """Greedy: only the repetition penalty applies (temperature/top-k/top-p are sampling warpers)."""
    cfg = SamplingConfig(do_sample=False, repetition_penalty=penalty, temperature=0.3, top_k=2, top_p=0.5)
    procs = oracle(cfg)
    g = torch.Generator().manual_seed(1)
    changed = 0
    for trial in range(200):
        scores = torch.randn(V, generator=g) * 0.3  # close logits: the penalty decides often
        scores = -scores.abs() if trial % 2 else scores
        history = torch.randint(0, V, (24,), generator=g)
        want = int(procs(history.unsqueeze(0), scores.unsqueeze(0).clone())[0].argmax())
        assert choose_token(scores.clone(), history, cfg) == want, trial
        changed += want != int(scores.argmax())
    if penalty != 1.0:
        assert changed >= 5  # cases where the penalty decides


def test_choose_token_leaves_its_inputs_alone():
    scores, history = random_case(torch.Generator().manual_seed(2))
    before = scores.clone()
    choose_token(scores, history, SamplingConfig(do_sample=True, repetition_penalty=1.3, temperature=0.5, top_k=5,
                                                top_p=0.8), torch.Generator().manual_seed(0))
    assert torch.equal(scores, before)


def _generate(ar, ids, max_new, penalty, **model_kw):
    """transformers' own greedy generate() with the reference's <|vision_end|> mask (Q8) as suppress_tokens."""
    t = torch.tensor([ids])
    out = ar.model.generate(t, attention_mask=torch.ones_like(t), max_new_tokens=max_new, do_sample=False,
                            repetition_penalty=penalty, suppress_tokens=[ar.tokens.vision_end], use_cache=True,
                            eos_token_id=list(ar.tokens.eos), pad_token_id=ar.tokens.pad, temperature=None,
                            top_p=None, top_k=None, **model_kw)
    return out[0, len(ids):].tolist()


@pytest.fixture
def no_vision_start(tiny_ar):
    """The tiny random model must not open an image span here (generate() knows nothing of the span)."""
    def hook(module, args, out):
        out = out.clone()
        out[..., tiny_ar.tokens.vision_start] = -1e4
        return out

    h = tiny_ar.model.lm_head.register_forward_hook(hook)
    yield
    h.remove()


@pytest.mark.parametrize("penalty", [1.0, 1.05, 1.3])
def test_greedy_decode_equals_transformers_generate(tiny_ar, no_vision_start, penalty):
    """The whole loop (KV cache, 1-D text positions, penalty over prompt + reply) against generate()."""
    ids, _ = tiny_ar.formatter.encode(generation_request("a cat on a mat").messages)
    cfg = tiny_ar.sampling.override(do_sample=False, repetition_penalty=penalty)
    ours = decode(tiny_ar, ids, opts=DecodeOptions(sampling=cfg, max_new_tokens=24)).generated_ids
    assert ours == _generate(tiny_ar, ids, 24, penalty)
    if penalty == 1.3:
        plain = decode(tiny_ar, ids, opts=DecodeOptions(sampling=cfg.override(repetition_penalty=1.0),
                                                        max_new_tokens=24)).generated_ids
        assert plain != ours  # the penalty decides tokens on this model


def test_greedy_decode_with_an_input_image_equals_transformers_generate(tiny_ar, no_vision_start):
    """An input image makes the text positions after the prompt `index + rope_delta` with rope_delta < 0."""
    img = Image.fromarray((torch.arange(84 * 112 * 3) % 251).reshape(84, 112, 3).to(torch.uint8).numpy())
    req = editing_request(tiny_ar, img, "make the sky purple")
    ids, _ = tiny_ar.formatter.encode(req.messages, req.token_counts(tiny_ar.merge))
    cfg = tiny_ar.sampling.override(do_sample=False, repetition_penalty=1.05)
    ours = decode(tiny_ar, ids, req.pixels, req.grids, DecodeOptions(sampling=cfg, max_new_tokens=16)).generated_ids
    mm = (torch.tensor([ids]) == tiny_ar.tokens.image_pad).int()
    theirs = _generate(tiny_ar, ids, 16, 1.05, pixel_values=req.pixels, image_grid_thw=torch.tensor(req.grids),
                       mm_token_type_ids=mm)
    assert ours == theirs


def test_sampling_defaults_are_transformers_generation_defaults():
    """What a generation_config leaves unset falls back to transformers' own GenerationConfig defaults."""
    from transformers import GenerationConfig
    names = ("do_sample", "temperature", "top_k", "top_p", "repetition_penalty")
    if hasattr(GenerationConfig, "_get_default_generation_params"):  # 5.x: unset fields are None until generate()
        ref = GenerationConfig._get_default_generation_params()
    else:  # 4.x: the defaults are the instance's attributes
        ref = vars(GenerationConfig())
    ours = SamplingConfig()
    assert tuple(getattr(ours, k) for k in names) == tuple(ref[k] for k in names)
    assert SamplingConfig.from_generation_config({}) == ours
