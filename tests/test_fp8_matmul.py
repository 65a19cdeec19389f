"""The fp8 matrix multiply (nexus_core/memory/fp8_matmul.py, issue 33 item 4) and the fp8 embedding table (item 3).

torch runs torch._scaled_mm on the CPU too, so CI checks the arithmetic against an independent oracle (both operands
dequantized in float64 and multiplied); only a GPU shows the speed: test_on_a_gpu_... runs there (compute capability
8.9+) and prints both paths' times, and is skipped elsewhere with the reason."""
import time

import pytest
import torch

from graded_layers import graded_fp8
from nexus_core.memory import fp8_matmul
from nexus_core.memory.fp8 import ScaledFp8Embedding, store_embeddings_fp8


def layer(out_features, in_features, bias=True, dtype=torch.float8_e4m3fn, seed=0):
    return graded_fp8(out_features, in_features, bias, seed, dtype, scale=0.02, low=-1, high=1)


def inputs(*shape, seed=1, dtype=torch.bfloat16):
    x = torch.randn(*shape, generator=torch.Generator().manual_seed(seed))
    x[..., 0, :] *= 300  # one token far larger than the rest: per-token scales keep the others precise
    return x.to(dtype)


def oracle(x, m):
    """The product the kernel is asked for, in float64: x quantized per token as the path does it, the weight
    dequantized by its row scales, plus the bias (stored divided by the scales)."""
    rows = x.reshape(-1, x.shape[-1]).double()
    amax = rows.abs().amax(dim=1, keepdim=True)
    s = torch.where(amax > 0, amax / fp8_matmul.E4M3_MAX, torch.ones_like(amax))
    xq = (rows.float() / s.float()).to(torch.float8_e4m3fn).double() * s
    out = xq @ m.dequantized_weight().double().T
    if m.bias is not None:
        out = out + m.bias.double() * m.weight_scale.double()
    return out.reshape(*x.shape[:-1], -1)


@pytest.mark.parametrize("bias", [False, True])
def test_the_fp8_product_is_the_one_asked_for(bias):
    m = layer(64, 96, bias)
    x = inputs(3, 5, 96)
    got = fp8_matmul.scaled_fp8_linear(x, m.weight, m.weight_scale, m.bias)
    want = oracle(x, m)
    assert got.dtype == torch.bfloat16 and got.shape == want.shape
    # the bias is rounded to bf16 once, the sum once more: within two bf16 roundings of the terms' sizes
    size = want.abs() + (0 if m.bias is None else (m.bias.double() * m.weight_scale.double()).abs())
    assert ((got.double() - want).abs() <= 2 ** -7 * size + 1e-6).all()


def test_the_fp8_product_stays_close_to_the_cast_path():
    """Against the cast path (weights cast to bf16, activations not quantized): per-token input scales keep every
    token close, the huge one and the small ones alike."""
    m = layer(256, 512)
    x = inputs(4, 9, 512)
    cast = m(x)  # MATMUL_DEVICES is empty: the cast path
    fp8 = fp8_matmul.scaled_fp8_linear(x, m.weight, m.weight_scale, m.bias)
    cos = torch.nn.functional.cosine_similarity(cast.float(), fp8.float(), dim=-1)
    assert cos.min() > 0.998, cos.min()


def test_the_layer_multiplies_in_fp8_only_where_asked_and_able(monkeypatch):
    calls = []
    real = torch._scaled_mm
    monkeypatch.setattr(torch, "_scaled_mm", lambda *a, **k: calls.append(1) or real(*a, **k))
    x = inputs(2, 96)
    m = layer(64, 96)
    m(x)
    assert calls == []  # not asked: the cast path
    monkeypatch.setattr(fp8_matmul, "MATMUL_DEVICES", {"cpu"})
    torch.testing.assert_close(m(x), fp8_matmul.scaled_fp8_linear(x, m.weight, m.weight_scale, m.bias), rtol=0, atol=0)
    assert len(calls) == 2
    calls.clear()
    layer(64, 96, dtype=torch.float8_e5m2)(x)  # e5m2 weights: the row-wise kernels take e4m3
    layer(40, 96)(x)  # 40 rows: not a multiple of 16
    layer(64, 100)(torch.randn(2, 100).to(torch.bfloat16))  # 100 columns: neither
    m(x.float())  # float32 input: the row-wise kernels give bf16
    assert calls == []


def test_cards_without_fp8_tensor_cores_are_not_asked():
    assert not fp8_matmul.device_can(torch.device("meta"))
    if torch.cuda.is_available():
        cap = torch.cuda.get_device_capability(0)
        assert fp8_matmul.device_can(torch.device("cuda", 0)) == (cap >= (8, 9))


@pytest.mark.skipif(not (torch.cuda.is_available() and torch.cuda.get_device_capability(0) >= (8, 9)),
                    reason="needs a CUDA card with fp8 tensor cores (compute capability 8.9+: Ada, Hopper)")
