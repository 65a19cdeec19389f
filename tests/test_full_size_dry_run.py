"""Full-size dry run: the real Nexus-GenV2 configuration (Qwen2.5-VL-7B AR, the two 12B FLUX decoders) through every
loader's validation, the key maps, the projector builders and the converters' planning, with meta tensors and sparse
files: no weight is allocated or read. It catches constants that only the tiny test sizes hide.

Every expected number is written out from the reference (shared/docs/nexus-gen-reference.md: 0, 1.1, 1.2, 1.5, 2.3,
3.1, 4.1, 5, 6), not taken from the code under test. With COMFYUI_PATH, ComfyUI's own FLUX detection runs on the
decoders' real key set in ComfyUI's Python (tests/comfyui/full_size_probe.py).
"""
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from nexus_core.errors import NexusError

HERE = Path(__file__).resolve().parent
META = "meta"

# --- the reference's numbers -----------------------------------------------------------------------------------------
# config.json of Nexus-GenV2 (1.1): a stock Qwen2.5-VL-7B-Instruct config in flat 4.49 format, saved by 4.49 (its vision
# config keeps only the values that differ from the defaults); use_cache false; token ids as in 0.
REAL_CONFIG = {
    "architectures": ["Qwen2_5_VLForConditionalGeneration"], "model_type": "qwen2_5_vl",
    "attention_dropout": 0.0, "bos_token_id": 151643, "eos_token_id": 151645, "pad_token_id": 151643,
    "vision_start_token_id": 151652, "vision_end_token_id": 151653, "vision_token_id": 151654,
    "image_token_id": 151655, "video_token_id": 151656, "hidden_act": "silu", "hidden_size": 3584,
    "initializer_range": 0.02, "intermediate_size": 18944, "max_position_embeddings": 128000, "max_window_layers": 28,
    "num_attention_heads": 28, "num_hidden_layers": 28, "num_key_value_heads": 4, "rms_norm_eps": 1e-06,
    "rope_theta": 1000000.0, "sliding_window": 32768, "tie_word_embeddings": False, "torch_dtype": "bfloat16",
    "transformers_version": "4.49.0", "use_cache": False, "use_sliding_window": False, "vocab_size": 152064,
    "rope_scaling": {"type": "default", "rope_type": "default", "mrope_section": [16, 24, 24]},
    "vision_config": {"hidden_size": 1280, "in_chans": 3, "model_type": "qwen2_5_vl", "spatial_patch_size": 14,
                      "tokens_per_second": 2, "torch_dtype": "bfloat16"},
}
# The same model as Qwen2.5-VL-7B-Instruct writes it (every vision value spelled out, rope type "mrope"): the loaders
# must read both the same way.
INSTRUCT_CONFIG = {**REAL_CONFIG, "use_cache": True,
                   "rope_scaling": {"type": "mrope", "mrope_section": [16, 24, 24]},
                   "vision_config": {"depth": 32, "hidden_act": "silu", "hidden_size": 1280, "intermediate_size": 3420,
                                     "num_heads": 16, "in_chans": 3, "out_hidden_size": 3584, "patch_size": 14,
                                     "spatial_merge_size": 2, "spatial_patch_size": 14, "window_size": 112,
                                     "fullatt_block_indexes": [7, 15, 23, 31], "tokens_per_second": 2,
                                     "temporal_patch_size": 2}}
REAL_GENERATION_CONFIG = {"bos_token_id": 151643, "pad_token_id": 151643, "do_sample": True,
                          "eos_token_id": [151645, 151643], "repetition_penalty": 1.05, "temperature": 0.1,
                          "top_k": 1, "top_p": 0.001, "transformers_version": "4.49.0"}
IDS = {"<|endoftext|>": 151643, "<|im_start|>": 151644, "<|im_end|>": 151645, "<|vision_start|>": 151652,
       "<|vision_end|>": 151653, "<|vision_pad|>": 151654, "<|image_pad|>": 151655, "<|video_pad|>": 151656}
D_LLM, D_CTX, D_DIT, N_E = 3584, 4096, 3072, 81
DIT_TENSORS, DIT_PARAMS = 780, 11_901_408_320  # 5: DiffSynth-old / BFL; diffusers splits q/k/v: 1160 tensors
DIFFUSERS_TENSORS = 1160
DIFFUSERS_CONFIG = dict(patch_size=1, in_channels=64, num_layers=19, num_single_layers=38, attention_head_dim=128,
                        num_attention_heads=24, joint_attention_dim=4096, pooled_projection_dim=768,
                        guidance_embeds=True, axes_dims_rope=(16, 56, 56))
VISION_HEAD, PREFILL = "vision_head.weight", "image_prefill_embeds.weight"


