"""Issue #10, class 4: every image mode is read as the picture it is.

The oracle is always an 8-bit RGB picture made here; each odd file is derived from it (16-bit, 1-bit, palette,
CMYK, rotated with an EXIF tag, animated), and reading it back must give that picture (exactly where the
derivation is lossless, within a tolerance where JPEG is involved).
"""
import logging
import struct
import zlib

import numpy as np
import pytest
import torch
from PIL import Image

from nexus_core.errors import NexusError
from nexus_core.images.read import load_image
from nexus_core.images.tensors import one_image, pil_to_tensor, tensor_to_pil, tensor_to_pils


@pytest.fixture(scope="module")
def picture():
    """A smooth 60x80 RGB picture with every channel different (so a rotation or channel swap shows)."""
    y, x = np.mgrid[0:60, 0:80]
    return np.stack([x * 3, y * 4, (x + y) * 2], -1).clip(0, 255).astype(np.uint8)


def _png16(path, arr16):
    """A 16-bit PNG written byte by byte (PIL cannot write 16-bit colour): the file does not come from PIL."""
    h, w, c = arr16.shape
    color_type = {1: 0, 2: 4, 3: 2, 4: 6}[c]
    raw = b"".join(b"\x00" + arr16[i].astype(">u2").tobytes() for i in range(h))

    def chunk(tag, data):
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)

    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 16, color_type, 0, 0, 0))
                     + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))
    return path


def _read(path):
    return np.asarray(load_image(path)).astype(int)


def test_8bit_rgb_is_unchanged(tmp_path, picture):
    """Parity: 8-bit RGB files give exactly what PIL's convert('RGB') gave before."""
    p = tmp_path / "rgb.png"
    Image.fromarray(picture).save(p)
    assert np.array_equal(_read(p), np.asarray(Image.open(p).convert("RGB")))
    assert np.array_equal(_read(p), picture)
    jpg = tmp_path / "rgb.jpg"
    Image.fromarray(picture).save(jpg, quality=90)
    assert np.array_equal(_read(jpg), np.asarray(Image.open(jpg).convert("RGB")))


def test_16bit_grey_png(tmp_path, picture):
    grey8 = picture[..., 1]
    p = _png16(tmp_path / "g16.png", grey8[..., None].astype(np.uint16) * 257)
    assert Image.open(p).mode.startswith("I")  # the mode PIL's convert('RGB') clipped to white
    assert np.array_equal(_read(p), np.repeat(grey8[..., None], 3, -1))


def test_16bit_grey_png_that_pil_writes(tmp_path, picture):
    grey8 = picture[..., 0]
    p = tmp_path / "g16pil.png"
    Image.fromarray(grey8.astype(np.uint16) * 257).save(p)
    assert np.array_equal(_read(p), np.repeat(grey8[..., None], 3, -1))


def test_16bit_colour_and_alpha_pngs(tmp_path, picture):
    p = _png16(tmp_path / "c16.png", picture.astype(np.uint16) * 257)
    assert np.array_equal(_read(p), picture)
    alpha = np.zeros(picture.shape[:2] + (1,), np.uint16)
    alpha[:, 40:] = 65535
    p = _png16(tmp_path / "c16a.png", np.concatenate([picture.astype(np.uint16) * 257, alpha], -1))
    want = np.where(alpha > 0, picture, 255)  # transparent half on white
    assert np.array_equal(_read(p), want)
    grey = picture[..., 2:3].astype(np.uint16) * 257
    p = _png16(tmp_path / "la16.png", np.concatenate([grey, alpha], -1))
    assert np.array_equal(_read(p), np.where(alpha > 0, np.repeat(picture[..., 2:3], 3, -1), 255))


def test_1bit_png(tmp_path, picture):
    bits = picture[..., 0] > 120
    p = tmp_path / "b.png"
    Image.fromarray(bits).convert("1").save(p)
    assert np.array_equal(_read(p), np.repeat(bits[..., None] * 255, 3, -1))


