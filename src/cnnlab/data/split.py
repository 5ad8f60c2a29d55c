"""How the official training set is cut into train and validation: pure functions on label arrays.

Two protocols:

- `tutorial`: the post's `sklearn.model_selection.train_test_split(X, y, test_size=0.25, random_state=seed)`
  on the 60,000 official training images: 45,000 train / 15,000 validation, not stratified. Reproduced
  without scikit-learn, index for index (same `RandomState` permutation, same cut).
- `default`: 5,000 validation images stratified by class (500 per class on Fashion-MNIST), the rest train;
  a fixed-size validation set keeps more data for training while still giving stable early stopping.

The official test set is never touched here: it is always the final test split.
"""

from __future__ import annotations

import math
import numbers

import numpy as np

from cnnlab.errors import CnnlabError

__all__ = ["SPLITS", "check_seed", "split_indices", "stratified_split", "tutorial_split"]

SPLITS: dict[str, str] = {
    "tutorial": "official train shuffled and cut 75/25 (45,000/15,000), as the tutorial's train_test_split",
    "default": "official train minus 5,000 validation images stratified by class (55,000/5,000)",
}


def check_seed(seed: object) -> int:
    """Return `seed` as an int, or raise CnnlabError; the range is what `numpy.random.RandomState` takes."""
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or not 0 <= int(seed) < 2**32:
        raise CnnlabError(f"seed must be an integer from 0 to {2**32 - 1}, got {seed!r}.")
    return int(seed)


def check_protocol(
    name: str, split: object, seed: object, limit: object, *, train_size: int, val_size: int
) -> int:
    """Validate split, seed and limit before any file is read or downloaded; returns the seed as an int.
    The size of the train split follows from the protocol, so `limit` can be checked against it."""
    if not isinstance(split, str) or split not in SPLITS:
        raise CnnlabError(f"Unknown split {split!r}. Available: {', '.join(SPLITS)}.")
    seed = check_seed(seed)
    n_train = train_size - (math.ceil(0.25 * train_size) if split == "tutorial" else val_size)
    if limit is not None and (
        isinstance(limit, bool) or not isinstance(limit, int) or not 0 < limit <= n_train
    ):
        raise CnnlabError(
            f"limit must be an integer from 1 to {n_train:,} (the {split} train split of {name}), got {limit!r}."
        )
    return seed


def tutorial_split(n: int, seed: int, *, val_fraction: float = 0.25) -> tuple[np.ndarray, np.ndarray]:
    """Shuffle `range(n)` with `seed` and cut off `ceil(val_fraction * n)` for validation.

    Same indices, in the same order, as scikit-learn's `train_test_split(..., test_size=val_fraction,
    random_state=seed)`: validation is the head of `RandomState(seed).permutation(n)`, train the tail.

    Returns:
        `(train_idx, val_idx)`, int64 arrays; train is in shuffled order.

    Example:
        >>> train, val = tutorial_split(60_000, seed=0)
        >>> len(train), len(val)
        (45000, 15000)
    """
    seed = check_seed(seed)
    n_val = math.ceil(val_fraction * n)
    if not 0 < n_val < n:
        raise CnnlabError(f"Cannot cut {n} images {1 - val_fraction:.0%}/{val_fraction:.0%}.")
    perm = np.random.RandomState(seed).permutation(n).astype(np.int64)
    return perm[n_val:], perm[:n_val]


def stratified_split(labels: np.ndarray, val_size: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Pick `val_size` validation indices with the class proportions of `labels`; the rest is train.

    Each class gets `val_size * count / n` validation images, rounded by largest remainder so the total is
    exactly `val_size` (500 per class for Fashion-MNIST's 6,000 per class). Both parts are shuffled, so
    the first images of train are a mix of classes.

    Returns:
        `(train_idx, val_idx)`, int64 arrays.

    Example:
        >>> labels = np.repeat(np.arange(10), 6000)
        >>> train, val = stratified_split(labels, 5000, seed=0)
        >>> len(train), np.bincount(labels[val]).tolist()
        (55000, [500, 500, 500, 500, 500, 500, 500, 500, 500, 500])
    """
    seed = check_seed(seed)
    labels = np.asarray(labels)
    n = len(labels)
    if not 0 < val_size < n:
        raise CnnlabError(f"Validation size must be between 1 and {n - 1}, got {val_size}.")
    rng = np.random.default_rng(seed)
    classes, counts = np.unique(labels, return_counts=True)
    exact = val_size * counts / n
    quota = np.floor(exact).astype(np.int64)
    # Largest remainder: hand the leftover images to the classes that lost the most to rounding down.
    leftover = val_size - int(quota.sum())
    quota[np.argsort(-(exact - quota), kind="stable")[:leftover]] += 1

    val_parts = []
    for cls, q in zip(classes, quota, strict=True):
        members = np.flatnonzero(labels == cls)
        val_parts.append(rng.choice(members, size=int(q), replace=False))
    val = np.concatenate(val_parts)
    in_val = np.zeros(n, dtype=bool)
    in_val[val] = True
    train = np.flatnonzero(~in_val)
    return rng.permutation(train).astype(np.int64), rng.permutation(val).astype(np.int64)


def split_indices(
    split: str, labels: np.ndarray, seed: int, *, val_size: int = 5000
) -> tuple[np.ndarray, np.ndarray]:
    """Train and validation indices into the official training set for the named protocol.

    Args:
        split: `"tutorial"` (75/25, as the post) or `"default"` (`val_size` stratified).
        labels: the official training labels (only their count matters for `tutorial`).
        seed: the same seed gives the same split; different seeds give different ones.
        val_size: validation size for `default`.

    Example:
        >>> train, val = split_indices("default", np.repeat(np.arange(10), 6000), seed=1)
        >>> len(train), len(val)
        (55000, 5000)
    """
    if split == "tutorial":
        return tutorial_split(len(labels), seed)
    if split == "default":
        return stratified_split(labels, val_size, seed)
    raise CnnlabError(f"Unknown split {split!r}. Available: {', '.join(SPLITS)}.")
