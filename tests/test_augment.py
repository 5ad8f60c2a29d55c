"""Device-side augmentation and test-time augmentation."""

from __future__ import annotations

import pytest
import torch

from cnnlab.engine import Augment, tta_probs
from cnnlab.engine.tta import view


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


def test_bad_augment_arguments():
    with pytest.raises(ValueError):
        Augment(flip="sideways")
    with pytest.raises(ValueError):
        Augment(erasing=2.0)


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