def ar_tensor_spec() -> dict[str, tuple]:
    """The 4.49-named tensors of the Nexus-GenV2 AR with their shapes (1.2), written out from the reference."""
    d, inter, vocab, kv = 3584, 18944, 152064, 4 * 128
    vd, vi = 1280, 3420
    s = {"visual.patch_embed.proj.weight": (vd, 3, 2, 14, 14)}
    for i in range(32):
        b = f"visual.blocks.{i}."
        s[b + "norm1.weight"] = s[b + "norm2.weight"] = (vd,)
        s[b + "attn.qkv.weight"], s[b + "attn.qkv.bias"] = (3 * vd, vd), (3 * vd,)
        s[b + "attn.proj.weight"], s[b + "attn.proj.bias"] = (vd, vd), (vd,)
        for p in ("gate_proj", "up_proj"):
            s[b + f"mlp.{p}.weight"], s[b + f"mlp.{p}.bias"] = (vi, vd), (vi,)
        s[b + "mlp.down_proj.weight"], s[b + "mlp.down_proj.bias"] = (vd, vi), (vd,)
    s["visual.merger.ln_q.weight"] = (vd,)
    s["visual.merger.mlp.0.weight"], s["visual.merger.mlp.0.bias"] = (4 * vd, 4 * vd), (4 * vd,)
    s["visual.merger.mlp.2.weight"], s["visual.merger.mlp.2.bias"] = (d, 4 * vd), (d,)
    s["model.embed_tokens.weight"] = (vocab, d)
    for i in range(28):
        b = f"model.layers.{i}."
        for p, rows in (("q_proj", d), ("k_proj", kv), ("v_proj", kv)):
            s[b + f"self_attn.{p}.weight"], s[b + f"self_attn.{p}.bias"] = (rows, d), (rows,)
        s[b + "self_attn.o_proj.weight"] = (d, d)
        s[b + "mlp.gate_proj.weight"] = s[b + "mlp.up_proj.weight"] = (inter, d)
        s[b + "mlp.down_proj.weight"] = (d, inter)
        s[b + "input_layernorm.weight"] = s[b + "post_attention_layernorm.weight"] = (d,)
    s["model.norm.weight"] = (d,)
    s["lm_head.weight"] = (vocab, d)
    s[VISION_HEAD] = (d, d)
    s[PREFILL] = (N_E, d)
    return s


def dit_spec() -> dict[str, tuple]:
    """DiffSynth-old FluxDiT names and shapes of the decoders' DiT (5): d 3072, head 128, MLP 12288, 19 + 38 blocks."""
    h = D_DIT
    s = {}

    def lin(name, out, inp):
        s[name + ".weight"], s[name + ".bias"] = (out, inp), (out,)

    lin("x_embedder", h, 64)
    lin("context_embedder", h, 4096)
    for e in ("time_embedder", "guidance_embedder"):
        lin(f"{e}.timestep_embedder.0", h, 256)
        lin(f"{e}.timestep_embedder.2", h, h)
    lin("pooled_text_embedder.0", h, 768)
    lin("pooled_text_embedder.2", h, h)
    lin("final_norm_out.linear", 2 * h, h)
    lin("final_proj_out", 64, h)
    for i in range(19):
        b = f"blocks.{i}."
        lin(b + "norm1_a.linear", 6 * h, h)
        lin(b + "norm1_b.linear", 6 * h, h)
        lin(b + "attn.a_to_qkv", 3 * h, h)
        lin(b + "attn.b_to_qkv", 3 * h, h)
        lin(b + "attn.a_to_out", h, h)
        lin(b + "attn.b_to_out", h, h)
        for n in ("norm_q_a", "norm_k_a", "norm_q_b", "norm_k_b"):
            s[b + f"attn.{n}.weight"] = (128,)
        for ff in ("ff_a", "ff_b"):
            lin(b + f"{ff}.0", 4 * h, h)
            lin(b + f"{ff}.2", h, 4 * h)
    for j in range(38):
        b = f"single_blocks.{j}."
        lin(b + "norm.linear", 3 * h, h)
        lin(b + "to_qkv_mlp", 7 * h, h)
        s[b + "norm_q_a.weight"] = s[b + "norm_k_a.weight"] = (128,)
        lin(b + "proj_out", h, 5 * h)
    return s


def adapter_spec() -> dict[str, tuple]:
    """generation_decoder.bin's adapter (3.1): Linear(3584->4096), LayerNorm, ReLU, Linear(4096->4096), LayerNorm."""
    return {"adapter.0.weight": (4096, 3584), "adapter.0.bias": (4096,), "adapter.1.weight": (4096,),
            "adapter.1.bias": (4096,), "adapter.3.weight": (4096, 4096), "adapter.3.bias": (4096,),
            "adapter.4.weight": (4096,), "adapter.4.bias": (4096,)}


def merger_spec() -> dict[str, tuple]:
    """edit_decoder.bin's embedding_merger (4.1): 19 tensors."""
    p = "embedding_merger."
    s = {p + "layers.0.self_attn.q_proj.weight": (3584, 3584), p + "layers.0.self_attn.q_proj.bias": (3584,),
         p + "layers.0.self_attn.k_proj.weight": (512, 3584), p + "layers.0.self_attn.k_proj.bias": (512,),
         p + "layers.0.self_attn.v_proj.weight": (512, 3584), p + "layers.0.self_attn.v_proj.bias": (512,),
         p + "layers.0.self_attn.o_proj.weight": (3584, 3584),
         p + "layers.0.mlp.gate_proj.weight": (18944, 3584), p + "layers.0.mlp.up_proj.weight": (18944, 3584),
         p + "layers.0.mlp.down_proj.weight": (3584, 18944),
         p + "layers.0.input_layernorm.weight": (3584,), p + "layers.0.post_attention_layernorm.weight": (3584,),
         p + "projector.0.weight": (3584,), p + "projector.1.weight": (16384, 3584), p + "projector.1.bias": (16384,),
         p + "projector.2.weight": (16384,), p + "projector.4.weight": (4096, 16384), p + "projector.4.bias": (4096,),
         p + "projector.5.weight": (4096,)}
    return s


