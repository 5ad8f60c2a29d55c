"""cnnlab.images.load_image: every Pillow mode, bytes/paths/file objects, and every way a file can be bad."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from cnnlab.errors import CnnlabError
from cnnlab.images import GRAY_WEIGHTS, MAX_PIXELS, load_image, to_gray


def encode(im: Image.Image, fmt: str = "PNG", **kw) -> bytes:
    buf = io.BytesIO()
    im.save(buf, format=fmt, **kw)
    return buf.getvalue()


def png_header_only(width: int, height: int) -> bytes:
    """A PNG whose header claims width x height but whose data is a few bytes: a decompression bomb."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data))
            + kind
            + data
            + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
        )

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)  # 8-bit grayscale
    idat = zlib.compress(b"\x00" * (width + 1) * 2)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def test_gray_uses_the_tutorial_weights():
    rgb = np.array([[[255, 0, 0], [0, 255, 0], [0, 0, 255], [255, 255, 255]]], dtype=np.uint8)
    img = load_image(encode(Image.fromarray(rgb)), gray=True, min_side=1)
    assert img.dtype == np.float32 and img.shape == (1, 4)
    np.testing.assert_allclose(img[0], [*GRAY_WEIGHTS, 1.0], atol=1e-6)
    np.testing.assert_allclose(to_gray(rgb.astype(np.float64) / 255)[0], [*GRAY_WEIGHTS, 1.0], atol=1e-12)


def test_rgb_shape_range_and_contiguity(tmp_path):
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, size=(11, 9, 3), dtype=np.uint8)
    path = tmp_path / "x.png"
    Image.fromarray(rgb).save(path)
    img = load_image(path)
    assert img.shape == (11, 9, 3) and img.dtype == np.float32 and img.flags.c_contiguous
    np.testing.assert_allclose(img, rgb / 255.0, atol=1e-6)
    assert load_image(str(path), gray=True).shape == (11, 9)
    with open(path, "rb") as fh:  # a binary file object, as web frameworks hand over uploads
        np.testing.assert_array_equal(load_image(fh), img)


@pytest.mark.parametrize(
    "make",
    [
        lambda: Image.new("P", (12, 9), 0),
        lambda: Image.new("CMYK", (12, 9), (0, 0, 0, 0)),
        lambda: Image.new("L", (12, 9), 255),
        lambda: Image.new("1", (12, 9), 1),
        lambda: Image.new("LA", (12, 9), (255, 255)),
        lambda: Image.new("I;16", (12, 9), 65535),
    ],
    ids=["palette", "cmyk", "gray", "bilevel", "gray+alpha", "16-bit"],
)
@pytest.mark.parametrize("fmt", ["PNG", "TIFF"])
def test_modes_convert_to_rgb_and_gray(make, fmt):
    im = make()
    if fmt == "PNG" and im.mode == "CMYK":
        pytest.skip("PNG cannot store CMYK")
    data = encode(im, fmt)
    rgb, gray = load_image(data), load_image(data, gray=True)
    assert rgb.shape == (9, 12, 3) and gray.shape == (9, 12)
    assert rgb.dtype == gray.dtype == np.float32
    assert rgb.min() >= 0.0 and rgb.max() <= 1.0
    expected = 0.0 if im.mode == "P" else 1.0  # palette index 0 is black; the others are white
    np.testing.assert_allclose(gray, expected, atol=1e-6)


def test_cmyk_jpeg():
    img = load_image(encode(Image.new("CMYK", (8, 8), (0, 255, 0, 0)), "JPEG"))
    assert img.shape == (8, 8, 3)
    assert img[..., 1].mean() < 0.2 and img[..., 0].mean() > 0.8  # magenta


def test_transparent_pixels_become_white():
    im = Image.new("RGBA", (2, 1), (0, 0, 0, 0))
    im.putpixel((1, 0), (0, 0, 0, 255))
    img = load_image(encode(im), gray=True, min_side=1)  # the default minimum side lifted
    np.testing.assert_allclose(img[0], [1.0, 0.0], atol=1e-6)


