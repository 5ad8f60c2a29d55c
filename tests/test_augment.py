"""Device-side augmentation and test-time augmentation."""

from __future__ import annotations

import pytest
import torch

from cnnlab.engine import Augment, tta_probs
from cnnlab.engine.augment import crop_rotate_theta, random_resized_crop
from cnnlab.engine.tta import view
from cnnlab.errors import CnnlabError


def _batch(n=16, h=12, w=10):
    g = torch.Generator().manual_seed(0)
    return torch.rand(n, 1, h, w, generator=g), torch.arange(n)


def test_augment_keeps_shape_dtype_and_is_seeded():
    x, idx = _batch()
    aug = Augment(translate=2, flip="random", erasing=0.5)
    a = aug(x, idx, seed=1, epoch=3, step=7)
    assert a.shape == x.shape and a.dtype == x.dtype
    assert torch.equal(a, aug(x, idx, seed=1, epoch=3, step=7))  # same (seed, epoch, step): same batch
    assert not torch.equal(a, aug(x, idx, seed=1, epoch=3, step=8))
    assert not torch.equal(a, aug(x, idx, seed=2, epoch=3, step=7))


def test_translate_is_a_shift_of_the_reflect_padded_image():
    x, idx = _batch(n=64)
    out = Augment(translate=1)(x, idx, seed=0, epoch=1, step=0)
    padded = torch.nn.functional.pad(x, (1, 1, 1, 1), mode="reflect")
    for i in range(len(x)):  # each output is one of the 9 crops of its own padded image
        crops = [padded[i, :, dy : dy + 12, dx : dx + 10] for dy in range(3) for dx in range(3)]
        assert any(torch.equal(out[i], c) for c in crops)


def test_alternating_flip_flips_each_image_every_other_epoch():
    x, idx = _batch(n=200)
    aug = Augment(flip="alternating")
    e1 = aug(x, idx, seed=0, epoch=1, step=0)
    e2 = aug(x, idx, seed=0, epoch=2, step=5)
    flipped1 = torch.tensor([torch.equal(e1[i], x[i].flip(2)) for i in range(200)])
    flipped2 = torch.tensor([torch.equal(e2[i], x[i].flip(2)) for i in range(200)])
    assert torch.all(flipped1 ^ flipped2)  # every image is seen both ways across two epochs
    assert 60 < int(flipped1.sum()) < 140  # about half each epoch
    # the choice belongs to the dataset index, not the batch position
    perm = torch.randperm(200)
    assert torch.equal(aug(x[perm], idx[perm], seed=0, epoch=1, step=3), e1[perm])


def test_random_erasing_zeroes_one_rectangle_per_chosen_image():
    x = torch.ones(50, 1, 20, 20)
    out = Augment(erasing=1.0)(x, torch.arange(50), seed=0, epoch=1, step=0)
    for img in out[:, 0]:
        zero = (img == 0).nonzero()
        assert len(zero) > 0
        rows, cols = zero[:, 0], zero[:, 1]
        assert len(zero) == (rows.max() - rows.min() + 1) * (cols.max() - cols.min() + 1)  # a full rectangle
    assert torch.equal(Augment(erasing=0.0)(x, torch.arange(50), seed=0, epoch=1, step=0), x)


@pytest.mark.parametrize(
    "kwargs,message",
    [
        ({"flip": "sideways"}, "Unknown --augment-flip 'sideways'. Available: none, random, alternating"),
        ({"erasing": 2.0}, "--augment-erasing must be a number in [0, 1], got 2.0"),
        ({"translate": -1}, "--augment-translate must be an integer in [0, 64], got -1"),
        ({"translate": 1.5}, "--augment-translate must be an integer, got 1.5"),
        ({"crop": 1.5}, "--augment-crop must be a number in [0, 1], got 1.5"),
        ({"crop_ratio": 0.5}, "--augment-crop-ratio must be a number in [1, 10], got 0.5"),
        ({"rotate": -3}, "--augment-rotate must be a number in [0, 180], got -3"),
        ({"jitter": "lots"}, "--augment-jitter must be a number"),
        ({"jitter": True}, "--augment-jitter must be a number"),
    ],
)
def test_bad_augment_arguments_get_one_clear_error(kwargs, message):
    with pytest.raises(CnnlabError) as e:
        Augment(**kwargs)
    assert message in str(e.value)


def test_tta_equals_mean_of_the_named_views():
    model = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), torch.nn.Flatten(), torch.nn.LazyLinear(10))
    x, _ = _batch(n=5)
    model(x)
    views = ("identity", "flip", "left", "down")
    expected = sum(torch.softmax(model(view(x, v)), 1) for v in views) / len(views)
    assert torch.allclose(tta_probs(model, x, views), expected, atol=1e-6)
    assert torch.equal(view(x, "flip"), x.flip(3))
    assert torch.equal(view(x, "left")[..., :-1], x[..., 1:])  # shifted one pixel left
    with pytest.raises(ValueError, match="Unknown TTA view"):
        view(x, "rotate")


PHOTO = Augment(crop=0.3, rotate=20, jitter=0.4, flip="random")


def _photos(n=24, c=3, h=20, w=24):
    return torch.rand(n, c, h, w, generator=torch.Generator().manual_seed(1)), torch.arange(n)


