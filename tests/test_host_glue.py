"""Code only a real host reaches (issue 29, class 7), in CI against small stand-ins for the host modules it calls
(tests/host_stand_in.py): the skipped-LoRA notice (counting, when it speaks, per prompt, only for prompts with
Nexus-Gen nodes), the cast layers (the fp8 row scale applied, every cast given back, also when the forward fails),
and the caches of the node layer after their keys change (issue 29, class 4). The real-host suite keeps the
end-to-end checks."""
import logging
import os
import sys
import types

import pytest
import torch
from safetensors.torch import save_file

import host_stand_in


@pytest.fixture(scope="module")
def host(tmp_path_factory):
    root = tmp_path_factory.mktemp("glue")
    (root / "models" / "loras").mkdir(parents=True)
    nodes, fp = host_stand_in.import_pack(root)
    yield nodes, fp, root
    host_stand_in.forget_pack()


class FakeServer:
    """PromptServer as the notice reads it: the executing node, the running prompts, the prompt's client."""

    def __init__(self, prompt_id, prompt, node_id, client_id="client-1"):
        self.last_node_id, self.client_id, self.events = node_id, client_id, []
        self.prompt_queue = types.SimpleNamespace(currently_running={0: (1, prompt_id, prompt, {}, [])})

    def send_progress_text(self, text, node_id, sid=None):
        self.events.append(("text", node_id, text, sid))

    def send_sync(self, event, data, sid=None):
        self.events.append((event, data["node"], data["text"], sid))


def lora_prompt(lora_name, with_nexus=True):
    prompt = {"5": {"class_type": "LoraLoaderModelOnly", "inputs": {"lora_name": lora_name, "strength_model": 1.0}}}
    if with_nexus:
        prompt["1"] = {"class_type": "NexusGenDecoderLoader", "inputs": {}}
    return prompt


def skipped(handler, keys):
    for k in keys:
        handler.emit(logging.LogRecord("root", logging.WARNING, __file__, 1, f"lora key not loaded: {k}", (), None))


def test_the_notice_counts_per_prompt_and_speaks_at_the_first_and_the_last_key(host):
    nodes, fp, root = host
    keys = [f"double_blocks.{i}.processor.qkv_lora1.down.weight" for i in range(3)]
    save_file({k: torch.zeros(1) for k in keys}, str(root / "models" / "loras" / "xl.safetensors"))
    handler = nodes.host.lora_notice.SkippedLoraKeys()
    server = FakeServer("p1", lora_prompt("xl.safetensors"), "5")
    sys.modules["server"].PromptServer.instance = server
    skipped(handler, keys[:1])
    assert [e[0] for e in server.events] == ["text"] and "the first: double_blocks.0" in server.events[0][2]
    skipped(handler, keys[1:2])
    assert len(server.events) == 1  # nothing new between the first and the last key
    skipped(handler, keys[2:])
    texts = [e for e in server.events if e[0] == "text"]
    toasts = [e for e in server.events if e[0] == "nexus-gen.notice"]
    assert "3 of 3 keys of xl.safetensors match nothing in the model" in texts[-1][2]
    assert len(toasts) == 1 and toasts[0][1] == "5" and toasts[0][3] == "client-1" and "convert-lora" in toasts[0][2]
    # the same workflow queued again: counted afresh for the new prompt, and said again
    server.prompt_queue.currently_running = {0: (2, "p2", lora_prompt("xl.safetensors"), {}, [])}
    skipped(handler, keys)
    assert len([e for e in server.events if e[0] == "nexus-gen.notice"]) == 2


def test_the_notice_is_silent_for_prompts_without_nexus_gen_and_for_other_lines(host):
    nodes, fp, root = host
    handler = nodes.host.lora_notice.SkippedLoraKeys()
    server = FakeServer("p3", lora_prompt("xl.safetensors", with_nexus=False), "5")
    sys.modules["server"].PromptServer.instance = server
    skipped(handler, ["double_blocks.0.processor.qkv_lora1.down.weight"] * 3)
    server.prompt_queue.currently_running = {0: (1, "p4", lora_prompt("xl.safetensors"), {}, [])}
    handler.emit(logging.LogRecord("root", logging.WARNING, __file__, 1, "loaded partially", (), None))
    assert server.events == []


