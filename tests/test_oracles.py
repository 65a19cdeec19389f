"""Independent oracles for what the golden fixture cannot pin.

* The blend's slerp at intermediate weights, against the textbook formula (float64 numpy); the node helper tests
  pin only the end points and the norms.
* The understanding path's two resizes (qwen_vl_utils' process_vision_info, then the reference's bound_image) on
  large photos, against qwen_vl_utils itself when it is installed, else against a transcription of its published
  smart_resize / fetch_image arithmetic. The fixture's 150x100 image is below both bounds, so it cannot tell
  one resize from two.
"""
import importlib
import importlib.util
import math
import sys
import types

import numpy as np
import pytest
import torch
from PIL import Image

from nexus_core.ar.images import bound_image, prepare_understanding_image, smart_resize
from nexus_core.embeddings.blend import blend

# --- slerp --------------------------------------------------------------------------------------------------------


def textbook_slerp(a: np.ndarray, b: np.ndarray, t: float) -> np.ndarray:
    """Per token: the direction by Shoemake's slerp of the unit vectors, sin((1-t)W)/sin W p0 + sin(tW)/sin W p1,
    the norm interpolated linearly (what blend() documents)."""
    na, nb = np.linalg.norm(a, axis=-1, keepdims=True), np.linalg.norm(b, axis=-1, keepdims=True)
    p0, p1 = a / na, b / nb
    omega = np.arccos(np.clip((p0 * p1).sum(-1, keepdims=True), -1.0, 1.0))
    direction = (np.sin((1 - t) * omega) * p0 + np.sin(t * omega) * p1) / np.sin(omega)
    return direction * ((1 - t) * na + t * nb)


def _pair(seed=0, n=81, d=64):
    g = torch.Generator().manual_seed(seed)
    a = torch.randn(1, n, d, generator=g) * torch.rand(1, n, 1, generator=g).mul(5).add(0.5)
    b = torch.randn(1, n, d, generator=g) * torch.rand(1, n, 1, generator=g).mul(5).add(0.5)
    # a few tokens at small and at large angles, not just the ~90 degrees of random vectors
    b[0, 0] = a[0, 0] * 2 + 0.05 * torch.randn(d, generator=g)
    b[0, 1] = -a[0, 1] + 0.3 * torch.randn(d, generator=g)
    b[0, 2] = a[0, 2] + 0.5 * torch.randn(d, generator=g) * a[0, 2].norm() / d ** 0.5
    return a, b


@pytest.mark.parametrize("w", [0.25, 0.5, 0.75])
def test_slerp_equals_the_textbook_formula(w):
    a, b = _pair()
    got = blend(a, b, w, "slerp").double().numpy()
    want = textbook_slerp(a.double().numpy(), b.double().numpy(), w)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5 * np.abs(want).max())


@pytest.mark.parametrize("w", [0.25, 0.5, 0.75])
def test_slerp_angle_is_the_weighted_fraction(w):
    """Geometry, independent of any formula: the result lies at angle w*W from a and (1-w)*W from b."""
    a, b = (x.double().numpy()[0] for x in _pair(1))
    got = blend(torch.from_numpy(a)[None].float(), torch.from_numpy(b)[None].float(), w).double().numpy()[0]

    def angle(x, y):
        return np.arccos(np.clip((x * y).sum(-1) / np.linalg.norm(x, axis=-1) / np.linalg.norm(y, axis=-1), -1, 1))

    omega = angle(a, b)
    np.testing.assert_allclose(angle(a, got), w * omega, atol=2e-4)
    np.testing.assert_allclose(angle(got, b), (1 - w) * omega, atol=2e-4)


@pytest.mark.parametrize("w", [0.25, 0.5, 0.75])
def test_lerp_and_batches(w):
    a, b = _pair(2)
    np.testing.assert_allclose(blend(a, b, w, "lerp").double().numpy(),
                               (1 - w) * a.double().numpy() + w * b.double().numpy(), rtol=1e-6, atol=1e-6)
    bb = torch.cat([b, b * 3, _pair(5)[1]])
    batch = blend(a, bb, w)
    for i in range(3):
        np.testing.assert_allclose(batch[i].double().numpy(),
                                   textbook_slerp(a[0].double().numpy(), bb[i].double().numpy(), w),
                                   rtol=1e-5, atol=1e-4)


def test_slerp_of_parallel_tokens_is_finite_and_scales():
    a = torch.randn(1, 81, 64, generator=torch.Generator().manual_seed(3))
    out = blend(a, a * 3, 0.25)
    assert torch.isfinite(out).all()
    torch.testing.assert_close(out, a * 1.5, atol=1e-5, rtol=1e-5)


# --- the understanding path's resizes ---------------------------------------------------------------------------

FACTOR, MIN_PIXELS, AR_MAX_PIXELS = 28, 4 * 28 * 28, 262640
QWEN_MAX_PIXELS = 16384 * 28 * 28  # qwen_vl_utils' default bound for images (IMAGE_MAX_TOKEN_NUM * 28^2)


def _load_qwen_vl_utils():
    """qwen_vl_utils.vision_process, or None when it is not installed. It imports torchvision at module level but
    uses it only for video: without torchvision, import-only stubs stand in during the import (as in the
    fixture's reference harness) and are removed from sys.modules right after."""
    if importlib.util.find_spec("qwen_vl_utils") is None:
        return None
    stubs = {}
    if importlib.util.find_spec("torchvision") is None:
        tv = types.ModuleType("torchvision")
        tv.__version__ = "0.0.0"
        tv.io = types.ModuleType("torchvision.io")
        tv.transforms = types.ModuleType("torchvision.transforms")
        tv.transforms.InterpolationMode = type("InterpolationMode", (), {"BICUBIC": 3, "BILINEAR": 2})
        tv.transforms.functional = types.ModuleType("torchvision.transforms.functional")
        stubs = {"torchvision": tv, "torchvision.io": tv.io, "torchvision.transforms": tv.transforms,
                 "torchvision.transforms.functional": tv.transforms.functional}
    saved = {k: sys.modules.get(k) for k in stubs}
    sys.modules.update(stubs)
    try:
        return importlib.import_module("qwen_vl_utils.vision_process")
    finally:
        for k, v in saved.items():
            if v is None:
                sys.modules.pop(k, None)
            else:
                sys.modules[k] = v