def test_palette_with_transparency(tmp_path, picture):
    pal = Image.fromarray(picture).quantize(32)
    idx = np.asarray(pal)
    clear = int(idx[0, 0])
    p = tmp_path / "p.png"
    pal.save(p, transparency=clear)
    colours = np.asarray(pal.convert("RGB"))
    want = np.where((idx == clear)[..., None], 255, colours)
    assert (idx == clear).any() and not (idx == clear).all()
    assert np.array_equal(_read(p), want)


def test_cmyk_jpeg(tmp_path, picture):
    p = tmp_path / "cmyk.jpg"
    Image.fromarray(picture).convert("CMYK").save(p, quality=95)
    assert Image.open(p).mode == "CMYK"
    assert np.abs(_read(p) - picture).mean() < 3  # JPEG loss only; inverted CMYK would be ~130 off


@pytest.mark.parametrize("orientation,stored_as", [
    (3, Image.Transpose.ROTATE_180), (6, Image.Transpose.ROTATE_90), (8, Image.Transpose.ROTATE_270),
    (2, Image.Transpose.FLIP_LEFT_RIGHT)])
def test_exif_rotated_jpeg(tmp_path, picture, orientation, stored_as):
    """A camera stores the sensor's pixels and an orientation tag; viewers show the upright picture."""
    exif = Image.Exif()
    exif[0x0112] = orientation
    p = tmp_path / f"o{orientation}.jpg"
    Image.fromarray(picture).transpose(stored_as).save(p, exif=exif, quality=95)
    got = _read(p)
    assert got.shape == picture.shape
    assert np.abs(got - picture).mean() < 3


@pytest.mark.parametrize("ext", ["gif", "webp", "png"])
def test_animated_first_frame_said_once(tmp_path, picture, ext, caplog):
    frames = [Image.fromarray(picture), Image.fromarray(255 - picture), Image.fromarray(picture[::-1].copy())]
    p = tmp_path / f"anim.{ext}"
    extra = {"lossless": True} if ext == "webp" else {}
    frames[0].save(p, save_all=True, append_images=frames[1:], duration=100, loop=0, **extra)
    first = np.asarray(Image.open(p).convert("RGB")) if ext == "gif" else picture  # GIF quantises
    with caplog.at_level(logging.WARNING):
        for _ in range(3):  # editing reads the image twice (instruction + reference): one message
            assert np.array_equal(_read(p), first)
    said = [r for r in caplog.records if "animated" in r.getMessage()]
    assert len(said) == 1 and "3 frames" in said[0].getMessage() and "first frame" in said[0].getMessage()


def test_arrays_of_every_dtype(picture):
    assert np.array_equal(np.asarray(load_image(picture)), picture)
    assert np.array_equal(np.asarray(load_image(picture.astype(np.uint16) * 257)), picture)
    assert np.array_equal(np.asarray(load_image(picture / 255.0)), picture)
    with pytest.raises(NexusError, match="NaN"):
        load_image(np.full((4, 4, 3), np.nan))


