"""Decoder files: key maps, conversion (streamed, atomic), and bad input with clear messages."""

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from nexus_core.decoder import EDITING, GENERATION, load_decoder, read_decoder
from nexus_core.decoder.convert import convert_decoder
from nexus_core.decoder.dit import build_dit, diffusers_state
from nexus_core.decoder.keymap import convert_state_dict
from nexus_core.errors import NexusCancelled, NexusError
from nexus_core.synthetic.decoders import tiny_dit_state


def test_real_width_maps_agree_through_diffusers_own_converter():
    """Our DiffSynth->BFL map, then diffusers' BFL->diffusers converter, equals our DiffSynth->diffusers map.
    diffusers' converter assumes FLUX's width 3072, so this uses a real-width DiT with one block of each kind."""
    from diffusers.loaders.single_file_utils import convert_flux_transformer_checkpoint_to_diffusers

    g = torch.Generator().manual_seed(0)
    state = {k[len("pipe.dit."):]: v for k, v in
             tiny_dit_state(g, hidden=3072, n_double=1, n_single=1, context=64, pooled=32).items()}
    ours = convert_state_dict(state, "diffusers")
    theirs = convert_flux_transformer_checkpoint_to_diffusers(convert_state_dict(state, "comfyui"))
    assert set(ours) == set(theirs)
    for k in ours:
        assert torch.equal(ours[k], theirs[k]), k


def test_final_norm_halves(fixture_dir):
    dec = read_decoder(fixture_dir / "nexus" / "generation_decoder.bin")
    w = dec.dit["final_norm_out.linear.weight"]
    bfl = convert_state_dict({"final_norm_out.linear.weight": w, "x_embedder.weight": dec.dit["x_embedder.weight"]},
                             "comfyui")["final_layer.adaLN_modulation.1.weight"]
    h = w.shape[0] // 2
    assert torch.equal(bfl[:h], w[h:]) and torch.equal(bfl[h:], w[:h])  # (scale, shift) -> (shift, scale)


@pytest.mark.parametrize("layout", ["comfyui", "diffusers"])
@pytest.mark.parametrize("name", ["generation_decoder.bin", "edit_decoder.bin"])
def test_convert_round_trip(fixture_dir, tmp_path, layout, name):
    src = fixture_dir / "nexus" / name
    out = convert_decoder(src, tmp_path / "d.safetensors", layout)
    orig, conv = read_decoder(src), read_decoder(out)
    assert conv.kind == orig.kind and conv.layout == layout
    with safe_open(str(out), "pt") as f:
        meta = f.metadata()
    assert meta["format"] == "nexus-gen-decoder" and meta["kind"] == orig.kind and meta["layout"] == layout
    a, b = diffusers_state(orig), diffusers_state(conv)
    assert set(a) == set(b) and all(torch.equal(a[k], b[k]) for k in a)
    assert all(torch.equal(orig.projector[k], conv.projector[k]) for k in orig.projector)


def test_converted_file_gives_the_golden_latents(fixture_dir, fixture_ar, tmp_path, golden):
    from nexus_core.decoder import sample, sigmas
    from nexus_core.pipeline import load_flux

    out = convert_decoder(fixture_dir / "nexus" / "edit_decoder.bin", tmp_path / "e.safetensors", "comfyui")
    dec = load_decoder(out, fixture_ar.checkpoint.config, expect=EDITING)
    text, _ = load_flux(fixture_dir / "flux")
    g = golden("decode_edit_en_editdec")
    pos = dec.positive(g["input_image_embeddings"], text.clip_pooled(""), 128, 96, g["ref_embeddings"])
    lat = sample(dec.dit, g["initial_noise"], sigmas(4), pos)
    torch.testing.assert_close(lat, g["final_latents"], atol=5e-4, rtol=1e-4)


def test_fp8_storage(fixture_dir, tmp_path):
    out = convert_decoder(fixture_dir / "nexus" / "generation_decoder.bin", tmp_path / "f8.safetensors",
                          "comfyui", "fp8_e4m3fn")
    dec = read_decoder(out)
    big = [v for v in dec.dit.values() if v.dim() > 1]
    assert all(v.dtype == torch.float8_e4m3fn for v in big)
    assert all(v.dtype == torch.bfloat16 for v in dec.dit.values() if v.dim() == 1)
    assert out.stat().st_size < 0.6 * (fixture_dir / "nexus" / "generation_decoder.bin").stat().st_size