QVU = _load_qwen_vl_utils()


def transcribed_smart_resize(height, width, factor, min_pixels, max_pixels):
    """qwen_vl_utils.smart_resize as published (0.0.11 and 0.0.14 agree for explicit arguments)."""
    if max(height, width) / min(height, width) > 200:
        raise ValueError("aspect ratio")
    h_bar = max(factor, round(height / factor) * factor)
    w_bar = max(factor, round(width / factor) * factor)
    if h_bar * w_bar > max_pixels:
        beta = math.sqrt((height * width) / max_pixels)
        h_bar = math.floor(height / beta / factor) * factor
        w_bar = math.floor(width / beta / factor) * factor
    elif h_bar * w_bar < min_pixels:
        beta = math.sqrt(min_pixels / (height * width))
        h_bar = math.ceil(height * beta / factor) * factor
        w_bar = math.ceil(width * beta / factor) * factor
    return h_bar, w_bar


def oracle_smart_resize(height, width, max_pixels):
    if QVU is not None:
        return QVU.smart_resize(height, width, factor=FACTOR, min_pixels=MIN_PIXELS, max_pixels=max_pixels)
    return transcribed_smart_resize(height, width, FACTOR, MIN_PIXELS, max_pixels)


def reference_understanding_image(image: Image.Image) -> Image.Image:
    """The reference's understanding path: process_vision_info (fetch_image: RGB, smart_resize with its own
    defaults, PIL resize with its default filter), then bound_image (smart_resize to 262640 pixels, PIL resize)."""
    if QVU is not None:
        msgs = [{"role": "user", "content": [{"type": "image", "image": image}, {"type": "text", "text": "?"}]}]
        im = QVU.process_vision_info(msgs)[0][0]
    else:
        im = image.convert("RGB")
        h, w = transcribed_smart_resize(im.height, im.width, FACTOR, MIN_PIXELS, QWEN_MAX_PIXELS)
        im = im.resize((w, h))
    h, w = oracle_smart_resize(im.height, im.width, AR_MAX_PIXELS)  # the reference's bound_image
    return im.resize((w, h))


def large_photo(width, height, seed=0) -> Image.Image:
    """Blocky random content: sharp edges everywhere, so every resampling leaves its trace."""
    rng = np.random.default_rng(seed)
    small = Image.fromarray(rng.integers(0, 256, (height // 10, width // 10, 3), dtype=np.uint8))
    return small.resize((width, height), Image.NEAREST)


@pytest.mark.parametrize("size", [(6000, 4000), (3000, 5000), (4000, 3000), (4032, 3024)])
def test_understanding_resizes_on_a_large_photo(size):
    img = large_photo(*size)
    got, want = prepare_understanding_image(img), reference_understanding_image(img)
    assert got.size == want.size
    assert np.array_equal(np.asarray(got), np.asarray(want))
    if size[0] * size[1] > QWEN_MAX_PIXELS or size == (4000, 3000):  # two different resamplings really happen
        assert not np.array_equal(np.asarray(bound_image(img)), np.asarray(want))


def test_understand_feeds_the_reference_resized_photo(tiny_ar, monkeypatch):
    """understand() itself takes that path: the image its processor step receives is the oracle's."""
    mod = importlib.import_module("nexus_core.ar.understand")
    seen = []
    real = mod.pixel_values
    monkeypatch.setattr(mod, "pixel_values", lambda im, *a, **k: seen.append(im) or real(im, *a, **k))
    img = large_photo(6000, 4000, seed=1)
    mod.understand(tiny_ar, "what is it?", img, max_new_tokens=1)
    assert len(seen) == 1
    assert np.array_equal(np.asarray(seen[0]), np.asarray(reference_understanding_image(img)))


@pytest.mark.parametrize("max_pixels", [AR_MAX_PIXELS, QWEN_MAX_PIXELS])
def test_smart_resize_arithmetic(max_pixels):
    rng = np.random.default_rng(0)
    sizes = [(h, w) for h, w in rng.integers(1, 9000, (400, 2)).tolist() if max(h, w) / min(h, w) <= 200]
    sizes += [(1, 1), (27, 29), (28, 28), (14, 42), (504, 504), (10000, 10000), (1080, 1920), (100, 150)]
    for h, w in sizes:
        assert smart_resize(h, w, max_pixels=max_pixels) == oracle_smart_resize(h, w, max_pixels), (h, w)


@pytest.mark.skipif(QVU is None, reason="qwen_vl_utils is not installed: the transcription is the oracle")
def test_transcription_equals_qwen_vl_utils():
    rng = np.random.default_rng(1)
    for h, w in rng.integers(1, 20000, (500, 2)).tolist():
        if max(h, w) / min(h, w) <= 200:
            for mp in (AR_MAX_PIXELS, QWEN_MAX_PIXELS):
                assert transcribed_smart_resize(h, w, FACTOR, MIN_PIXELS, mp) == \
                    QVU.smart_resize(h, w, factor=FACTOR, min_pixels=MIN_PIXELS, max_pixels=mp)
