"""What every built-in dataset shares: the fields of its spec, the options its loader takes, and the one way
its official training and test arrays become a `Dataset` (the train/val cut, `limit`, per-channel
statistics where wanted, resizing). `mnist.py` and `cifar.py` only find, check and read their files."""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import torch

from cnnlab.data.adapt import adapt_dataset, check_image_options
from cnnlab.data.split import check_protocol, split_indices
from cnnlab.data.stats import channel_stats
from cnnlab.data.types import Dataset, Split

__all__ = ["BuiltinOptions", "BuiltinSpec", "builtin_info", "check_options", "official_dataset"]


@dataclass(frozen=True, kw_only=True)
class BuiltinSpec:
    """What cnnlab knows about any built-in dataset; `IdxDataset` and `CifarSpec` add their files."""

    name: str
    description: str
    classes: tuple[str, ...]
    mirrors: tuple[str, ...]  # tried in order
    input_shape: tuple[int, int, int]
    val_size: int = 5_000  # of the `default` split


@dataclass(frozen=True)
class BuiltinOptions:
    """The options of every built-in loader (`cnnlab.data.load_data` documents them)."""

    split: str = "default"
    seed: int = 0
    data_dir: str | os.PathLike[str] | None = None
    limit: int | None = None
    download: bool = True
    image_size: int | None = None
    channels: int | None = None


def builtin_info(
    spec: BuiltinSpec, *, train_size: int, test_size: int, splits: dict[str, str], files: list[str]
) -> dict[str, Any]:
    """A built-in's `list_datasets()` entry (what `cnnlab datasets` prints)."""
    return {
        "name": spec.name,
        "description": spec.description,
        "classes": list(spec.classes),
        "input_shape": list(spec.input_shape),
        "train_size": train_size,
        "test_size": test_size,
        "splits": dict(splits),
        "urls": list(spec.mirrors),
        "files": files,
    }


def check_options(spec: BuiltinSpec, options: BuiltinOptions, *, train_size: int) -> BuiltinOptions:
    """Validate the options before any file is read or downloaded; returns them with the seed as an int."""
    check_image_options(options.image_size, options.channels, "pad", "skip")
    seed = check_protocol(
        spec.name, options.split, options.seed, options.limit, train_size=train_size, val_size=spec.val_size
    )
    return replace(options, seed=seed)


def official_dataset(
    spec: BuiltinSpec,
    train: tuple[np.ndarray, np.ndarray],
    test: tuple[np.ndarray, np.ndarray],
    options: BuiltinOptions,
    *,
    splits: dict[str, str],
    stats: bool = False,
) -> Dataset:
    """The official training arrays cut into train/val by `options.split`, the official test set as
    test, `limit` applied, then resized/converted as asked.

    Args:
        spec: the dataset.
        train, test: uint8 images (N, C, H, W) and int labels (N,) of the official sets.
        options: checked by `check_options`.
        splits: split name -> what it is in words (for `Dataset.split_description`).
        stats: compute the training split's per-channel mean/std (of the pixels the model will see).
    """
    (train_x, train_y), (test_x, test_y) = train, test
    train_idx, val_idx = split_indices(options.split, train_y, options.seed, val_size=spec.val_size)
    if options.limit is not None:
        # The index arrays are already shuffled, so their heads keep all classes.
        train_idx, val_idx = train_idx[: options.limit], val_idx[: options.limit]
        test_x, test_y = test_x[: options.limit], test_y[: options.limit]

    def make(x: np.ndarray, y: np.ndarray) -> Split:
        # Fancy indexing and ascontiguousarray copy: each split owns contiguous, writable memory.
        return Split(torch.from_numpy(np.ascontiguousarray(x)), torch.from_numpy(y.astype(np.int64)))

    data = Dataset(
        name=spec.name,
        classes=spec.classes,
        train=make(train_x[train_idx], train_y[train_idx]),
        val=make(train_x[val_idx], train_y[val_idx]),
        test=make(np.array(test_x), np.array(test_y)),
        split=options.split,
        seed=options.seed,
        limit=options.limit,
        split_description=f"{splits[options.split]}; official test set; seed {options.seed}",
    )
    data = adapt_dataset(data, image_size=options.image_size, channels=options.channels)
    if stats:
        mean, std = channel_stats(data.train.images)
        data = replace(data, mean=tuple(mean), std=tuple(std))
    return data