def n_params(shapes) -> int:
    return sum(math.prod(s) for s in shapes)


def meta(shape, dtype=torch.bfloat16) -> torch.Tensor:
    return torch.empty(shape, dtype=dtype, device=META)


def write_sparse_safetensors(path: Path, shapes: dict[str, tuple], dtype: str = "BF16", itemsize: int = 2) -> int:
    """A safetensors file whose header declares `shapes`; the data area is a hole (no disk used). Returns its size."""
    header, offset = {}, 0
    for name in sorted(shapes):
        n = math.prod(shapes[name]) * itemsize
        header[name] = {"dtype": dtype, "shape": list(shapes[name]), "data_offsets": [offset, offset + n]}
        offset += n
    header["__metadata__"] = {"format": "pt"}
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)
    with open(path, "wb") as f:
        f.write(len(raw).to_bytes(8, "little"))
        f.write(raw)
        f.truncate(8 + len(raw) + offset)
    return 8 + len(raw) + offset


def skip_without_sparse_files(folder: Path):
    """The AR shards are 16.6 GB holes: only on a filesystem that keeps them sparse (st_blocks tells)."""
    probe = folder / "sparse.probe"
    with open(probe, "wb") as f:
        f.truncate(64 << 20)
    blocks = getattr(probe.stat(), "st_blocks", None)
    probe.unlink()
    if blocks is None or blocks * 512 >= 1 << 20:
        pytest.skip(f"{folder} does not keep sparse files: the real-size shards would use 16.6 GB of disk")


# --- the AR ----------------------------------------------------------------------------------------------------------
def test_spec_matches_the_reference_sizes():
    """The written-out tensor lists have the reference's counts: AR about 8.3 B parameters (6), DiT 780 tensors with
    11,901,408,320 parameters (5), adapter 31.5 M (3.1), merger 19 tensors, about 359 M (4.1)."""
    ar = ar_tensor_spec()
    assert len(ar) == 731
    assert round(n_params(ar.values()) / 1e9, 1) == 8.3
    dit = dit_spec()
    assert (len(dit), n_params(dit.values())) == (DIT_TENSORS, DIT_PARAMS)
    assert len(adapter_spec()) == 8 and round(n_params(adapter_spec().values()) / 1e6, 1) == 31.5
    assert len(merger_spec()) == 19 and round(n_params(merger_spec().values()) / 1e6) == 359


