"""cnnlab.data.fit, the one resize geometry: files (decode_image) and arrays (fit_array) agree."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from PIL import Image

from cnnlab.data.decode import decode_image
from cnnlab.data.fit import fit_array, fit_image, fit_pixels


@pytest.fixture(scope="module")
def picture(tmp_path_factory):
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, (30, 50, 3), dtype=np.uint8)
    pixels[:, :5] = (255, 0, 0)  # a red left edge: what crop cuts off and pad keeps
    path = tmp_path_factory.mktemp("img") / "wide.png"
    Image.fromarray(pixels).save(path)
    return path, pixels


@pytest.mark.parametrize("resize", ["pad", "crop", "stretch"])
@pytest.mark.parametrize("fill", ["black", "border"])
def test_arrays_are_fitted_exactly_as_files(picture, resize, fill):
    path, pixels = picture
    from_file = decode_image(path, size=16, resize=resize, fill=fill).astype(np.float64)
    from_array = fit_array(pixels.transpose(2, 0, 1) / 255.0, 16, resize, fill) * 255
    assert from_array.dtype == np.float32 and from_array.shape == (3, 16, 16)
    assert np.abs(from_file - from_array).max() <= 1.0  # uint8 rounding only


def test_non_square_targets_pad_and_crop_on_the_right_sides():
    x = np.ones((1, 10, 10), dtype=np.float32)
    padded = fit_array(x, (4, 8))  # a square into a wide frame: bands left and right
    assert padded.shape == (1, 4, 8)
    assert (padded[0, :, :2] == 0).all() and (padded[0, :, 2:6] == 1).all() and (padded[0, :, 6:] == 0).all()
    wide = np.zeros((1, 10, 20), dtype=np.float32)
    wide[0, :, 8:12] = 1.0
    cropped = fit_array(wide, (10, 10), "crop")
    assert cropped.shape == (1, 10, 10) and cropped[0, :, 4:6].min() > 0.9 and cropped[0, :, 0].max() < 0.1


def test_border_fill_uses_the_image_background():
    im = Image.new("L", (40, 20), 200)
    assert fit_image(im, 8, "pad", "border").getpixel((0, 0)) == 200
    assert fit_image(im, 8, "pad", "black").getpixel((0, 0)) == 0
    flt = fit_array(np.full((2, 20, 40), 0.25, dtype=np.float32), 8, "pad", "border")
    np.testing.assert_allclose(flt, 0.25)


@pytest.mark.parametrize("resize", ["pad", "crop", "stretch"])
@pytest.mark.parametrize("fill", ["black", "border"])
@pytest.mark.parametrize("mode", ["L", "RGB"])
def test_decoded_pixels_are_fitted_as_pillow_fits_them(resize, fill, mode):
    rng = np.random.default_rng(1)
    for h, w, size in [(30, 50, 16), (50, 30, (12, 20)), (9, 13, 40), (64, 64, 24), (24, 24, 24)]:
        im = Image.fromarray(rng.integers(0, 256, (4, 4, 3), dtype=np.uint8)).resize((w, h)).convert(mode)
        pixels = np.asarray(im)  # read-only, as Pillow gives it
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # no warning, read-only input or not
            ours = fit_pixels(pixels, size, resize, fill)
        pillow = np.asarray(fit_image(im, size, resize, fill))
        pillow = pillow[None] if pillow.ndim == 2 else pillow.transpose(2, 0, 1)
        assert ours.dtype == np.uint8 and ours.shape == pillow.shape and ours.flags.c_contiguous
        assert np.abs(ours.astype(int) - pillow).max() <= 1  # the same filter, rounded within one level
        assert np.abs(ours.astype(int) - pillow).mean() < 0.2  # not a bias: most pixels equal
