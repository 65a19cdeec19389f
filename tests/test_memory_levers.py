"""The core's memory levers for GPU users without ComfyUI: fp8 AR weights (--ar-dtype) and layer-by-layer
streaming (--offload sequential). Streaming needs a GPU to save memory; on the CPU its hooks still run every
layer through them, so the outputs must be unchanged."""
import pytest
import torch

from nexus_core.ar import generation_request, load_ar, predict
from nexus_core.errors import NexusError
from nexus_core.memory.fp8 import ScaledFp8Linear, row_scales, store_linears_fp8
from nexus_core.memory.offload import check_mode, stream_layers


def test_row_scales_are_powers_of_two_that_fit_the_format():
    w = torch.randn(64, 32) * torch.logspace(-4, 1, 64)[:, None]
    w[3] = 0
    for dtype in (torch.float8_e4m3fn, torch.float8_e5m2):
        s = row_scales(w, dtype)
        assert torch.equal(torch.exp2(torch.log2(s).round()), s) and s[3] == 1
        q = w / s[:, None]
        assert q.abs().max() <= torch.finfo(dtype).max
        assert (q.abs().amax(1)[w.abs().amax(1) > 0] > torch.finfo(dtype).max / 2).all()  # range used


def test_scaled_fp8_linear_equals_linear_on_the_quantised_weight():
    """An independent oracle: F.linear with the dequantised weight and the original bias."""
    lin = torch.nn.Linear(48, 40)
    with torch.no_grad():
        lin.weight.mul_(0.02)
    q = ScaledFp8Linear.from_linear(lin, torch.float8_e4m3fn)
    x = torch.randn(5, 48)
    want = torch.nn.functional.linear(x, q.dequantized_weight(), lin.bias)
    torch.testing.assert_close(q(x), want, rtol=1e-6, atol=1e-6)
    rel = (q.dequantized_weight() - lin.weight).abs().max() / lin.weight.abs().max()
    assert 0 < rel < 2 ** -4  # e4m3 keeps 3 mantissa bits


def test_fp8_ar_is_half_the_bytes_and_close(tiny_root):
    a = load_ar(tiny_root / "Nexus-GenV2", "cpu", "float32")
    b = load_ar(tiny_root / "Nexus-GenV2", "cpu", "float32", weight_dtype="fp8_e4m3fn")
    assert not any(type(m) is torch.nn.Linear for m in b.model.modules())
    assert isinstance(b.vision_head, ScaledFp8Linear) and isinstance(b.model.lm_head, ScaledFp8Linear)
    req = [generation_request("a red fox")]
    ea, eb = predict(a, req, "fast").embeddings, predict(b, req, "fast").embeddings
    cos = torch.nn.functional.cosine_similarity(ea.flatten(), eb.flatten(), dim=0)
    assert 0.99 < cos < 1.0
    with pytest.raises(NexusError, match="Unknown weight dtype 'fp4'"):
        load_ar(tiny_root / "Nexus-GenV2", "cpu", "float32", weight_dtype="fp4")


def test_streamed_layers_compute_the_same(tiny_root):
    ar = load_ar(tiny_root / "Nexus-GenV2", "cpu", "float32")
    store_linears_fp8(ar.model, torch.float8_e4m3fn)  # streaming must carry the fp8 layers' scales too
    req = [generation_request("a red fox")]
    want = predict(ar, req, "reference", max_new_tokens=90).embeddings
    stream_layers(ar.model, "cpu")
    assert ar.model._nexus_streamed_to == torch.device("cpu")
    got = predict(ar, req, "reference", max_new_tokens=90).embeddings
    torch.testing.assert_close(got, want, rtol=0, atol=0)


def test_offload_modes():
    assert check_mode(True) == "model" and check_mode(False) == "none" and check_mode("sequential") == "sequential"
    with pytest.raises(NexusError, match="offload must be one of none, model, sequential"):
        check_mode("disk")


