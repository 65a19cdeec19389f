"""Decoder parity with the reference's golden data (fixture nexus-tiny-a, float32 on CPU).

Tolerances from the fixture README: ids, sigmas, timesteps, noise exact; adapter/merger/CLIP/T5 outputs
atol=rtol=1e-4; DiT per-step outputs, latents and vae_output atol=5e-4, rtol=1e-4; uint8 images max |diff| <= 1
on at most 0.5 % of the values (the reference truncates).
"""
import pytest
import torch

from nexus_core.decoder import initial_noise, sample, sigmas
from nexus_core.decoder.ids import editing_text_ids, image_ids, zero_text_ids
from nexus_core.decoder.projectors import merger_position_ids
from nexus_core.decoder.schedule import timesteps
from nexus_core.flux.vae import decode_latents, to_uint8
from nexus_core.pipeline import negative_conditioning

DECODE_CASES = ["gen_en_gendec_cfg1", "gen_zh_gendec_cfg1", "gen_en_gendec_cfg3", "gen_en_gendec_cfg3_negprompt",
                "edit_en_gendec", "edit_zh_gendec", "edit_en_editdec", "edit_zh_editdec"]


def close(a, b, atol=1e-4, rtol=1e-4):
    torch.testing.assert_close(a.float(), b.float(), atol=atol, rtol=rtol)


@pytest.fixture(scope="session")
def runs(decoders, flux, manifest, golden):
    """Each case run once from its recorded AR embeddings, with every intermediate recorded."""
    text, vae = flux
    out = {}
    for case in DECODE_CASES:
        p, g = manifest[case]["params"], golden(f"decode_{case}")
        dec = decoders["edit" if case.endswith("editdec") else "gen"]
        h, w = p["effective_height_width"]
        pos = dec.positive(g["input_image_embeddings"], text.clip_pooled(""), h, w, g.get("ref_embeddings"))
        neg = negative_conditioning(text, p["negative_prompt"]) if p["cfg_scale"] != 1 else None
        noise = initial_noise(1, h, w, p["seed"])
        rec = {}
        lat = sample(dec.dit, noise, sigmas(p["num_inference_steps"]), pos, neg, p["cfg_scale"],
                     p["embedded_guidance"], record=rec)
        vae_out = decode_latents(vae, lat)
        out[case] = dict(pos=pos, neg=neg, noise=noise, rec=rec, latents=lat, vae=vae_out, image=to_uint8(vae_out)[0])
    return out


@pytest.mark.parametrize("case", DECODE_CASES)
def test_conditioning(runs, golden, case):
    g, r = golden(f"decode_{case}"), runs[case]
    if "adapter_output" in g:
        close(r["pos"].context, g["adapter_output"])
    if "merger_output" in g:
        close(r["pos"].context, g["merger_output"])
    close(r["pos"].context, g["dit_input_posi_prompt_emb"])
    close(r["pos"].pooled, g["dit_input_posi_pooled_prompt_emb"])
    assert torch.equal(r["pos"].txt_ids, g["dit_input_posi_text_ids"][0])
    if r["neg"] is not None:
        close(r["neg"].context, g["dit_input_nega_prompt_emb"])
        close(r["neg"].pooled, g["dit_input_nega_pooled_prompt_emb"])
        assert torch.equal(r["neg"].txt_ids, g["dit_input_nega_text_ids"][0])
    assert torch.equal(r["noise"], g["initial_noise"])


@pytest.mark.parametrize("case", DECODE_CASES)
def test_schedule_and_ids(manifest, golden, case):
    g, p = golden(f"decode_{case}"), manifest[case]["params"]
    h, w = p["effective_height_width"]
    assert torch.equal(sigmas(p["num_inference_steps"]), g["sigmas"])
    assert torch.equal(timesteps(sigmas(p["num_inference_steps"])), g["timesteps"])
    assert torch.equal(image_ids(h, w), g["dit_input_posi_image_ids"][0])
    if case.endswith("editdec"):
        assert torch.equal(editing_text_ids(h, w), g["dit_input_posi_text_ids"][0])
        assert torch.equal(merger_position_ids([[1, 18, 18], [1, 36, 36]]), g["merger_position_ids"])
    else:
        assert torch.equal(zero_text_ids(81), g["dit_input_posi_text_ids"][0])


@pytest.mark.parametrize("case", DECODE_CASES)
def test_sampling_and_image(runs, golden, case):
    g, r = golden(f"decode_{case}"), runs[case]
    dit = dict(atol=5e-4, rtol=1e-4)
    close(torch.stack(r["rec"]["noise_pred_posi"]), g["step_noise_pred_posi"], **dit)
    if "step_noise_pred_nega" in g:
        close(torch.stack(r["rec"]["noise_pred_nega"]), g["step_noise_pred_nega"], **dit)
    close(torch.stack(r["rec"]["noise_pred"]), g["step_noise_pred"], **dit)
    close(torch.stack(r["rec"]["latents"]), g["step_latents_out"], **dit)
    close(r["latents"], g["final_latents"], **dit)
    close(r["vae"], g["vae_output"], **dit)
    diff = (r["image"].int() - g["image_uint8"].int()).abs()
    assert diff.max() <= 1 and (diff > 0).float().mean() <= 0.005


def test_editing_text_ids_at_512():
    """Spec 10.6: at 512x512 the target h-coordinates in bf16 and channel 0 of every reference id."""
    ids = editing_text_ids(512, 512, dtype=torch.bfloat16)
    assert ids[:81:9, 1].tolist() == [0, 3.5625, 7.125, 10.6875, 14.25, 17.75, 21.375, 24.875, 28.5]
    assert (ids[81:, 0] == 1).all() and (ids[:81, 0] == 0).all()


def test_guidance_is_rounded_like_the_reference_in_bf16():
    assert (torch.tensor([3.5], dtype=torch.bfloat16) * 1000).item() == 3504


def test_merger_takes_unbatched_embeddings_directly(decoders, golden):
    """The merger's own project() accepts (N, D) target and reference sets (how a host may call it) and gives the
    golden merger output, as the batched (1, N, D) call does."""
    g = golden("decode_edit_en_editdec")
    merger = decoders["edit"].projector
    target, ref = g["input_image_embeddings"].float(), g["ref_embeddings"].float()
    target, ref = (t[0] if t.dim() == 3 else t for t in (target, ref))
    with torch.inference_mode():
        out = merger.project(target, ref, (1, 18, 18), (1, 36, 36))
    close(out, g["merger_output"])