def test_animated_gif_first_frame():
    frames = [Image.new("RGB", (8, 8), c) for c in ((255, 255, 255), (0, 0, 0))]
    data = encode(frames[0], "GIF", save_all=True, append_images=frames[1:])
    np.testing.assert_allclose(load_image(data, gray=True), 1.0, atol=1e-6)


def test_exif_rotation_is_applied():
    im = Image.new("RGB", (16, 8), (255, 255, 255))
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90 degrees to display
    data = encode(im, "JPEG", exif=exif.tobytes())
    assert load_image(data).shape == (16, 8, 3)


def test_default_limit_is_documented_and_generous():
    assert MAX_PIXELS == 50_000_000


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "empty"),
        (b"this is a text file, not a picture", "not an image"),
        (png_header_only(8000, 8000), "64.0 megapixels"),  # over our 50 MP limit, checked on the header
        (
            png_header_only(30000, 30000),
            "900 megapixels, over the 50-megapixel limit",
        ),  # Pillow's own bomb guard, also turned into one line
    ],
    ids=["empty", "text", "bomb", "huge-bomb"],
)
def test_bad_bytes(data, message):
    with pytest.raises(CnnlabError, match=message) as info:
        load_image(data, name="upload.png")
    assert "upload.png" in str(info.value) and "\n" not in str(info.value)


def test_truncated_file_names_the_file(tmp_path):
    noise = np.random.default_rng(0).integers(0, 256, size=(64, 64, 3), dtype=np.uint8)
    for fmt, suffix in (("PNG", ".png"), ("JPEG", ".jpg")):
        data = encode(Image.fromarray(noise), fmt)
        path = tmp_path / f"cut{suffix}"
        path.write_bytes(data[: len(data) * 2 // 3])
        with pytest.raises(CnnlabError, match="truncated") as info:
            load_image(path)
        assert "cut" + suffix in str(info.value)


def test_max_pixels_argument(tmp_path):
    data = encode(Image.new("L", (100, 100)))
    with pytest.raises(CnnlabError, match="over the 0.005-megapixel limit"):
        load_image(data, max_pixels=5000)
    assert load_image(data, max_pixels=None).shape == (100, 100, 3)


def test_missing_and_directory(tmp_path):
    with pytest.raises(CnnlabError, match="no such file"):
        load_image(tmp_path / "nope.png")
    with pytest.raises(CnnlabError, match="it is a folder, not a regular file"):
        load_image(tmp_path)


def test_to_gray_rejects_odd_shapes():
    with pytest.raises(CnnlabError):
        to_gray(np.zeros((2, 2, 2)))


def test_a_raised_limit_still_meets_pillows_own_bomb_guard_and_says_so():
    with pytest.raises(CnnlabError, match=r"has 900 megapixels, over Pillow's own decompression-bomb limit"):
        load_image(png_header_only(30000, 30000), max_pixels=2_000_000_000)


def test_one_minimum_side_for_every_image(tmp_path):
    from cnnlab.images import MIN_IMAGE_SIDE, check_side

    assert MIN_IMAGE_SIDE == 8
    for size in ((7, 100), (100, 7), (1, 1)):
        with pytest.raises(
            CnnlabError, match=rf"is {size[0]}x{size[1]} pixels; the smallest accepted is 8x8"
        ):
            load_image(encode(Image.new("L", size)), name="small.png")
    Image.new("L", (4, 4)).save(tmp_path / "tiny.png")
    with pytest.raises(CnnlabError, match=r"'.*tiny.png' is 4x4 pixels"):
        load_image(tmp_path / "tiny.png")
    assert load_image(encode(Image.new("L", (8, 8)))).shape == (8, 8, 3)
    assert check_side(8, 8) is None and check_side(2, 2, min_side=2) is None
