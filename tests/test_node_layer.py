"""The node layer's logic, in CI without ComfyUI: what the conditioning carries, the editing ids the MODEL's wrapper
applies at any latent size, the flow shift the MODEL samples with, the scheduler node's sigmas, prompt batches, and
the native-CLIP route's requests to the host. Oracles: the golden data and the reference's formulas written out
here; ComfyUI's own formula transcribed. The real-host tests stay the end-to-end truth."""
import importlib.util
import math
import sys
import types
from pathlib import Path

import pytest
import torch

from nexus_core.embeddings.conditioning import (COMFY_FLUX_MU, GRIDS_KEY, grids_tensor, ids_for_latent, place_ids,
                                           positive, scheduler_sigmas, split_prompts)
from nexus_core.decoder.schedule import sigmas

REPO = Path(__file__).resolve().parents[1]


def reference_edit_ids(h_px: int, w_px: int, with_ref: bool = True) -> torch.Tensor:
    """The reference's editing txt_ids (spec 4.3), written out: target (i, j) -> (0, i*H8/18, j*W8/18) on the 9x9
    grid, reference (i, j) -> (1, i*H8/36, j*W8/36) on the 18x18 grid, H8 = height / 8."""
    h8, w8 = h_px // 8, w_px // 8
    rows = [(0.0, i * h8 / 18, j * w8 / 18) for i in range(9) for j in range(9)]
    if with_ref:
        rows += [(1.0, i * h8 / 36, j * w8 / 36) for i in range(18) for j in range(18)]
    return torch.tensor(rows, dtype=torch.float32)


def test_editing_ids_equal_the_golden_ones(golden):
    g = golden("decode_edit_en_editdec")
    h8, w8 = g["final_latents"].shape[-2:]  # 128 x 96 px
    ids = ids_for_latent(grids_tensor((1, 18, 18), (1, 36, 36)), h8, w8)
    torch.testing.assert_close(ids, g["dit_input_posi_text_ids"][0], rtol=0, atol=0)


@pytest.mark.parametrize("h8,w8", [(64, 64), (64, 96), (96, 64), (96, 144), (128, 72)])
@pytest.mark.parametrize("with_ref", [True, False])
def test_editing_ids_follow_the_latent_size(h8, w8, with_ref):
    """Square, non-square and upscaled latents (e.g. a second pass at 1.5x) get the reference's ids for their size."""
    grids = grids_tensor((1, 18, 18), (1, 36, 36) if with_ref else None)
    assert grids.shape == (1, 2, 3)
    torch.testing.assert_close(ids_for_latent(grids, h8, w8), reference_edit_ids(h8 * 8, w8 * 8, with_ref))


def test_place_ids_keeps_other_tokens_at_zero():
    ids = reference_edit_ids(512, 512)
    txt = torch.zeros(2, 405 + 7, 3)  # a batch of 2, and 7 tokens another node appended
    out = place_ids(txt, ids)
    assert torch.equal(out[:, :405], ids.expand(2, -1, -1)) and not out[:, 405:].any() and not txt.any()
    short = place_ids(torch.zeros(1, 81, 3), ids)  # a context cut to the target only keeps the target ids
    assert torch.equal(short[0], ids[:81])


def test_positive_carries_what_comfyui_reads(fixture_dir, fixture_ar, golden):
    from nexus_core.decoder import load_decoder

    dec = load_decoder(fixture_dir / "nexus" / "edit_decoder.bin", fixture_ar.checkpoint.config)
    g = golden("decode_edit_en_editdec")
    pooled = g["dit_input_posi_pooled_prompt_emb"]
    ctx, cond, grids = positive("editing", dec.projector, g["input_image_embeddings"], g["ref_embeddings"], pooled,
                                3.5)
    assert set(cond) == {"pooled_output", "guidance"} and cond["guidance"] == 3.5
    assert ctx.dtype == torch.float32 and cond["pooled_output"].shape == (1, pooled.shape[-1])
    torch.testing.assert_close(ctx, g["merger_output"], atol=1e-4, rtol=1e-4)
    assert grids.tolist() == [[[1, 18, 18], [1, 36, 36]]] and GRIDS_KEY == "nexus_edit_grids"
    ctx2, cond2, grids2 = positive("editing", dec.projector, g["input_image_embeddings"].expand(3, -1, -1),
                                   g["ref_embeddings"], pooled, 2.0, use_reference=False)
    assert ctx2.shape[:2] == (3, 81) and cond2["pooled_output"].shape[0] == 3  # pooled follows the batch
    assert grids2.tolist() == [[[1, 18, 18], [0, 0, 0]]]


def test_generation_positive_has_no_grids(fixture_dir, fixture_ar, golden):
    from nexus_core.decoder import load_decoder

    dec = load_decoder(fixture_dir / "nexus" / "generation_decoder.bin", fixture_ar.checkpoint.config)
    g = golden("decode_gen_en_gendec_cfg3")
    ctx, cond, grids = positive("generation", dec.projector, g["input_image_embeddings"], None,
                                g["dit_input_posi_pooled_prompt_emb"], 3.5)
    assert grids is None and set(cond) == {"pooled_output", "guidance"}
    torch.testing.assert_close(ctx, g["adapter_output"], atol=1e-4, rtol=1e-4)


