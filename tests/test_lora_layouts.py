"""`nexus-gen convert-lora`: XLabs FLUX LoRAs rewritten in the ComfyUI layout. The oracle is XLabs' own forward
(each processor adds up(down(x)) to the output of the projection it wraps, scale 1) against ComfyUI's weight
patch (W + B @ A for a pair without alpha), on random inputs."""
import pytest
import torch
from safetensors.torch import load_file, save_file

from nexus_core.cli import main
from nexus_core.errors import NexusError
from nexus_core.flux.lora_layouts import convert_lora_file, xlabs_to_comfyui

H, R = 12, 4  # a narrow FLUX: width 12, rank 4, MLP ratio 4
# XLabs processor -> (ComfyUI weight, weight shape, rows the processor adds to)
WRAPS = {"double_blocks.1.processor.qkv_lora1": ("double_blocks.1.img_attn.qkv", (3 * H, H), slice(0, 3 * H)),
         "double_blocks.1.processor.qkv_lora2": ("double_blocks.1.txt_attn.qkv", (3 * H, H), slice(0, 3 * H)),
         "double_blocks.1.processor.proj_lora1": ("double_blocks.1.img_attn.proj", (H, H), slice(0, H)),
         "double_blocks.1.processor.proj_lora2": ("double_blocks.1.txt_attn.proj", (H, H), slice(0, H)),
         "single_blocks.0.processor.qkv_lora": ("single_blocks.0.linear1", (7 * H, H), slice(0, 3 * H)),
         "single_blocks.0.processor.proj_lora": ("single_blocks.0.linear2", (H, 5 * H), slice(0, H))}


def xlabs_state(seed=0):
    g = torch.Generator().manual_seed(seed)
    sd = {}
    for proc, (_, (n_out, n_in), rows) in WRAPS.items():
        sd[proc + ".down.weight"] = torch.randn(R, n_in, generator=g, dtype=torch.float64)
        sd[proc + ".up.weight"] = torch.randn(rows.stop - rows.start, R, generator=g, dtype=torch.float64)
    return sd


def test_each_processor_lands_on_the_weight_it_wraps_with_the_same_effect():
    xl = xlabs_state()
    conv = xlabs_to_comfyui(xl)
    assert len(conv) == len(xl)
    g = torch.Generator().manual_seed(1)
    for proc, (weight, (n_out, n_in), rows) in WRAPS.items():
        w = torch.randn(n_out, n_in, generator=g, dtype=torch.float64)
        x = torch.randn(n_in, 5, generator=g, dtype=torch.float64)
        xlabs_out = w @ x  # XLabs: the projection, plus the processor's up(down(x)) on the rows it wraps
        xlabs_out[rows] += xl[proc + ".up.weight"] @ (xl[proc + ".down.weight"] @ x)
        a = conv[f"diffusion_model.{weight}.lora_A.weight"]
        b = conv[f"diffusion_model.{weight}.lora_B.weight"]
        assert b.shape == (n_out, R) and a.shape == (R, n_in)  # the whole weight: every ComfyUI loader maps it
        torch.testing.assert_close((w + b @ a) @ x, xlabs_out, rtol=1e-12, atol=1e-12)


def test_values_and_dtype_are_kept():
    xl = {k: v.to(torch.bfloat16) for k, v in xlabs_state().items()}
    conv = xlabs_to_comfyui(xl)
    a = conv["diffusion_model.double_blocks.1.img_attn.qkv.lora_A.weight"]
    assert a.dtype == torch.bfloat16 and torch.equal(a, xl["double_blocks.1.processor.qkv_lora1.down.weight"])
    b = conv["diffusion_model.single_blocks.0.linear1.lora_B.weight"]
    assert torch.equal(b[: 3 * H], xl["single_blocks.0.processor.qkv_lora.up.weight"])
    assert not b[3 * H:].any()  # the MLP rows are untouched


@pytest.mark.parametrize("change,msg", [
    (lambda sd: sd.update({"lora_unet_double_blocks_0_img_attn_qkv.alpha": torch.tensor(4.0)}), "not XLabs"),
    (lambda sd: sd.pop("double_blocks.1.processor.proj_lora1.up.weight"), "has no"),
    (lambda sd: sd.update({"single_blocks.0.processor.qkv_lora.up.weight": torch.zeros(3 * H + 1, R)}), "q, k and v"),
    (lambda sd: sd.update({"double_blocks.1.processor.qkv_lora1.up.weight": torch.zeros(2 * H, R)}),
     r"has 24 rows, not q, k and v of its input's width 12"),
    (lambda sd: sd.update({"double_blocks.1.processor.proj_lora1.up.weight": torch.zeros(H, R + 1)}),
     r"do not multiply"),
    (lambda sd: sd.update({"double_blocks.1.processor.proj_lora2.down.weight": torch.zeros(R * H)}), r"is 2-D"),
    (lambda sd: sd.update({"double_blocks.1.processor.proj_lora2.up.weight": torch.zeros(H, R, dtype=torch.int8)}),
     r"LoRA weights are floating point"),
    (lambda sd: sd["single_blocks.0.processor.proj_lora.up.weight"].__setitem__((0, 0), float("nan")),
     r"proj_lora.up.weight holds NaN or inf"),
])
def test_what_cannot_be_converted_exactly_is_refused(change, msg):
    sd = xlabs_state()
    change(sd)
    with pytest.raises(NexusError, match=msg):
        xlabs_to_comfyui(sd)


def test_cli_writes_a_new_file_and_never_overwrites_unasked(tmp_path, capsys):
    src, out = tmp_path / "x.safetensors", tmp_path / "x_comfyui.safetensors"
    save_file({k: v.float() for k, v in xlabs_state().items()}, str(src))
    assert main(["convert-lora", str(src), "--out", str(out)]) in (0, None)
    assert "6 LoRA weight pairs" in capsys.readouterr().out
    got = load_file(str(out))
    assert set(got) == {f"diffusion_model.{w}.lora_{h}.weight" for w, _, _ in WRAPS.values() for h in "AB"}
    before = out.read_bytes()
    assert main(["convert-lora", str(src), "--out", str(out)]) == 2
    assert "already exists" in capsys.readouterr().err and out.read_bytes() == before
    assert main(["convert-lora", str(src), "--out", str(out), "--overwrite"]) in (0, None)


@pytest.mark.parametrize("case", ["not_xlabs", "suffix", "same_file", "truncated"])
def test_cli_refuses_bad_input_before_writing(tmp_path, case):
    src = tmp_path / "x.safetensors"
    save_file({k: v.float() for k, v in xlabs_state().items()}, str(src))
    out = tmp_path / "new.safetensors"
    if case == "not_xlabs":
        save_file({"diffusion_model.x.lora_A.weight": torch.zeros(2, 2)}, str(src))
    elif case == "suffix":
        out = tmp_path / "new.ckpt"
    elif case == "same_file":
        out = src
    else:
        src.write_bytes(src.read_bytes()[:-10])
    with pytest.raises(NexusError):
        convert_lora_file(src, out, overwrite=case == "same_file")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.safetensors"]


def test_block_numbers_are_written_as_comfyui_maps_them():
    """A zero-padded block number (`01`) would name a key no loader maps; it is written as the number."""
    sd = {k.replace("double_blocks.1.", "double_blocks.01."): v for k, v in xlabs_state().items()}
    conv = xlabs_to_comfyui(sd)
    assert "diffusion_model.double_blocks.1.img_attn.qkv.lora_A.weight" in conv
    assert not any(".01." in k for k in conv)