def test_truncated_file(tmp_path):
    p = tmp_path / "t.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (60, 80, 3), dtype=np.uint8)).save(p)
    data = p.read_bytes()
    p.write_bytes(data[:len(data) // 2])
    with pytest.raises(NexusError, match="Cannot read image .*t.png"):
        load_image(p)


# --- ComfyUI IMAGE tensors ([B, H, W, C] float 0..1) ------------------------------------------------------


def _as_tensor(arr_uint8):
    return torch.from_numpy(arr_uint8).float().div(255).unsqueeze(0)


def test_tensor_rgb_is_bit_identical_to_the_old_conversion(picture):
    x = torch.rand(2, 17, 23, 3, generator=torch.Generator().manual_seed(0)) * 1.2 - 0.1  # also out of range
    for i in range(2):
        old = (x[i, ..., :3].clamp(0, 1).numpy() * 255).round().astype(np.uint8)  # what the nodes did
        assert np.array_equal(np.asarray(tensor_to_pil(x, i)), old)
    assert np.array_equal(np.asarray(tensor_to_pil(_as_tensor(picture))), picture)


def test_tensor_alpha_composited_on_white(picture):
    alpha = np.linspace(0, 255, picture.shape[1]).round().astype(np.uint8)[None, :, None].repeat(60, 0)
    rgba = np.concatenate([picture, alpha], -1)
    # independent oracle: PIL's own compositing of the same RGBA picture over white
    want = Image.alpha_composite(Image.new("RGBA", (80, 60), (255, 255, 255, 255)), Image.fromarray(rgba))
    got = np.asarray(tensor_to_pil(_as_tensor(rgba))).astype(int)
    assert np.abs(got - np.asarray(want.convert("RGB")).astype(int)).max() <= 1


def test_tensor_grey_and_grey_alpha(picture):
    grey = picture[..., :1]
    assert np.array_equal(np.asarray(tensor_to_pil(_as_tensor(grey))), np.repeat(grey, 3, -1))
    ga = np.concatenate([grey, np.zeros_like(grey)], -1)  # fully transparent
    assert (np.asarray(tensor_to_pil(_as_tensor(ga))) == 255).all()


def test_tensor_batch_where_one_image_is_expected(picture, caplog):
    batch = torch.cat([_as_tensor(picture), _as_tensor(255 - picture)])
    with caplog.at_level(logging.WARNING):
        assert np.array_equal(np.asarray(one_image(batch, "image")), picture)
    assert "a batch of 2 images where one is expected; using the first" in caplog.text
    with pytest.raises(NexusError, match="image: expected one image, got a batch of 2"):
        one_image(batch, "image", allow_batch=False)
    assert [np.asarray(p)[0, 0, 0] for p in tensor_to_pils(batch)] == [picture[0, 0, 0], 255 - picture[0, 0, 0]]


def test_tensor_edge_cases():
    one = torch.full((1, 1, 1, 3), 0.5)
    assert tensor_to_pil(one).size == (1, 1) and np.asarray(tensor_to_pil(one))[0, 0, 0] == 128
    assert np.asarray(tensor_to_pil(one.bfloat16()))[0, 0, 0] == 128  # half floats cannot go to numpy directly
    assert tensor_to_pil(torch.zeros(5, 7, 3)).size == (7, 5)  # a single [H, W, C] image
    for bad, msg in [(torch.zeros(0, 8, 8, 3), "empty"), (torch.zeros(1, 3, 64, 64), "is it a \\[B, C, H, W\\]"),
                     (torch.full((1, 4, 4, 3), float("nan")), "NaN"), (torch.zeros(1, 4, 4, 3, dtype=torch.int32),
                                                                       "expected a float IMAGE tensor"),
                     ("not a tensor", "expected an IMAGE tensor")]:
        with pytest.raises(NexusError, match=msg):
            tensor_to_pil(bad, name="image")
    with pytest.raises(NexusError, match="no image 3 in a batch of 1"):
        tensor_to_pil(one, 3)


def test_pil_to_tensor_round_trip(picture):
    t = pil_to_tensor([Image.fromarray(picture), Image.fromarray(picture).convert("LA")])
    assert t.shape == (2, 60, 80, 3) and t.dtype == torch.float32
    assert np.array_equal(np.asarray(tensor_to_pil(t, 0)), picture)


def test_one_pixel_image_runs_through_the_ar(tiny_ar):
    """A 1x1 IMAGE tensor is a valid picture for every AR path (resized up like any small image)."""
    from nexus_core.ar import editing_request, encode_image, understand
    pil = tensor_to_pil(torch.full((1, 1, 1, 3), 0.25))
    assert encode_image(tiny_ar, pil, 81).shape == (81, tiny_ar.hidden_size)
    assert editing_request(tiny_ar, pil, "make it red").grids
    assert isinstance(understand(tiny_ar, "what?", pil, max_new_tokens=2), str)
