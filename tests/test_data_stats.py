"""channel_stats: the one per-channel mean/std, population std in float64, chunked, for tensors and arrays."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest
import torch

from cnnlab.data import channel_stats
from cnnlab.data.stats import MIN_STD
from cnnlab.errors import CnnlabError


def _images(n=37, c=3, h=5, w=7, seed=0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, c, h, w), dtype=np.uint8)


@pytest.mark.parametrize("chunk", [1, 4, 36, 37, 1000])
def test_matches_numpy_population_statistics_whatever_the_chunk(chunk):
    x = _images()
    mean, std = channel_stats(x, chunk=chunk)
    ref = x.astype(np.float64) / 255.0
    np.testing.assert_allclose(mean, ref.mean(axis=(0, 2, 3)), rtol=0, atol=1e-12)
    np.testing.assert_allclose(std, ref.std(axis=(0, 2, 3)), rtol=0, atol=1e-12)  # ddof=0
    assert isinstance(mean, list) and isinstance(std[0], float) and len(mean) == 3


def test_tensor_array_and_read_only_memmap_agree(tmp_path):
    x = _images(seed=1)
    np.save(tmp_path / "x.npy", x)
    mapped = np.load(tmp_path / "x.npy", mmap_mode="r")  # what the folder cache hands out
    expected = channel_stats(x)
    assert channel_stats(torch.from_numpy(x)) == expected
    assert channel_stats(mapped) == expected


def test_constant_channel_gets_the_floor_not_zero():
    x = np.zeros((4, 2, 3, 3), dtype=np.uint8)
    x[:, 1] = 200
    mean, std = channel_stats(x)
    assert mean == pytest.approx([0.0, 200 / 255])
    assert std == [MIN_STD, MIN_STD]


def test_does_not_materialise_a_float_copy():
    x = _images(n=2000, c=3, h=32, w=32)  # 6 MB of uint8; a float64 copy would be 49 MB
    tracemalloc.start()
    try:
        channel_stats(x, chunk=64)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 8 * 2**20, peak


@pytest.mark.parametrize(
    "bad, message",
    [
        (np.zeros((2, 1, 3, 3), dtype=np.float32), "uint8"),
        (torch.zeros(2, 1, 3, 3), "uint8"),
        (np.zeros((3, 3), dtype=np.uint8), r"\(N, C, H, W\)"),
        (np.zeros((0, 1, 3, 3), dtype=np.uint8), "N >= 1"),
    ],
)
def test_refuses_what_is_not_uint8_images(bad, message):
    with pytest.raises(CnnlabError, match=message):
        channel_stats(bad)
