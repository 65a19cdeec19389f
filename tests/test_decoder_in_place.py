"""The decoder loader reads a .bin in place: ComfyUI-layout names over the memory-mapped file's own tensors, with a
copy only where the layout must rearrange data (the final adaLN's halves). It must equal the converted file that
ComfyUI's loader used to be given, tensor for tensor."""
from __future__ import annotations

import pytest
import torch

from nexus_core.decoder import read_decoder
from nexus_core.decoder.convert import convert_decoder
from nexus_core.decoder.dit import comfyui_state

REARRANGED = {"final_layer.adaLN_modulation.1.weight", "final_layer.adaLN_modulation.1.bias"}


@pytest.mark.parametrize("name", ["generation_decoder.bin", "edit_decoder.bin"])
def test_in_place_equals_the_converted_file(tiny_root, tmp_path, name):
    src = tiny_root / "Nexus-GenV2" / name
    in_place = read_decoder(src)
    converted = read_decoder(convert_decoder(src, tmp_path / "c.safetensors", "comfyui", "bf16"))
    a, b = comfyui_state(in_place), comfyui_state(converted)
    assert sorted(a) == sorted(b)
    for k in a:
        assert a[k].dtype == b[k].dtype and torch.equal(a[k], b[k]), k
    assert sorted(in_place.projector) == sorted(converted.projector)
    for k in in_place.projector:
        assert torch.equal(in_place.projector[k], converted.projector[k]), k


def test_only_the_rearranged_tensors_are_copied(tiny_root):
    """Every other ComfyUI-layout tensor is a view of the mapped file (same memory as torch.load gave)."""
    dec = read_decoder(tiny_root / "Nexus-GenV2" / "generation_decoder.bin")
    file_ptrs = {t.untyped_storage().data_ptr() for t in dec.dit.values()}
    state = comfyui_state(dec)
    copied = {k for k, t in state.items() if t.untyped_storage().data_ptr() not in file_ptrs}
    assert copied == REARRANGED