def write_real_ar_folder(folder: Path, config: dict) -> Path:
    """Nexus-GenV2's AR folder: real config, generation config, a tokenizer stub, the index and 4 sparse shards whose
    headers declare every real tensor (16.6 GB apparent, a few KB on disk). Never copy it: copies are not sparse."""
    folder.mkdir(parents=True)
    skip_without_sparse_files(folder)
    (folder / "config.json").write_text(json.dumps(config, indent=2))
    (folder / "generation_config.json").write_text(json.dumps(REAL_GENERATION_CONFIG, indent=2))
    # a tokenizer in the published layout: 151643 base tokens, the special tokens at their real ids (as the real
    # tokenizer_config.json lists them), so the folder passes the tokenizer check as the real one does
    (folder / "vocab.json").write_text(json.dumps({f"t{i}": i for i in range(151643)}))
    (folder / "merges.txt").write_text("#version: 0.2\n")
    (folder / "tokenizer_config.json").write_text(json.dumps({
        "tokenizer_class": "Qwen2Tokenizer",
        "added_tokens_decoder": {str(i): {"content": t, "special": True} for t, i in IDS.items()}}))
    spec = ar_tensor_spec()
    # 4 shards by size, as the published ones (model-0000k-of-00004); the two Nexus tensors land where they fall
    total = n_params(spec.values()) * 2
    shards, acc = [[] for _ in range(4)], 0
    for name in sorted(spec):
        shards[min(3, acc * 4 // total)].append(name)
        acc += math.prod(spec[name]) * 2
    weight_map, size = {}, 0
    for i, part in enumerate(shards):
        fname = f"model-{i + 1:05d}-of-00004.safetensors"
        size += write_sparse_safetensors(folder / fname, {k: spec[k] for k in part})
        weight_map.update({k: fname for k in part})
    (folder / "model.safetensors.index.json").write_text(json.dumps(
        {"metadata": {"total_size": total}, "weight_map": weight_map}, indent=2))
    shards_on_disk = sum(p.stat().st_blocks * 512 for p in folder.glob("*.safetensors"))
    assert size > 16.6e9 and shards_on_disk < 1_000_000, "the shards must be sparse"
    return folder


@pytest.fixture(scope="module", params=["nexus", "instruct"])
def real_ar_folder(request, tmp_path_factory) -> Path:
    cfg = REAL_CONFIG if request.param == "nexus" else INSTRUCT_CONFIG
    return write_real_ar_folder(tmp_path_factory.mktemp("real") / "Nexus-GenV2", cfg)


def test_ar_folder_passes_inspection(real_ar_folder):
    from nexus_core.ar.checkpoint import inspect_ar_folder

    ckpt = inspect_ar_folder(real_ar_folder)
    index = json.loads((real_ar_folder / "model.safetensors.index.json").read_text())["weight_map"]
    assert [s.name for s in ckpt.shards] == [f"model-0000{i}-of-00004.safetensors" for i in (1, 2, 3, 4)]
    assert ckpt.nexus_tensors == {VISION_HEAD: real_ar_folder / index[VISION_HEAD],
                                  PREFILL: real_ar_folder / index[PREFILL]}
    assert ckpt.version == 2
    assert ckpt.generation_config["eos_token_id"] == [151645, 151643]


def test_truncated_real_shard_is_refused(tmp_path):
    from nexus_core.ar.checkpoint import inspect_ar_folder

    folder = write_real_ar_folder(tmp_path / "Nexus-GenV2", REAL_CONFIG)
    shard = folder / "model-00003-of-00004.safetensors"
    with open(shard, "r+b") as f:
        f.truncate(shard.stat().st_size - 1)
    with pytest.raises(NexusError, match="truncated"):
        inspect_ar_folder(folder)


def _header_shapes(folder: Path) -> dict[str, tuple]:
    from nexus_core.files.safetensors_check import tensor_names

    out = {}
    for shard in sorted(folder.glob("model-*.safetensors")):
        out.update({k: tuple(v["shape"]) for k, v in tensor_names(shard).items()})
    return out


def _meta_model(config: dict):
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

    with torch.device(META):
        return Qwen2_5_VLForConditionalGeneration(Qwen2_5_VLConfig(**config))


def test_transformers_model_of_the_real_config_matches_the_header(real_ar_folder):
    """transformers 5.x builds (on meta) the model config.json describes; the header's 4.49 names, renamed the way
    from_pretrained renames them, give exactly its state dict with the same shapes, and only the two Nexus tensors are
    left over: what load_ar accepts (missing, mismatched: none; unexpected: those two)."""
    from transformers.conversion_mapping import get_model_conversion_mapping
    from transformers.core_model_loading import WeightConverter, WeightRenaming, rename_source_key

    config = json.loads((real_ar_folder / "config.json").read_text())
    model = _meta_model(config)
    state = model.state_dict()
    assert len(state) == 729 and sum(v.numel() for v in state.values()) == 8_292_166_656
    transforms = get_model_conversion_mapping(model)
    renamings = [t for t in transforms if isinstance(t, WeightRenaming)]
    converters = [t for t in transforms if isinstance(t, WeightConverter)]
    header = _header_shapes(real_ar_folder)
    renamed = {rename_source_key(k, renamings, converters, model.base_model_prefix, state)[0]: shape
               for k, shape in header.items()}
    assert set(renamed) - set(state) == {VISION_HEAD, PREFILL}
    assert set(state) - set(renamed) == set()
    mismatched = {k: (renamed[k], tuple(v.shape)) for k, v in state.items() if renamed[k] != tuple(v.shape)}
    assert not mismatched
    # and the config reads as the reference says (1.1)
    tc, vc = model.config.text_config, model.config.vision_config
    assert (tc.hidden_size, tc.intermediate_size, tc.num_hidden_layers, tc.num_attention_heads,
            tc.num_key_value_heads, tc.vocab_size) == (3584, 18944, 28, 28, 4, 152064)
    assert tc.rope_parameters["mrope_section"] == [16, 24, 24] and tc.rope_parameters["rope_theta"] == 1e6
    assert (vc.depth, vc.hidden_size, vc.num_heads, vc.intermediate_size, vc.out_hidden_size) == (32, 1280, 16, 3420,
                                                                                                  3584)
    assert (vc.patch_size, vc.temporal_patch_size, vc.spatial_merge_size, vc.window_size) == (14, 2, 2, 112)
    assert list(vc.fullatt_block_indexes) == [7, 15, 23, 31]


def test_nexus_tensor_shapes_from_the_header(real_ar_folder):
    from nexus_core.ar.model import check_nexus_shapes

    header = _header_shapes(real_ar_folder)
    assert header[VISION_HEAD] == (3584, 3584) and header[PREFILL] == (81, 3584)
    check_nexus_shapes(REAL_CONFIG["hidden_size"], header[VISION_HEAD], header[PREFILL])
    for head, table in (((3584, 4096), (81, 3584)), ((3584, 3584), (80, 3584)), ((3584, 3584), (81, 4096))):
        with pytest.raises(NexusError):
            check_nexus_shapes(3584, head, table)


@pytest.fixture(scope="module")
def real_ar(real_ar_folder):
    """NexusAR around the real-size model on the meta device (no tokenizer)."""
    from nexus_core.ar.checkpoint import inspect_ar_folder
    from nexus_core.ar.model import NexusAR, _head, _table

    ckpt = inspect_ar_folder(real_ar_folder)
    header = _header_shapes(real_ar_folder)
    model = _meta_model(ckpt.config)
    return NexusAR(model, None, None, ckpt, _head(meta(header[VISION_HEAD])), _table(meta(header[PREFILL])),
                   dtype=torch.bfloat16)


def test_nexus_ar_properties_at_real_size(real_ar):
    ar = real_ar
    assert ar.version == 2 and ar.hidden_size == 3584
    assert ar.n_image_tokens == 81 and ar.image_grid == [1, 18, 18] and ar.merge == 2
    t = ar.tokens
    assert (t.image_pad, t.vision_start, t.vision_end, t.eos, t.pad) == (151655, 151652, 151653, (151645, 151643),
                                                                          151643)
    s = ar.sampling
    assert (s.do_sample, s.top_k, s.top_p, s.temperature, s.repetition_penalty) == (True, 1, 0.001, 0.1, 1.05)
    assert tuple(ar.vision_head.weight.shape) == (3584, 3584) and ar.vision_head.weight.is_meta
    assert tuple(ar.prefill.weight.shape) == (81, 3584)
    assert tuple(ar.model.lm_head.weight.shape) == (152064, 3584)
    assert tuple(ar.language_model.embed_tokens.weight.shape) == (152064, 3584)


def test_positions_at_real_size(real_ar):
    """1.5 [verified]: <|vision_start|> at index 5 and a [1,18,18] grid: image token 0 at (6,6,6), token 10 at (6,7,7),
    token 80 at (6,14,14), the following <|vision_end|> at 15, full-sequence delta -72."""
    from nexus_core.ar.positions import prompt_positions, span_positions

    ids = [100, 101, 102, 103, 104, IDS["<|vision_start|>"]] + [IDS["<|image_pad|>"]] * 81 + [IDS["<|vision_end|>"]]
    pos, delta = prompt_positions(real_ar, torch.tensor([ids]), [real_ar.image_grid])
    img = pos[:, 0, 6:87].T
    assert img[0].tolist() == [6, 6, 6] and img[10].tolist() == [6, 7, 7] and img[80].tolist() == [6, 14, 14]
    assert pos[:, 0, 87].tolist() == [15, 15, 15] and int(delta[0]) == -72
    assert torch.equal(span_positions(5, 9), img.T)


@pytest.mark.parametrize("size,grid", [((512, 512), [1, 36, 36]), ((1024, 768), [1, 30, 42])])
def test_editing_input_at_real_size(real_ar, size, grid):
    """2.3/2.4: 512x512 -> 504x504, grid [1,36,36], 324 tokens; 1024x768 (w x h) -> 588x420, grid [1,30,42], 315
    tokens; pixel rows of 3*2*14*14 = 1176 values."""
    from PIL import Image

    from nexus_core.ar import editing_request

    req = editing_request(real_ar, Image.new("RGB", size, (120, 30, 200)), "Add a pair of sunglasses.")
    assert req.grids == [grid]
    assert tuple(req.pixels.shape) == (grid[1] * grid[2], 1176)
    assert req.token_counts(real_ar.merge) == [grid[1] * grid[2] // 4]


def test_model_folder_is_listed(real_ar_folder):
    import importlib.util

    spec = importlib.util.spec_from_file_location("nexus_paths", HERE.parent / "nodes" / "inputs" / "paths.py")
    paths = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(paths)
    assert paths.model_folders([str(real_ar_folder.parent)]) == ["Nexus-GenV2"]


# --- the decoders ----------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def real_decoders(tmp_path_factory) -> dict[str, Path]:
    """generation_decoder.bin and edit_decoder.bin with the real key sets and shapes: torch zip pickles of META bf16
    tensors (a few hundred KB; torch.load gives them back as meta tensors)."""
    folder = tmp_path_factory.mktemp("decoders")
    dit = {"pipe.dit." + k: meta(v) for k, v in dit_spec().items()}
    out = {}
    for kind, name, proj in (("generation", "generation_decoder.bin", adapter_spec()),
                             ("editing", "edit_decoder.bin", merger_spec())):
        torch.save({**{k: meta(v) for k, v in proj.items()}, **dit}, folder / name)
        out[kind] = folder / name
    return out


@pytest.mark.parametrize("kind", ["generation", "editing"])
def test_decoder_files_validate(real_decoders, kind):
    from nexus_core.decoder import read_decoder

    dec = read_decoder(real_decoders[kind])
    assert dec.kind == kind and dec.layout == "diffsynth"
    assert (dec.n_double, dec.n_single, len(dec.dit)) == (19, 38, 780)
    assert len(dec.projector) == (8 if kind == "generation" else 19)
    assert {k: tuple(v.shape) for k, v in dec.dit.items()} == dit_spec()


def test_real_size_key_set_errors_are_caught():
    from nexus_core.decoder.checkpoint import DecoderFile, validate

    dit = {k: meta(v) for k, v in dit_spec().items()}
    proj = {k[len("adapter."):]: meta(v) for k, v in adapter_spec().items()}
    validate(DecoderFile(Path("g.bin"), "generation", "diffsynth", dit, proj))
    for drop in ("blocks.18.attn.norm_k_b.weight", "single_blocks.37.proj_out.bias", "guidance_embedder."
                 "timestep_embedder.2.bias"):
        broken = {k: v for k, v in dit.items() if k != drop}
        with pytest.raises(NexusError, match="missing"):
            validate(DecoderFile(Path("g.bin"), "generation", "diffsynth", broken, proj))


# BFL / ComfyUI names and shapes (5), a sample over every kind of tensor and the last blocks
BFL_SHAPES = {
    "img_in.weight": (3072, 64), "txt_in.weight": (3072, 4096), "time_in.in_layer.weight": (3072, 256),
    "time_in.out_layer.weight": (3072, 3072), "guidance_in.in_layer.weight": (3072, 256),
    "guidance_in.out_layer.bias": (3072,), "vector_in.in_layer.weight": (3072, 768),
    "vector_in.out_layer.weight": (3072, 3072), "final_layer.adaLN_modulation.1.weight": (6144, 3072),
    "final_layer.adaLN_modulation.1.bias": (6144,), "final_layer.linear.weight": (64, 3072),
    "double_blocks.18.img_mod.lin.weight": (18432, 3072), "double_blocks.18.txt_mod.lin.bias": (18432,),
    "double_blocks.18.img_attn.qkv.weight": (9216, 3072), "double_blocks.18.txt_attn.qkv.bias": (9216,),
    "double_blocks.18.img_attn.proj.weight": (3072, 3072), "double_blocks.18.txt_attn.proj.weight": (3072, 3072),
    "double_blocks.18.img_attn.norm.query_norm.scale": (128,), "double_blocks.18.img_attn.norm.key_norm.scale": (128,),
    "double_blocks.18.txt_attn.norm.query_norm.scale": (128,), "double_blocks.18.txt_attn.norm.key_norm.scale": (128,),
    "double_blocks.18.img_mlp.0.weight": (12288, 3072), "double_blocks.18.img_mlp.2.weight": (3072, 12288),
    "double_blocks.18.txt_mlp.0.bias": (12288,), "double_blocks.18.txt_mlp.2.weight": (3072, 12288),
    "single_blocks.37.modulation.lin.weight": (9216, 3072), "single_blocks.37.linear1.weight": (21504, 3072),
    "single_blocks.37.linear1.bias": (21504,), "single_blocks.37.norm.query_norm.scale": (128,),
    "single_blocks.37.norm.key_norm.scale": (128,), "single_blocks.37.linear2.weight": (3072, 15360),
}


@pytest.fixture(scope="module")
def real_bfl(real_decoders) -> dict[str, torch.Tensor]:
    from nexus_core.decoder import read_decoder
    from nexus_core.decoder.dit import comfyui_state

    return comfyui_state(read_decoder(real_decoders["generation"]))


def test_bfl_map_at_real_size(real_bfl):
    assert len(real_bfl) == DIT_TENSORS
    assert all(v.is_meta for v in real_bfl.values())
    shapes = {k: tuple(v.shape) for k, v in real_bfl.items()}
    assert {k: shapes.get(k) for k in BFL_SHAPES} == BFL_SHAPES
    assert sum(math.prod(s) for s in shapes.values()) == DIT_PARAMS
    assert not any(k.startswith(("blocks.", "pipe.", "adapter.")) for k in shapes)


def test_final_layer_halves_swap_at_real_size():
    """(scale, shift) -> (shift, scale) on the 6144 rows: the BFL rows 0..3071 are DiffSynth's rows 3072..6143."""
    from nexus_core.decoder.keymap import convert_state_dict

    w = torch.arange(6144, dtype=torch.float32).unsqueeze(1).expand(6144, 2)
    out = convert_state_dict({"final_norm_out.linear.weight": w, "x_embedder.weight": meta((3072, 64))},
                             "comfyui")["final_layer.adaLN_modulation.1.weight"]
    assert out[0, 0] == 3072 and out[3071, 0] == 6143 and out[3072, 0] == 0 and out[6143, 0] == 3071


def test_diffusers_map_agrees_with_diffusers_converter_at_real_size(real_bfl):
    """Our DiffSynth->diffusers map (1160 tensors, q/k/v split at the real 3072 rows) equals diffusers' own
    BFL->diffusers converter applied to our BFL map, name for name and shape for shape."""
    from diffusers.loaders.single_file_utils import convert_flux_transformer_checkpoint_to_diffusers

    from nexus_core.decoder.keymap import bfl_to_diffsynth, convert_state_dict

    dit = {k: meta(v) for k, v in dit_spec().items()}
    ours = convert_state_dict(dit, "diffusers")
    theirs = convert_flux_transformer_checkpoint_to_diffusers(dict(real_bfl))
    assert len(ours) == DIFFUSERS_TENSORS
    assert {k: tuple(v.shape) for k, v in ours.items()} == {k: tuple(v.shape) for k, v in theirs.items()}
    assert tuple(ours["single_transformer_blocks.37.proj_mlp.weight"].shape) == (12288, 3072)
    assert tuple(ours["transformer_blocks.18.attn.add_v_proj.weight"].shape) == (3072, 3072)
    back = bfl_to_diffsynth(real_bfl)
    assert {k: tuple(v.shape) for k, v in back.items()} == dit_spec()


def test_diffusers_flux_strict_load_on_meta(real_decoders):
    from nexus_core.decoder import read_decoder
    from nexus_core.decoder.dit import config_from_state, diffusers_state
    from nexus_core.loading.meta_init import from_state

    from diffusers import FluxTransformer2DModel

    sd = diffusers_state(read_decoder(real_decoders["editing"]))
    cfg = config_from_state(sd)
    assert cfg == {**DIFFUSERS_CONFIG, "out_channels": 64}
    model = from_state(lambda: FluxTransformer2DModel(**cfg), sd, torch.bfloat16, "real-size DiT")
    assert sum(p.numel() for p in model.parameters()) == DIT_PARAMS
    assert all(p.is_meta for p in model.parameters())


@pytest.mark.parametrize("with_config", [True, False])
def test_projectors_on_meta_at_real_size(real_decoders, with_config):
    """build_projector with the real AR config (and without one: the projector loader's fallback for a file with no
    config.json beside it) gives the reference's modules: adapter 3584->4096; merger = one Qwen2.5-VL-7B layer (28
    heads, 4 KV heads, head 128, MLP 18944, RMSNorm eps 1e-6, M-RoPE [16,24,24] theta 1e6) + 3584->16384->4096."""
    from nexus_core.decoder import read_decoder
    from nexus_core.decoder.loaded import project, projector_width
    from nexus_core.decoder.projectors import build_projector, context_width

    cfg = REAL_CONFIG if with_config else None
    gen = build_projector(read_decoder(real_decoders["generation"]), cfg, torch.bfloat16, META)
    assert (context_width("generation", gen), projector_width("generation", gen)) == (4096, 3584)
    assert round(sum(p.numel() for p in gen.parameters()) / 1e6, 1) == 31.5
    ctx, _, _ = project("generation", gen, meta((1, 81, 3584)))
    assert tuple(ctx.shape) == (1, 81, 4096)

    edit = build_projector(read_decoder(real_decoders["editing"]), cfg, torch.bfloat16, META)
    assert (context_width("editing", edit), projector_width("editing", edit)) == (4096, 3584)
    layer = edit.layers[0]
    attn = layer.self_attn
    assert len(edit.layers) == 1
    assert (attn.config.num_attention_heads, attn.config.num_key_value_heads, attn.head_dim) == (28, 4, 128)
    assert attn.is_causal is False
    assert layer.mlp.gate_proj.out_features == 18944
    assert layer.input_layernorm.variance_epsilon == 1e-6 and edit.projector[0].variance_epsilon == 1e-6
    rope = edit.rotary.config.rope_parameters
    assert rope["mrope_section"] == [16, 24, 24] and rope["rope_theta"] == 1e6
    assert [edit.projector[i].out_features for i in (1, 4)] == [16384, 4096]
    assert round(sum(p.numel() for p in edit.parameters()) / 1e6) == 359
    ctx, tgrid, rgrid = project("editing", edit, meta((1, 81, 3584)), meta((1, 324, 3584)))
    assert tuple(ctx.shape) == (1, 405, 4096) and tgrid == (1, 18, 18) and rgrid == (1, 36, 36)


def test_editing_text_ids_at_real_size():
    """4.3: 405 ids for a 512x512 latent, bf16: target rows {0, 3.5625, 7.125, ...28.5}, reference axis 0 = 1."""
    from nexus_core.decoder.ids import editing_text_ids

    ids = editing_text_ids(512, 512, (1, 18, 18), (1, 36, 36), True, torch.bfloat16)
    assert tuple(ids.shape) == (405, 3)
    rows = sorted({float(v) for v in ids[:81, 1]})
    assert rows == [0, 3.5625, 7.125, 10.6875, 14.25, 17.75, 21.375, 24.875, 28.5]
    assert set(ids[:81, 0].tolist()) == {0.0} and set(ids[81:, 0].tolist()) == {1.0}


def _plan_bytes(plan) -> int:
    total = 0
    for _, t, sl, dtype in plan:
        total += math.prod((sl(t) if sl else t).shape) * dtype.itemsize
    return total


@pytest.mark.parametrize("layout", ["comfyui", "diffusers"])
def test_converter_plan_at_real_size(real_decoders, layout):
    """`nexus-gen convert` planned on the real key set: one entry per output tensor, bf16 sizes = 2 bytes per parameter
    (about 23.8 GB DiT, 6), fp8 = 1 byte for each 2-D DiT weight with 16-bit biases/norms (about 11.9 GB, 6)."""
    from nexus_core.decoder import read_decoder
    from nexus_core.decoder.convert import _plan

    for kind, n_proj, proj_params in (("generation", 8, 31_481_856), ("editing", 19, None)):
        dec = read_decoder(real_decoders[kind])
        plan = _plan(dec, layout, torch.bfloat16)
        names = [p[0] for p in plan]
        assert len(names) == len(set(names)) == (DIT_TENSORS if layout == "comfyui" else DIFFUSERS_TENSORS) + n_proj
        proj = (adapter_spec() if kind == "generation" else merger_spec())
        assert {p[0]: tuple(p[1].shape) for p in plan if p[0] in proj} == proj
        dit_bytes = _plan_bytes([p for p in plan if p[0] not in proj])
        assert dit_bytes == 2 * DIT_PARAMS
        assert round(dit_bytes / 1e9, 1) == 23.8
        if proj_params:
            assert _plan_bytes([p for p in plan if p[0] in proj]) == 2 * proj_params
        fp8 = _plan(dec, layout, torch.float8_e4m3fn)
        fp8_dit = _plan_bytes([p for p in fp8 if p[0] not in proj])
        assert round(fp8_dit / 1e9, 1) == 11.9
        assert all(p[3] == torch.bfloat16 for p in fp8 if p[0] in proj or len(p[1].shape) == 1)


def test_gguf_plan_at_real_size(real_decoders, tmp_path):
    """The GGUF writer's tensor infos for the real generation decoder (written, then cancelled before any data): every
    2-D DiT weight is Q8_0 (all row lengths are multiples of its 32-value blocks: none falls back to F16), 1-D tensors
    F32, the adapter BF16/F32; the file a real conversion writes is ~12.7 GB (34 bytes per 32 weights, F32 biases).
    The projector loader's GGUF reader then finds the adapter with its (4096, 3584) shape."""
    gguf = pytest.importorskip("gguf")
    from nexus_core.decoder import read_decoder
    from nexus_core.decoder.convert import _plan
    from nexus_core.decoder.gguf_file import DIT_PREFIX, read_gguf, write_gguf
    from nexus_core.errors import NexusCancelled

    plan = _plan(read_decoder(real_decoders["generation"]), "comfyui", torch.bfloat16)
    out = tmp_path / "g.gguf"
    with pytest.raises(NexusCancelled):
        write_gguf(plan, out, "generation", "Q8_0", {"kind": "generation"}, should_stop=lambda: True)
    # Extend the header-only file to the size the data needs (a hole): the reader then maps every tensor.
    q8 = gguf.GGMLQuantizationType.Q8_0
    f32, bf16 = gguf.GGMLQuantizationType.F32, gguf.GGMLQuantizationType.BF16
    data = 0
    for name, t, sl, _ in plan:
        n = math.prod((sl(t) if sl else t).shape)
        if name.startswith("adapter."):
            size = n * (4 if t.dim() == 1 else 2)
        else:
            size = n * 4 if t.dim() == 1 else n // 32 * 34
        data += -(-size // 32) * 32  # GGUF alignment
    header = -(-out.stat().st_size // 32) * 32  # the data section starts aligned
    with open(out, "r+b") as f:
        f.truncate(header + data)  # a hole: no disk used
    reader = gguf.GGUFReader(str(out))
    types = {t.name: t.tensor_type for t in reader.tensors}
    assert len(types) == 788
    dit_2d = {DIT_PREFIX + k for k, s in BFL_SHAPES.items() if len(s) == 2}
    assert all(types[k] == q8 for k in dit_2d)
    # every DiT Linear weight: 10 global, 10 per double block, 3 per single block
    assert sum(ty == q8 for ty in types.values()) == 10 + 19 * 10 + 38 * 3
    assert all(ty == f32 for k, ty in types.items() if k.startswith(DIT_PREFIX) and ty != q8)
    assert types["adapter.0.weight"] == bf16 and types["adapter.0.bias"] == f32
    end = max(int(t.data_offset) + int(t.n_bytes) for t in reader.tensors)
    assert end == header + data  # the writer declared exactly the sizes of these storage rules
    assert round(end / 1e9, 1) == 12.7
    state, _ = read_gguf(out, dit=False)
    assert {k: tuple(v.shape) for k, v in state.items()} == {k: v for k, v in adapter_spec().items()}


# --- ComfyUI's own FLUX detection, in ComfyUI's Python -------------------------------------------------------------
@pytest.mark.comfyui
def test_comfyui_detects_the_real_decoders(real_decoders, tmp_path):
    """On the real BFL key set (as meta tensors) ComfyUI recognises FLUX.1-dev: hidden 3072, 24 heads, context 4096,
    vec_in 768, depth 19 / 38, guidance embed, 16 latent channels, patch 2, RoPE axes [16,56,56]; its model class
    (built on meta) takes the state dict strictly; our host_describes is True, so the Decoder Loader takes the native
    loader route. Both decoders (their DiTs have the same key set)."""
    root = os.environ.get("COMFYUI_PATH")
    if not root or not (Path(root) / "main.py").is_file():
        pytest.skip("COMFYUI_PATH is not set: ComfyUI's detection needs a ComfyUI checkout")
    from nexus_core.decoder import read_decoder
    from nexus_core.decoder.dit import comfyui_state

    shapes = {}
    for kind, path in real_decoders.items():
        shapes[kind] = {k: list(v.shape) for k, v in comfyui_state(read_decoder(path)).items()}
    (tmp_path / "shapes.json").write_text(json.dumps(shapes))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(HERE / "comfyui" / "shim"),
                                                       os.environ.get("PYTHONPATH", "")]))
    r = subprocess.run([os.environ.get("COMFYUI_PYTHON", sys.executable), str(HERE / "comfyui" / "full_size_probe.py"),
                        root, str(HERE.parent), str(tmp_path / "shapes.json"), str(tmp_path / "out.json")],
                       cwd=root, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    result = json.loads((tmp_path / "out.json").read_text())
    for kind in ("generation", "editing"):
        res = result[kind]
        cfg = res["detected"]
        print(kind, cfg)
        assert cfg["image_model"] == "flux"
        assert (cfg["hidden_size"], cfg["num_heads"], cfg["context_in_dim"], cfg["vec_in_dim"]) == (3072, 24, 4096, 768)
        assert (cfg["depth"], cfg["depth_single_blocks"], cfg["guidance_embed"]) == (19, 38, True)
        assert (cfg["in_channels"], cfg["patch_size"], cfg["axes_dim"], cfg["theta"]) == (16, 2, [16, 56, 56], 10000)
        assert res["model_config"] == "Flux"
        assert res["host_describes"] is True
        assert res["missing"] == [] and res["unexpected"] == []
        assert res["params"] == DIT_PARAMS
