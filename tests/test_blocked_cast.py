"""A large fp8 Linear (the output head: 152,064 x 3,584, 1.1 GB once cast to bf16) is computed a block of output
rows at a time, so a forward never holds the whole cast weight (issue 33, item 2). The oracle is the same layer
computed whole: bit for bit in bfloat16, and in float32 within the bound of a different summation order (BLAS
may sum a block's dot products in another order: each output within 2 K eps of the sum of its terms' sizes). The thresholds are made small so the tiny and narrow layers take the path."""
import pytest
import torch

from nexus_core.memory import fp8
from graded_layers import graded_fp8, within_summation_bound


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32])
@pytest.mark.parametrize("bias", [False, True])
@pytest.mark.parametrize("block_rows", [1, 37, 250, 999, 1000])
def test_blocked_output_rows_equal_the_whole_layer(monkeypatch, dtype, bias, block_rows):
    m = graded_fp8(1000, 96, bias)
    x = torch.randn(2, 5, 96, generator=torch.Generator().manual_seed(1)).to(dtype)
    whole = m(x)
    monkeypatch.setattr(fp8, "CAST_WHOLE_UP_TO", 0)
    monkeypatch.setattr(fp8, "CAST_BLOCK_BYTES", 96 * x.element_size() * block_rows)
    blocked = m(x)
    assert blocked.shape == whole.shape and blocked.dtype == whole.dtype
    if dtype == torch.bfloat16:
        assert torch.equal(blocked, whole)
    else:  # another summation order: each output within 2 K eps of the sum of its terms' magnitudes
        assert within_summation_bound(blocked, whole, x, m.dequantized_weight())


def test_the_ar_gives_the_same_logits_and_embeddings_with_blocked_layers(tiny_ar, monkeypatch):
    """Every fp8 Linear of a tiny AR (its output head too) blocked: the same next-token logits and image
    embeddings, bit for bit in bfloat16."""
    from nexus_core.ar import generation_request, load_ar, predict

    ar = load_ar(tiny_ar.checkpoint.folder, "cpu", "bfloat16", weight_dtype="fp8_e4m3fn")
    req = [generation_request("a red fox in the snow", "en")]
    hidden = torch.randn(ar.hidden_size, generator=torch.Generator().manual_seed(2)).to(torch.bfloat16)
    whole = (ar.logits(hidden), predict(ar, req, "fast").embeddings)
    monkeypatch.setattr(fp8, "CAST_WHOLE_UP_TO", 0)
    monkeypatch.setattr(fp8, "CAST_BLOCK_BYTES", ar.hidden_size * 2 * 7)  # 7 rows a block
    blocked = (ar.logits(hidden), predict(ar, req, "fast").embeddings)
    assert torch.equal(whole[0], blocked[0]) and torch.equal(whole[1], blocked[1])


def test_small_layers_stay_whole_and_the_head_is_blocked_at_full_size():
    """The thresholds at the real widths: the output head (152,064 x 3,584) and nothing of the decoder layers'
    size (18,944 x 3,584) is blocked in bf16; a block stays at most 64 MB."""
    head = 152_064 * 3_584 * 2
    mlp = 18_944 * 3_584 * 2
    assert head > fp8.CAST_WHOLE_UP_TO >= mlp
    rows = fp8.CAST_BLOCK_BYTES // (3_584 * 2)
    assert rows * 3_584 * 2 <= 64 << 20 and rows >= 1