def test_on_a_gpu_the_fp8_product_is_used_close_and_timed(monkeypatch, capsys):
    """The AR's MLP shape (3,584 -> 18,944) at 512 tokens: the fp8 path runs on the card, agrees with the cast
    path, and both are timed (printed, not asserted: a timing is not a test)."""
    dev = torch.device("cuda", 0)
    m = layer(18944, 3584, bias=False).to(dev)
    m.weight_scale = m.weight_scale.to(dev)
    x = (torch.randn(512, 3584, device=dev) * 0.5).to(torch.bfloat16)

    def timed(fn, n=20):
        fn()
        torch.cuda.synchronize()
        t = time.perf_counter()
        for _ in range(n):
            out = fn()
        torch.cuda.synchronize()
        return out, (time.perf_counter() - t) / n

    cast, t_cast = timed(lambda: m(x))
    monkeypatch.setattr(fp8_matmul, "MATMUL_DEVICES", {"cuda"})
    fp8, t_fp8 = timed(lambda: m(x))
    cos = torch.nn.functional.cosine_similarity(cast.float(), fp8.float(), dim=-1)
    with capsys.disabled():
        print(f"\n{torch.cuda.get_device_name(0)}: cast path {t_cast * 1e3:.3f} ms, fp8 matmul {t_fp8 * 1e3:.3f} ms "
              f"({t_cast / t_fp8:.2f}x), min cosine {cos.min().item():.5f}")
    assert cos.min() > 0.998


def test_an_fp8_table_looks_up_the_rows_it_stores():
    g = torch.Generator().manual_seed(3)
    table = torch.nn.Embedding(500, 64)
    with torch.no_grad():
        table.weight.copy_(torch.randn(500, 64, generator=g) * torch.logspace(-3, 0, 500)[:, None])
    root = torch.nn.ModuleDict({"emb": table})
    assert store_embeddings_fp8(root, torch.float8_e4m3fn, torch.bfloat16) == 1
    fp8 = root["emb"]
    assert isinstance(fp8, ScaledFp8Embedding) and fp8.weight.dtype == torch.float8_e4m3fn
    ids = torch.tensor([[0, 499, 7], [250, 250, 3]])
    got = fp8(ids)
    want = (table.weight[ids].float())
    assert got.dtype == torch.bfloat16 and got.shape == (2, 3, 64)
    # each row within e4m3's rounding of its own largest value (scales are per row, so small rows stay precise)
    assert ((got.float() - want).abs() <= 2 ** -3 * want.abs().amax(-1, keepdim=True)).all()
    torch.testing.assert_close(got, fp8.dequantized_weight()[ids].to(torch.bfloat16), rtol=0, atol=0)
    assert fp8.num_embeddings == 500 and fp8.embedding_dim == 64


def test_a_tied_table_stays_as_it_is():
    emb = torch.nn.Embedding(50, 16)
    head = torch.nn.Linear(16, 50, bias=False)
    head.weight = emb.weight
    root = torch.nn.ModuleDict({"emb": emb, "head": head})
    assert store_embeddings_fp8(root, torch.float8_e4m3fn, torch.bfloat16) == 0


def test_the_command_line_options_reach_the_ar(tiny_root, monkeypatch, capsys):
    """--fp8-table turns the table into fp8 rows; --fp8-matmul asks for the fp8 product on CUDA and says when this
    device casts instead; an AR that is not fp8 is left as it is, with a message."""
    from argparse import Namespace

    from nexus_core.ar import load_ar
    from nexus_core.cli.decode import fp8_options

    monkeypatch.setattr(fp8_matmul, "MATMUL_DEVICES", set())
    both = Namespace(fp8_table=True, fp8_matmul=True)
    ar = load_ar(tiny_root / "Nexus-GenV2", "cpu", "bfloat16", weight_dtype="fp8_e4m3fn")
    fp8_options(ar, both)
    table = ar.language_model.embed_tokens
    assert isinstance(table, ScaledFp8Embedding) and table.compute_dtype == torch.bfloat16
    assert fp8_matmul.MATMUL_DEVICES == {"cuda"} and "casting instead" in capsys.readouterr().err
    plain = load_ar(tiny_root / "Nexus-GenV2", "cpu", "bfloat16")
    fp8_matmul.MATMUL_DEVICES.clear()
    fp8_options(plain, both)
    assert type(plain.language_model.embed_tokens) is torch.nn.Embedding and not fp8_matmul.MATMUL_DEVICES
    assert "need an fp8 AR" in capsys.readouterr().err


def test_the_command_line_asks_for_both(tiny_root, tmp_path, monkeypatch, capsys):
    from nexus_core.cli import main

    monkeypatch.setattr(fp8_matmul, "MATMUL_DEVICES", set())
    out = tmp_path / "e.safetensors"
    assert main(["embeds", "--prompt", "a red fox", "--model", str(tiny_root / "Nexus-GenV2"), "--ar-dtype", "fp8_e4m3fn",
                 "--fp8-table", "--fp8-matmul", "--out", str(out), "--device", "cpu", "--max-new-tokens", "90"]) == 0
    assert out.is_file() and "casting instead" in capsys.readouterr().err  # the options reached the loaded AR