def comfy_flux_time_shift(mu: float, sigma: float, t: torch.Tensor) -> torch.Tensor:
    """ComfyUI's ModelSamplingFlux shift (comfy/model_sampling.py, flux_time_shift), transcribed."""
    return math.exp(mu) / (math.exp(mu) + (1 / t - 1) ** sigma)


def test_the_models_flow_shift_is_the_references():
    t = torch.linspace(0.001, 1.0, 997, dtype=torch.float64)
    reference = 3 * t / (1 + 2 * t)  # DiffSynth's shift 3
    torch.testing.assert_close(comfy_flux_time_shift(COMFY_FLUX_MU, 1.0, t), reference)
    assert not torch.allclose(comfy_flux_time_shift(1.15, 1.0, t), reference)  # FLUX's default shift differs


def test_scheduler_sigmas_equal_the_golden_ones_then_zero(golden):
    want = golden("decode_gen_en_gendec_cfg3")["sigmas"]
    got = scheduler_sigmas(len(want))
    assert got.shape == (len(want) + 1,) and got[-1] == 0
    torch.testing.assert_close(got[:-1], want, rtol=0, atol=0)
    half = scheduler_sigmas(8, denoise=0.5)
    assert half[0] < 0.76 and torch.equal(half[:-1], sigmas(8, 3.0, 0.5))


@pytest.mark.parametrize("text,per_line,want", [
    ("a cat", False, ["a cat"]),
    ("a cat\n\n  a dog  \n", True, ["a cat", "a dog"]),
    ("a cat\na dog", False, ["a cat\na dog"]),
    ("   \n ", True, ["   \n "]),  # nothing but blanks: one prompt (the empty-prompt check then refuses it)
])
def test_split_prompts(text, per_line, want):
    assert split_prompts(text, per_line) == want


@pytest.fixture(scope="module")
def text_source():
    """nodes/host/text_source.py imported without ComfyUI: a package stand-in for the pack whose `nodes` package
    does not run its __init__ (which needs ComfyUI)."""
    pack = types.ModuleType("nexus_pack_ci")
    pack.__path__ = [str(REPO)]
    nodes_pkg = types.ModuleType("nexus_pack_ci.nodes")
    nodes_pkg.__path__ = [str(REPO / "nodes")]
    host_pkg = types.ModuleType("nexus_pack_ci.nodes.host")
    host_pkg.__path__ = [str(REPO / "nodes" / "host")]
    sys.modules.setdefault("nexus_pack_ci", pack)
    sys.modules.setdefault("nexus_pack_ci.nodes", nodes_pkg)
    sys.modules.setdefault("nexus_pack_ci.nodes.host", host_pkg)
    spec = importlib.util.spec_from_file_location("nexus_pack_ci.nodes.host.text_source",
                                                  REPO / "nodes" / "host" / "text_source.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


class FakeClip:
    """Records what the node asks ComfyUI's CLIP for."""

    def __init__(self, with_t5=True):
        self.with_t5, self.calls = with_t5, []

    def tokenize(self, text, **kw):
        self.calls.append(("tokenize", text, kw))
        return {"l": [text], **({"t5xxl": [text]} if self.with_t5 else {})}

    def encode_from_tokens(self, tokens, return_pooled=False):
        self.calls.append(("encode", return_pooled))
        return torch.zeros(1, 512, 8), torch.ones(1, 768)


def test_native_clip_route_asks_for_the_references_choices(text_source):
    clip = FakeClip()
    assert text_source.pooled_empty(clip).shape == (1, 768)
    text_source.pooled_empty(clip)  # cached per CLIP: encoded once
    assert [c for c in clip.calls if c[0] == "encode"] == [("encode", "unprojected")]
    assert clip.calls[0] == ("tokenize", "", {"tokenizer_options": {"t5xxl_min_length": 512}})
    ctx, pooled = text_source.negative(clip, "blurry")
    assert ctx.shape == (1, 512, 8) and clip.calls[-2][2]["tokenizer_options"]["t5xxl_min_length"] == 512
    with pytest.raises(text_source.NexusError, match="needs T5-XXL: load the CLIP with DualCLIPLoader"):
        text_source.negative(FakeClip(with_t5=False), "blurry")


def test_exactly_one_text_source(text_source):
    # the pack's own copy of the core (as inside ComfyUI) has its own NexusError class
    with pytest.raises(text_source.NexusError, match="connect exactly one of text_encoders"):
        text_source.pick(None, None, "Nexus-Gen Conditioning")
    with pytest.raises(text_source.NexusError, match="connect exactly one"):
        text_source.pick(object(), FakeClip(), "Nexus-Gen Conditioning")