def test_text_encoder_keys_get_their_own_notice(host):
    nodes, _, _ = host
    text = nodes.host.lora_notice.notice({"inputs": {"lora_name": "k.safetensors"}}, "lora_te1_text_model.x", 3, 10)
    assert "text-encoder (CLIP-L/T5) weights" in text and "DiT weights apply" in text


# --- cast layers ---------------------------------------------------------------------------------------------------

def test_the_fp8_cast_layer_applies_the_row_scale_and_gives_the_cast_back(host):
    from nexus_core.memory.fp8 import ScaledFp8Linear as CoreScaled

    nodes, _, _ = host
    cast_ops = nodes.host.cast_ops
    Scaled = sys.modules[f"{host_stand_in.PACK}.nexus_core.memory.fp8"].ScaledFp8Linear
    g = torch.Generator().manual_seed(0)
    linear = torch.nn.Linear(16, 6)
    with torch.no_grad():
        linear.weight.copy_(torch.randn(6, 16, generator=g) * torch.logspace(-2, 2, 6)[:, None])
    x = torch.randn(3, 16, generator=g)
    want = CoreScaled.from_linear(linear, torch.float8_e4m3fn)(x)  # the core's own fp8 layer
    layer = Scaled.from_linear(linear, torch.float8_e4m3fn)
    root = torch.nn.Sequential(layer)
    assert cast_ops.cast_on_demand(root) == []
    assert type(root[0]) is cast_ops.ScaledFp8CastLinear
    ops = sys.modules["comfy.ops"]
    ops.CASTS.clear()
    got = root[0](x)
    torch.testing.assert_close(got, want, rtol=0, atol=0)
    assert [c[0] for c in ops.CASTS] == ["cast", "uncast"]


def test_a_norm_gives_its_cast_back_when_its_forward_fails(host, monkeypatch):
    nodes, _, _ = host
    cast_ops = nodes.host.cast_ops

    class Qwen2RMSNorm(torch.nn.Module):  # transformers' shape of it: one weight, variance_epsilon
        def __init__(self):
            super().__init__()
            self.weight = torch.nn.Parameter(torch.ones(8) * 2)
            self.variance_epsilon = 1e-6

    root = torch.nn.Sequential(Qwen2RMSNorm())
    plain = root[0]
    assert cast_ops.cast_on_demand(root) == [] and isinstance(root[0], Qwen2RMSNorm)
    ops = sys.modules["comfy.ops"]
    ops.CASTS.clear()
    x = torch.randn(2, 3, 8)  # (batch, tokens, width): the mean runs over the last dimension only
    torch.testing.assert_close(root[0](x), 2 * x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-6))
    assert [c[0] for c in ops.CASTS] == ["cast", "uncast"]
    ops.CASTS.clear()
    monkeypatch.setattr(type(plain), "_norm", lambda self, x, w: (_ for _ in ()).throw(RuntimeError("out of memory")))
    with pytest.raises(RuntimeError, match="out of memory"):
        root[0](x)
    assert [c[0] for c in ops.CASTS] == ["cast", "uncast"]