def test_cli_takes_the_levers(tiny_root, tmp_path):
    from nexus_core.cli import main

    out = tmp_path / "fox.png"
    assert main(["generate", "--model", str(tiny_root / "Nexus-GenV2"), "--flux", str(tiny_root / "FLUX.1-dev"),
                 "--prompt", "a fox", "--width", "64", "--height", "64", "--steps", "2", "--cfg", "1",
                 "--max-new-tokens", "100", "--device", "cpu", "--ar-dtype", "fp8_e4m3fn", "--offload", "sequential",
                 "--out", str(out)]) == 0
    assert out.is_file()
    with pytest.raises(SystemExit) as e:  # argparse refuses an unknown choice, naming the choices
        main(["generate", "--model", str(tiny_root / "Nexus-GenV2"), "--flux", str(tiny_root / "FLUX.1-dev"),
              "--prompt", "a fox", "--offload", "disk", "--out", str(tmp_path / "x.png")])
    assert e.value.code == 2


def test_streaming_moves_every_layer_in_for_its_forward_and_back_after(monkeypatch):
    """Every copy to the device is recorded (on the CPU a copy is otherwise invisible): each layer's own weights
    and buffers are copied in right before its forward and the CPU ones are back in place after it."""
    from nexus_core.memory import offload
    from nexus_core.decoder.projectors import RMSNorm

    copies = []
    monkeypatch.setattr(offload, "_to_device", lambda t, device: copies.append(t) or t.clone())
    model = torch.nn.Sequential(torch.nn.Linear(8, 8), RMSNorm(8), torch.nn.Sequential(torch.nn.Linear(8, 4)))
    model[0].register_buffer("extra", torch.ones(3))
    home = {v.data_ptr() for v in [*model.parameters(), *model.buffers()]}  # where the CPU copies live
    want = model(torch.ones(2, 8))
    stream_layers(model, "cpu")
    stream_layers(model, "cpu")  # idempotent: hooks are not stacked
    seen = {}
    for name, m in model.named_modules():
        if any(True for _ in m.parameters(recurse=False)):
            m.register_forward_pre_hook(lambda mod, a, name=name: seen.setdefault(name, sorted(
                k for k, t in [*mod.named_parameters(recurse=False), *mod.named_buffers(recurse=False)]
                if t.data_ptr() not in home)) and None)  # a pre-hook returning a value replaces args
    torch.testing.assert_close(model(torch.ones(2, 8)), want)
    assert seen == {"0": ["bias", "extra", "weight"], "1": ["weight"], "2.0": ["bias", "weight"]}
    assert len(copies) == 6
    assert {t.data_ptr() for t in [*model.parameters(), *model.buffers()]} == home


def test_fp8_storage_helpers():
    from nexus_core.memory.fp8 import can_hold_fp8, fp8_dtype

    assert fp8_dtype("default") is None and fp8_dtype(torch.float8_e5m2) is torch.float8_e5m2
    with pytest.raises(NexusError, match="is not an fp8 storage dtype"):
        fp8_dtype(torch.bfloat16)
    model = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.Sequential(torch.nn.Linear(4, 4)), torch.nn.ReLU())
    assert store_linears_fp8(model, torch.float8_e4m3fn) == 2 and store_linears_fp8(model, torch.float8_e4m3fn) == 0
    assert can_hold_fp8("cpu")
    if not torch.cuda.is_available():
        assert not can_hold_fp8("cuda:7")  # a device this torch cannot use


def test_on_device_modes_place_weights_as_named():
    """'none' moves the module and leaves it; 'sequential' leaves the weights in CPU memory and streams them."""
    from nexus_core.memory.offload import on_device

    a, b = torch.nn.Linear(4, 4), torch.nn.Linear(4, 4)
    with on_device([a], "meta", "none"):
        assert a.weight.device.type == "meta"
    assert a.weight.device.type == "meta"
    with on_device([b], "meta", "sequential"):
        assert b.weight.device.type == "cpu" and b._nexus_streamed_to == torch.device("meta")
    c = torch.nn.Linear(4, 4)
    with on_device([c], "cpu", "sequential"):  # on the CPU there is nothing to stream
        assert getattr(c, "_nexus_streamed_to", None) is None