def test_fp8_storage_compute_bf16(fixture_dir):
    dec = read_decoder(fixture_dir / "nexus" / "generation_decoder.bin")
    ref = build_dit(dec, torch.bfloat16)
    f8 = build_dit(dec, torch.bfloat16, storage_dtype=torch.float8_e4m3fn)
    assert f8.transformer_blocks[0].attn.to_q.weight.dtype == torch.float8_e4m3fn
    g = torch.Generator().manual_seed(0)
    x, ctx = torch.randn(1, 16, 64, generator=g), torch.randn(1, 81, 32, generator=g)
    args = dict(pooled_projections=torch.randn(1, 16, generator=g), timestep=torch.tensor([0.5]),
                img_ids=torch.zeros(16, 3), txt_ids=torch.zeros(81, 3), guidance=torch.tensor([3.5]), return_dict=False)
    a = ref(x.bfloat16(), ctx.bfloat16(), **{**args, "pooled_projections": args["pooled_projections"].bfloat16()})[0]
    b = f8(x.bfloat16(), ctx.bfloat16(), **{**args, "pooled_projections": args["pooled_projections"].bfloat16()})[0]
    cos = torch.nn.functional.cosine_similarity(a.float().flatten(), b.float().flatten(), dim=0)
    assert b.dtype == torch.bfloat16 and cos > 0.98


def test_interrupted_conversion_leaves_nothing_and_rerun_works(fixture_dir, tmp_path):
    src, out = fixture_dir / "nexus" / "generation_decoder.bin", tmp_path / "d.safetensors"
    calls = []
    with pytest.raises(NexusCancelled):
        convert_decoder(src, out, should_stop=lambda: len(calls) > 10, on_tensor=lambda i, n: calls.append(i))
    assert list(tmp_path.iterdir()) == []
    convert_decoder(src, out)
    assert read_decoder(out).kind == GENERATION


def test_wrong_decoder_kind(fixture_dir):
    with pytest.raises(NexusError, match="is the generation decoder, but this task needs the editing decoder"):
        load_decoder(fixture_dir / "nexus" / "generation_decoder.bin", expect=EDITING)


def test_truncated_bin(fixture_dir, tmp_path):
    data = (fixture_dir / "nexus" / "generation_decoder.bin").read_bytes()
    bad = tmp_path / "generation_decoder.bin"
    bad.write_bytes(data[: len(data) // 2])
    with pytest.raises(NexusError, match="generation_decoder.bin.*truncated"):
        read_decoder(bad)


class Payload:
    def __reduce__(self):
        return (print, ("this would run on load",))


def test_bin_with_non_tensor_objects_is_refused(tmp_path):
    evil = tmp_path / "evil.bin"
    torch.save({"adapter.0.weight": torch.zeros(2, 2), "x": Payload()}, evil)
    with pytest.raises(NexusError, match="objects other than tensors and was refused"):
        read_decoder(evil)
    odd = tmp_path / "odd.bin"
    torch.save({"adapter.0.weight": torch.zeros(2, 2), "note": "hello"}, odd)
    with pytest.raises(NexusError, match="not a flat dictionary of tensors"):
        read_decoder(odd)


def test_safetensors_of_another_model(fixture_dir):
    with pytest.raises(NexusError, match="ae.safetensors is not a Nexus-Gen decoder"):
        read_decoder(fixture_dir / "flux" / "FLUX" / "FLUX.1-dev" / "ae.safetensors")


def test_missing_dit_keys_are_listed(fixture_dir, tmp_path):
    dec = read_decoder(fixture_dir / "nexus" / "generation_decoder.bin")
    state = {"adapter." + k: v for k, v in dec.projector.items()}
    state.update({"pipe.dit." + k: v for k, v in dec.dit.items() if "blocks.1.attn.a_to_out" not in k})
    save_file(state, str(tmp_path / "x.safetensors"))
    torch.save(state, tmp_path / "x.bin")
    with pytest.raises(NexusError, match="DiT: 2 missing \\['blocks.1.attn.a_to_out.bias'"):
        read_decoder(tmp_path / "x.bin")


def test_missing_file():
    with pytest.raises(NexusError, match="Decoder file not found"):
        read_decoder("/nonexistent/generation_decoder.bin")