def test_modules_with_weights_and_no_cast_class_are_named(host):
    nodes, _, _ = host

    class Odd(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.scale = torch.nn.Parameter(torch.ones(3))

    root = torch.nn.Sequential(torch.nn.Linear(2, 2), Odd())
    assert nodes.host.cast_ops.cast_on_demand(root) == ["1"]


# --- caches of the node layer after their keys change ------------------------------------------------------------

def _decoder_header_file(path, decoder: bool):
    save_file({("adapter.0.weight" if decoder else "unet.weight"): torch.zeros(4)}, str(path))


def test_a_rewrite_of_the_same_size_with_a_new_mtime_is_seen(host, tmp_path):
    nodes, _, _ = host
    paths = nodes.inputs.paths
    f = tmp_path / "x.safetensors"
    _decoder_header_file(f, True)
    size = f.stat().st_size
    os.utime(f, ns=(1_000_000_000, 1_000_000_000))
    assert paths.looks_like_decoder(str(f))
    _decoder_header_file(f, False)  # "unet.weight" and "adapter.0.weight" have the same length
    assert f.stat().st_size == size
    os.utime(f, ns=(2_000_000_000, 2_000_000_000))
    assert not paths.looks_like_decoder(str(f))


def test_decoder_lists_with_and_without_gguf_are_kept_apart(host, tmp_path):
    nodes, _, _ = host
    paths = nodes.inputs.paths
    root = tmp_path / "nexus_gen"
    root.mkdir()
    (root / "a_decoder.bin").write_bytes(b"")
    (root / "nexus_decoder-Q8_0.gguf").write_bytes(b"GGUF")
    listed = {"nexus_gen": ["a_decoder.bin", "nexus_decoder-Q8_0.gguf"], "diffusion_models": [], "unet_gguf": []}
    fp = types.SimpleNamespace(get_filename_list=lambda name: list(listed[name]),
                               get_full_path=lambda name, rel: str(root / rel) if name == "nexus_gen" else None)
    assert paths.decoder_files(fp) == ["a_decoder.bin"]
    assert paths.decoder_files(fp, gguf=True) == ["a_decoder.bin", "nexus_decoder-Q8_0.gguf"]
    assert paths.decoder_files(fp) == ["a_decoder.bin"]


def test_a_decoder_check_is_redone_when_the_file_changes(host, tmp_path, tiny_root):
    """The validation-time decoder check is remembered per (path, size, mtime): a file replaced by a damaged one
    (another size), or rewritten in place (another mtime), is checked again."""
    nodes, _, _ = host
    checks = nodes.inputs.checks
    good = (tiny_root / "Nexus-GenV2" / "generation_decoder.bin").read_bytes()
    f = tmp_path / "generation_decoder.bin"
    f.write_bytes(good)
    os.utime(f, ns=(1_000_000_000, 1_000_000_000))
    assert checks._decoder_problem(str(f)) is None
    f.write_bytes(good[: len(good) // 2])
    assert checks._decoder_problem(str(f)) is not None
    f.write_bytes(good)
    os.utime(f, ns=(3_000_000_000, 3_000_000_000))
    assert checks._decoder_problem(str(f)) is None


@pytest.mark.parametrize("weight_dtype", [None, "fp8_e4m3fn"])
def test_the_ar_under_cast_layers_casts_its_head_a_block_at_a_time(host, tiny_root, weight_dtype, monkeypatch):
    """ARHandle.wrap splits the output head and the input table before the host sees them: a head call casts each
    block in turn (never more than the block size once cast), a lookup only the block holding its id, every cast
    is given back, and the logits and image embeddings are the unsplit AR's, bit for bit in bfloat16. Thresholds
    made small so the tiny head and table take the path."""
    nodes, _, _ = host
    pack = host_stand_in.PACK
    core = sys.modules[f"{pack}.nexus_core.ar"]
    fp8 = sys.modules[f"{pack}.nexus_core.memory.fp8"]
    whole = core.load_ar(tiny_root / "Nexus-GenV2", "cpu", "bfloat16", weight_dtype=weight_dtype)
    ar = core.load_ar(tiny_root / "Nexus-GenV2", "cpu", "bfloat16", weight_dtype=weight_dtype)
    block = ar.hidden_size * 2 * 7  # 7 rows
    monkeypatch.setattr(fp8, "CAST_WHOLE_UP_TO", block)
    monkeypatch.setattr(fp8, "CAST_BLOCK_BYTES", block)
    nodes.host.ar_handle.ARHandle.wrap(ar)  # splits, then builds the host's patcher (a stand-in here)
    head = ar.model.lm_head
    assert type(head).__name__ == "RowBlocks" and all(getattr(b, "comfy_cast_weights", False) for b in head.blocks)
    ops = sys.modules["comfy.ops"]
    ops.CASTS.clear()
    hidden = torch.randn(ar.hidden_size, generator=torch.Generator().manual_seed(2)).to(torch.bfloat16)
    got = ar.logits(hidden)
    casts = [s for kind, s in ops.CASTS if kind == "cast"]
    assert len(casts) == len(head.blocks) and [k for k, _ in ops.CASTS].count("uncast") == len(casts)
    assert all(s.weight.numel() * 2 <= block for s in casts)
    assert torch.equal(got, whole.logits(hidden))
    table = ar.language_model.embed_tokens  # the input table too: a lookup casts the block holding its id alone
    assert type(table).__name__ == "RowBlockEmbedding" and all(b.comfy_cast_weights for b in table.blocks)
    ops.CASTS.clear()
    last = torch.tensor([table.num_embeddings - 1])
    assert torch.equal(ar.embed(last), whole.embed(last))
    assert [s for kind, s in ops.CASTS if kind == "cast"] == [table.blocks[-1]]
    assert [k for k, _ in ops.CASTS].count("uncast") == 1
    req = [core.generation_request("a red fox in the snow", "en")]
    assert torch.equal(core.predict(ar, req, "fast").embeddings, core.predict(whole, req, "fast").embeddings)


def test_the_fp8_cast_layer_multiplies_in_fp8_where_the_host_does(host, monkeypatch):
    """Where the host would multiply its own fp8 layers in fp8 (fp8 compute, --fast fp8_matrix_mult), the AR's fp8
    layer does too: the host fetches the weight still in fp8, the product is the core's fp8 product, and the cast
    is given back. A CPU is never such a device."""
    nodes, _, _ = host
    cast_ops = nodes.host.cast_ops
    pack = host_stand_in.PACK
    Scaled = sys.modules[f"{pack}.nexus_core.memory.fp8"].ScaledFp8Linear
    mm8 = sys.modules[f"{pack}.nexus_core.memory.fp8_matmul"]
    assert cast_ops.host_fp8_matmul(torch.device("cpu")) is False
    g = torch.Generator().manual_seed(4)
    linear = torch.nn.Linear(32, 48)
    with torch.no_grad():
        linear.weight.copy_(torch.randn(48, 32, generator=g) * 0.05)
    layer = Scaled.from_linear(linear, torch.float8_e4m3fn)
    root = torch.nn.Sequential(layer)
    cast_ops.cast_on_demand(root)
    x = torch.randn(3, 32, generator=g).to(torch.bfloat16)
    want = mm8.scaled_fp8_linear(x, layer.weight, layer.weight_scale, layer.bias)
    monkeypatch.setattr(cast_ops, "host_fp8_matmul", lambda device: True)
    seen = []
    real = sys.modules["comfy.ops"].cast_bias_weight

    def spy(s, input=None, dtype=None, **kw):
        seen.append(dtype)
        return real(s, input, dtype=dtype, **kw)
    monkeypatch.setattr(sys.modules["comfy.ops"], "cast_bias_weight", spy)
    ops = sys.modules["comfy.ops"]
    ops.CASTS.clear()
    got = root[0](x)
    assert seen == [torch.float8_e4m3fn]  # the weight reached the product in fp8
    torch.testing.assert_close(got, want, rtol=0, atol=0)
    assert [c[0] for c in ops.CASTS] == ["cast", "uncast"]


def test_the_fp8_product_follows_the_hosts_own_rule(host, monkeypatch):
    """The host's rule for its fp8 layers, asked of the host: `--fast fp8_matrix_mult` (another --fast feature is not
    enough) and fp8 compute on that CUDA device; a CPU never."""
    import enum

    nodes, _, _ = host
    cast_ops = nodes.host.cast_ops
    mm8 = sys.modules[f"{host_stand_in.PACK}.nexus_core.memory.fp8_matmul"]

    class PerformanceFeature(enum.Enum):
        Fp8MatrixMultiplication = "fp8_matrix_mult"
        CublasOps = "cublas_ops"

    cli_args = types.ModuleType("comfy.cli_args")
    cli_args.PerformanceFeature, cli_args.args = PerformanceFeature, types.SimpleNamespace(fast=set())
    monkeypatch.setitem(sys.modules, "comfy.cli_args", cli_args)
    monkeypatch.setattr(mm8, "device_can", lambda device: True)  # as on an Ada or Hopper card
    capable = {"yes": True}
    monkeypatch.setattr(sys.modules["comfy.model_management"], "supports_fp8_compute",
                        lambda device: capable["yes"], raising=False)
    cuda = torch.device("cuda", 0)

    def asked(fast, fp8_compute=True, device=cuda):
        cast_ops._HOST_FP8.clear()
        cli_args.args.fast, capable["yes"] = set(fast), fp8_compute
        return cast_ops.host_fp8_matmul(device)

    try:
        assert asked({PerformanceFeature.Fp8MatrixMultiplication}) is True
        assert asked(set()) is False
        assert asked({PerformanceFeature.CublasOps}) is False
        assert asked({PerformanceFeature.Fp8MatrixMultiplication}, fp8_compute=False) is False
        assert asked({PerformanceFeature.Fp8MatrixMultiplication}, device=torch.device("cpu")) is False
    finally:
        cast_ops._HOST_FP8.clear()