def test_photo_augmentation_is_seeded_keeps_shape_and_range():
    x, idx = _photos()
    a = PHOTO(x, idx, seed=1, epoch=2, step=3)
    assert a.shape == x.shape and a.dtype == x.dtype
    assert float(a.min()) >= 0.0 and float(a.max()) <= 1.0
    assert torch.equal(a, PHOTO(x, idx, seed=1, epoch=2, step=3))  # a pure function of (seed, epoch, step)
    assert not torch.equal(a, PHOTO(x, idx, seed=1, epoch=2, step=4))
    assert not torch.equal(a, PHOTO(x, idx, seed=1, epoch=3, step=3))
    cl = x.contiguous(memory_format=torch.channels_last)
    out = PHOTO(cl, idx, seed=1, epoch=2, step=3)
    assert out.is_contiguous(memory_format=torch.channels_last)
    assert torch.allclose(out, a, atol=1e-6)


def test_zero_strength_is_the_identity_and_inactive():
    x, idx = _photos()
    off = Augment(crop=0.0, rotate=0.0, jitter=0.0)
    assert not off.active and torch.equal(off(x, idx, seed=0, epoch=1, step=0), x)
    assert all(Augment(**{k: v}).active for k, v in [("crop", 0.5), ("rotate", 5.0), ("jitter", 0.1)])
    # the whole image at aspect 1, not turned: resampling at the pixel centres gives the pixels back
    whole = Augment(crop=1.0, crop_ratio=1.0)
    assert torch.allclose(whole(x, idx, seed=0, epoch=1, step=0), x, atol=1e-5)


def test_an_off_stage_does_not_change_the_draws_of_the_others():
    x, idx = _photos()
    base = Augment(translate=2, erasing=0.5)
    assert torch.equal(
        base(x, idx, seed=0, epoch=1, step=0),
        Augment(translate=2, erasing=0.5, crop_ratio=2.0)(x, idx, seed=0, epoch=1, step=0),
    )


def test_crop_shows_a_window_of_the_drawn_area_and_aspect():
    # channel 0 is a ramp along x, channel 1 along y: the output's span of each is the window's size
    h = w = 64
    ramp = torch.linspace(0, 1, w)
    x = torch.stack([ramp.view(1, w).expand(h, w), ramp.view(h, 1).expand(h, w)]).expand(200, 2, h, w)
    out = Augment(crop=0.3, crop_ratio=2.0)(x, torch.arange(200), seed=0, epoch=1, step=0)
    span_x = out[:, 0, :, -1].mean(1) - out[:, 0, :, 0].mean(1)
    span_y = out[:, 1, -1, :].mean(1) - out[:, 1, 0, :].mean(1)
    area = span_x * span_y
    assert float(area.min()) > 0.3 * 0.85 and float(area.max()) <= 1.0 + 1e-5
    assert float(area.std()) > 0.1  # windows of many sizes
    aspect = span_x / span_y
    assert float(aspect.min()) > 0.5 * 0.85 and float(aspect.max()) < 2.0 / 0.85
    assert bool((out[:, 0].diff(dim=2) >= -1e-6).all())  # a window is not mirrored or turned


@pytest.mark.parametrize("h,w", [(41, 41), (41, 61)])
def test_rotation_turns_content_around_the_centre_by_the_drawn_angle(h, w):
    # one bright dot 10 px right of the centre: it stays 10 px from the centre (also on a wide image,
    # where normalised x and y differ in pixel size) at minus the angle of the drawn matrix
    n, cy0, cx0 = 64, (h - 1) // 2, (w - 1) // 2
    x = torch.zeros(n, 1, h, w)
    x[:, :, cy0 - 1 : cy0 + 2, cx0 + 9 : cx0 + 12] = 1.0
    out = random_resized_crop(x, 0.0, 4 / 3, 60.0, torch.Generator().manual_seed(7))
    ys, xs = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    mass = out[:, 0].sum((1, 2))
    cy = (out[:, 0] * ys).sum((1, 2)) / mass - cy0
    cx = (out[:, 0] * xs).sum((1, 2)) / mass - cx0
    assert torch.allclose(torch.hypot(cx, cy), torch.full((n,), 10.0), atol=0.6)
    turned = torch.rad2deg(torch.atan2(cy, cx))
    assert float(turned.abs().max()) <= 60.5 and float(turned.std()) > 15  # up to 60 degrees either way
    theta = crop_rotate_theta(n, h, w, 0.0, 4 / 3, 60.0, torch.Generator().manual_seed(7), "cpu")
    drawn = torch.rad2deg(torch.atan2(theta[:, 1, 0] * h / w, theta[:, 0, 0]))  # in pixel units
    assert torch.allclose(turned, -drawn, atol=2.0)


def test_jitter_on_grey_images_equals_the_grey_of_colour_jitter():
    grey, idx = _photos(c=1)
    one = Augment(jitter=0.5)(grey, idx, seed=0, epoch=1, step=0)
    three = Augment(jitter=0.5)(grey.expand(-1, 3, -1, -1).contiguous(), idx, seed=0, epoch=1, step=0)
    assert one.shape == grey.shape and float(one.min()) >= 0 and float(one.max()) <= 1
    assert not torch.allclose(one, grey, atol=0.01)  # it does change the images
    assert torch.allclose(three, one.expand(-1, 3, -1, -1), atol=1e-5)  # grey stays grey, same factors


def test_jitter_changes_brightness_contrast_and_saturation_within_the_strength():
    x, idx = _photos(n=200)
    x = x * 0.5 + 0.25  # no clamping at 0.5 strength
    out = Augment(jitter=0.2)(x, idx, seed=0, epoch=1, step=0)
    brightness = out.mean((1, 2, 3)) / x.mean((1, 2, 3))
    assert float(brightness.min()) > 0.8 * 0.75 and float(brightness.max()) < 1.2 * 1.25
    saturation = lambda t: (t.max(1).values - t.min(1).values).mean((1, 2))  # noqa: E731
    ratio = saturation(out) / saturation(x)
    assert float(ratio.std()) > 0.03 and float(ratio.min()) > 0.8**3 * 0.9
