"""Per-channel statistics of uint8 images: the one `channel_stats` that datasets and training normalise with."""

from __future__ import annotations

import math

import numpy as np
import torch

from cnnlab.data.mapped import MappedImages
from cnnlab.errors import CnnlabError

__all__ = ["MIN_STD", "channel_stats", "pixel_sums", "stats_from_sums"]

MIN_STD = 1.0 / 255.0
"""Smallest std returned: one grey level. A constant channel (black padding, a gray image stored as RGB)
would otherwise make normalisation divide by zero, or by a tiny number that blows up any noise."""


def channel_stats(
    images: torch.Tensor | np.ndarray | MappedImages, *, chunk: int = 1024
) -> tuple[list[float], list[float]]:
    """Per-channel mean and (population) standard deviation of uint8 images on the 0..1 scale.

    Accumulated in float64, `chunk` images at a time (per-chunk mean and sum of squared deviations,
    combined exactly), so a large dataset is never copied as floats: Fashion-MNIST's 55,000 training
    images need a few MB here, not the 350 MB of a float64 copy. A std below `MIN_STD` is raised to it.

    Args:
        images: uint8 (N, C, H, W), a torch tensor (any device), a numpy array (a memory map works) or a
            folder split's `MappedImages` view (read a chunk at a time).
        chunk: images converted to float64 at a time.

    Returns:
        `(mean, std)`, two lists of C Python floats.

    Example:
        >>> x = np.zeros((2, 1, 2, 2), dtype=np.uint8); x[1] = 255
        >>> channel_stats(x)
        ([0.5], [0.5])
    """
    shape = tuple(getattr(images, "shape", ()))
    if len(shape) != 4 or shape[0] == 0:
        raise CnnlabError(f"channel_stats needs images of shape (N, C, H, W) with N >= 1, got {shape}.")
    uint8 = images.dtype in (torch.uint8, np.uint8)  # a tensor, an array or a MappedImages view
    if not uint8:
        raise CnnlabError(f"channel_stats needs uint8 images (0..255), got {images.dtype}.")
    c = int(images.shape[1])
    count, mean, m2 = 0, np.zeros(c), np.zeros(c)
    for start in range(0, int(images.shape[0]), chunk):
        part = images[start : start + chunk]
        x = part.cpu().numpy() if isinstance(part, torch.Tensor) else np.asarray(part)
        x = x.astype(np.float64).transpose(1, 0, 2, 3).reshape(c, -1) / 255.0
        n = x.shape[1]
        part_mean = x.mean(axis=1)
        part_m2 = np.square(x - part_mean[:, None]).sum(axis=1)
        # Chan et al.'s pairwise update: exact, and stable where sum(x^2) - n*mean^2 would cancel.
        delta = part_mean - mean
        total = count + n
        mean = mean + delta * (n / total)
        m2 = m2 + part_m2 + np.square(delta) * (count * n / total)
        count = total
    std = np.maximum(np.sqrt(m2 / count), MIN_STD)
    return [float(v) for v in mean], [float(v) for v in std]


def pixel_sums(images: np.ndarray) -> np.ndarray:
    """Per image and channel, the sum of the uint8 pixels and of their squares: int64 (N, 2, C), exact.

    Example:
        >>> pixel_sums(np.full((1, 2, 2, 2), 3, dtype=np.uint8)).tolist()
        [[[12, 12], [36, 36]]]
    """
    n, c = images.shape[:2]
    rows = np.asarray(images).reshape(n * c, *images.shape[2:])  # (N, C, H, W) -> (N*C, H, W)
    # Each row is summed in uint32 (exact: under 66,000 pixels x 65,025), then the rows in int64: a third
    # faster than summing whole channels in int64, which widens every pixel to eight bytes.
    out = np.empty((n, 2, c), dtype=np.int64)
    out[:, 0] = np.add.reduce(rows, axis=2, dtype=np.uint32).sum(axis=1, dtype=np.int64).reshape(n, c)
    wide = rows.astype(np.uint16)  # 255 * 255 = 65,025 fits: squares exact
    np.multiply(wide, wide, out=wide)
    out[:, 1] = np.add.reduce(wide, axis=2, dtype=np.uint32).sum(axis=1, dtype=np.int64).reshape(n, c)
    return out


def stats_from_sums(sums: np.ndarray, pixels_per_image: int) -> tuple[list[float], list[float]]:
    """`channel_stats` of the images whose `pixel_sums` are ``sums`` (N, 2, C), without the images: the
    mean and population std on the 0..1 scale from exact integer totals (std at least `MIN_STD`).

    Example:
        >>> x = np.zeros((2, 1, 2, 2), dtype=np.uint8); x[1] = 255
        >>> stats_from_sums(pixel_sums(x), 4)
        ([0.5], [0.5])
    """
    if len(sums) == 0:
        raise CnnlabError("stats_from_sums needs the sums of at least one image.")
    m = len(sums) * pixels_per_image
    mean, std = [], []
    for total, squares in zip(sums[:, 0].sum(axis=0).tolist(), sums[:, 1].sum(axis=0).tolist(), strict=True):
        mean.append(total / (m * 255))
        var = (squares * m - total * total) / (m * m) / 65025  # exact integers, one rounding
        std.append(max(math.sqrt(max(var, 0.0)), MIN_STD))
    return mean, std
