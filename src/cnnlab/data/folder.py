"""Your own images as a dataset: a folder with one sub-folder per class, or a CSV of `path,label`.

    pets/                       pets.csv                      (paths relative to the CSV's folder;
      cat/  001.jpg 002.png       path,label                   an optional classes.txt beside it fixes
      dog/  a.jpeg  b/c.webp      img/001.jpg,cat              the class order and rejects unknown labels)
                                  img/a.jpeg,dog

Listing lives in `folder_source`, decoding in `decode`, the cache in `folder_cache`; this module splits
and returns the `Dataset`, whose splits are index views into the cache's memory map (`MappedImages`):
nothing is copied until training places the data on its device or streams it batch by batch. Every image is decoded once (in parallel) into ONE uint8 array (N, C, S, S)
cached in the user cache folder, keyed by the files' paths, sizes and modification times plus the
options, so a second run with nothing changed starts in about the time it takes to read the array.

The split is stratified: each class is cut train/val/test (70/15/15 by default) with the seed, so
every class appears in every split. Per-channel mean and std are computed on the training split and
returned in `Dataset.mean/std` (a model built with them normalises its own 0..1 input).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
import torch

from cnnlab.data.folder_cache import DEFAULT_CHANNELS, DEFAULT_IMAGE_SIZE, FolderImages, decode_folder
from cnnlab.data.folder_source import FolderSource, is_folder_dataset, scan_source
from cnnlab.data.mapped import MappedImages
from cnnlab.data.split import check_seed
from cnnlab.data.stats import channel_stats, stats_from_sums
from cnnlab.data.types import Dataset, Split
from cnnlab.errors import CnnlabError

__all__ = [
    "DEFAULT_CHANNELS",
    "DEFAULT_FRACTIONS",
    "DEFAULT_IMAGE_SIZE",
    "FolderImages",
    "check_class_counts",
    "describe_split",
    "FolderSource",
    "decode_folder",
    "folder_split",
    "is_folder_dataset",
    "load_folder",
    "parse_fractions",
    "scan_source",
]

DEFAULT_FRACTIONS = (0.70, 0.15, 0.15)


def parse_fractions(split: str) -> tuple[float, float, float]:
    """`"default"`/`"tutorial"` -> 70/15/15; `"80/10/10"` -> (0.8, 0.1, 0.1) (percentages summing to 100)."""
    if split in ("default", "tutorial"):
        return DEFAULT_FRACTIONS
    parts = str(split).split("/")
    try:
        pct = [float(p) for p in parts]
    except ValueError:
        pct = []
    if len(pct) != 3 or abs(sum(pct) - 100) > 1e-6 or pct[0] <= 0 or pct[1] <= 0 or pct[2] <= 0:
        raise CnnlabError(
            f"Unknown split {split!r} for a folder dataset. Available: default (stratified 70/15/15) or "
            "train/val/test percentages summing to 100, e.g. 80/10/10."
        )
    return (pct[0] / 100, pct[1] / 100, pct[2] / 100)


# ---- splitting and the Dataset ----------------------------------------------------------------------


def folder_split(
    labels: np.ndarray, fractions: tuple[float, float, float], seed: int, *, classes: tuple[str, ...] = ()
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Stratified train/val/test indices: each class is shuffled with `seed` and cut by `fractions`
    (val and test get at least one image of every class; train keeps the rest).

    Example:
        >>> tr, va, te = folder_split(np.repeat(np.arange(2), 20), (0.7, 0.15, 0.15), seed=0)
        >>> len(tr), len(va), len(te)
        (28, 6, 6)
    """
    seed = check_seed(seed)
    rng = np.random.default_rng(seed)
    parts: tuple[list, list, list] = ([], [], [])
    counts = np.bincount(labels, minlength=len(classes))
    check_class_counts(counts, fractions, classes)
    for cls, n in enumerate(counts):
        if n == 0:
            continue
        members = rng.permutation(np.flatnonzero(labels == cls))
        n_val = max(1, round(n * fractions[1]))
        n_test = max(1, round(n * fractions[2]))
        n_val = min(n_val, n - 2)
        n_test = min(n_test, n - 1 - n_val)
        parts[1].append(members[:n_val])
        parts[2].append(members[n_val : n_val + n_test])
        parts[0].append(members[n_val + n_test :])
    train, val, test = (rng.permutation(np.concatenate(p)).astype(np.int64) for p in parts)
    return train, val, test


def check_class_counts(
    counts: np.ndarray,
    fractions: tuple[float, float, float],
    classes: tuple[str, ...] = (),
    *,
    where: str = "",
) -> None:
    """Every class needs 3 images (one each for train, val and test), else one error naming them all."""
    too_few = [i for i, n in enumerate(counts) if n < 3]
    if too_few:
        names = [f"{classes[i] if classes else i!r} ({counts[i]})" for i in too_few]
        pct = "/".join(f"{round(f * 100):g}" for f in fractions)
        raise CnnlabError(
            f"Too few images{where} for the {pct} train/val/test split in class{'es' if len(names) > 1 else ''} "
            f"{', '.join(names)}: every class needs at least 3 (one each for train, val and test); "
            "add images or remove the class."
        )


def describe_split(split: str, seed: int) -> str:
    """What a folder split is, in words: `"stratified 70/15/15 train/val/test by class, seed 0"`."""
    pct = "/".join(f"{round(f * 100):g}" for f in parse_fractions(split))
    return f"stratified {pct} train/val/test by class, seed {seed}"


def load_folder(
    path: str | os.PathLike[str],
    *,
    split: str = "default",
    seed: int = 0,
    limit: int | None = None,
    image_size: int | None = None,
    channels: int | None = None,
    resize: str = "pad",
    bad_images: str = "skip",
    cache: bool = True,
    workers: int | None = None,
    quiet: bool = False,
) -> Dataset:
    """Load your own images as a `Dataset` (see the module docstring).

    Args:
        path: a folder with one sub-folder per class, or a CSV of path,label.
        split: `"default"` (or `"tutorial"`): stratified 70/15/15; or percentages like `"80/10/10"`.
        seed: the split's seed.
        limit: keep at most `limit` images of each split (quick runs).
        image_size: the square input size [64].
        channels: 1 (grayscale) or 3 (RGB) [3].
        resize: `"pad"` (default: keep the aspect ratio, pad with black), `"crop"` (centre square) or
            `"stretch"`.
        bad_images: `"skip"` (default: leave unreadable files out and list them on stderr) or `"strict"`.
        cache: read/write the decoded array in the user cache.
        workers: decoding threads [one per core].
        quiet: print nothing (no progress bar, no skip report).

    Returns:
        A `Dataset` with uint8 (N, C, S, S) splits and per-channel `mean`/`std` of the training split.

    Example:
        >>> data = load_folder("pets", image_size=64, seed=0)  # doctest: +SKIP
        >>> data.input_shape, data.classes  # doctest: +SKIP
        ((3, 64, 64), ('cat', 'dog'))
    """
    fractions = parse_fractions(split)
    seed = check_seed(seed)
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise CnnlabError(f"limit must be a positive integer, got {limit!r}.")
    size = DEFAULT_IMAGE_SIZE if image_size is None else image_size
    chans = DEFAULT_CHANNELS if channels is None else channels
    source = scan_source(path)
    # Before decoding anything: a folder that cannot be split fails at once and leaves no cache entry.
    check_class_counts(np.bincount(source.labels, minlength=len(source.classes)), fractions, source.classes)
    imgs = decode_folder(
        path,
        image_size=size,
        channels=chans,
        resize=resize,
        bad_images=bad_images,
        cache=cache,
        workers=workers,
        progress=not quiet,
        source=source,
    )
    if not quiet:
        _report(Path(path), imgs)
    if len(imgs.images) == 0:
        raise CnnlabError(f"No readable images in '{path}' ({len(imgs.bad)} files could not be decoded).")
    left = " left after skipping unreadable files" if imgs.bad else ""
    check_class_counts(
        np.bincount(imgs.labels, minlength=len(imgs.classes)), fractions, imgs.classes, where=left
    )
    return _split_into_dataset(Path(path), imgs, split, seed, limit)


def _split_into_dataset(path: Path, imgs: FolderImages, split: str, seed: int, limit: int | None) -> Dataset:
    """The decoded images split stratified by class (each split capped at ``limit``), with the training
    split's per-channel statistics."""
    fractions = parse_fractions(split)
    train, val, test = folder_split(imgs.labels, fractions, seed, classes=imgs.classes)
    if limit is not None:
        train, val, test = train[:limit], val[:limit], test[:limit]
    x, y, files = imgs.images, imgs.labels, imgs.files

    def make(idx: np.ndarray) -> Split:  # an index view into the cache's memory map: nothing copied
        return Split(MappedImages(x, idx), torch.from_numpy(y[idx]), files=tuple(files[i] for i in idx))

    train_split = make(train)
    mean, std = _train_stats(imgs, train, train_split)
    return Dataset(
        name=str(path.expanduser().resolve()),
        classes=imgs.classes,
        train=train_split,
        val=make(val),
        test=make(test),
        split=split,
        seed=seed,
        limit=limit,
        mean=tuple(mean),
        std=tuple(std),
        split_description=describe_split(split, seed),
    )


def _train_stats(imgs: FolderImages, rows: np.ndarray, train: Split) -> tuple[list[float], list[float]]:
    """The training split's per-channel mean and std: from the pixel sums the decode kept for every image
    (exact, and a warm start of a folder of 10 GB reads no image to get them), else from the images."""
    if imgs.sums is not None:
        return stats_from_sums(imgs.sums[rows], int(np.prod(train.images.shape[2:])))
    return channel_stats(train.images)


def _report(path: Path, imgs: FolderImages) -> None:
    """One stderr line about where the pixels came from, and the list of skipped files."""
    how = "read from the cache" if imgs.from_cache else "decoded"
    where = f" (cache: {imgs.cache_file})" if imgs.cache_file and not imgs.from_cache else ""
    # the skipped files are listed once, when decoded; a cached read only counts them
    skipped = f", {len(imgs.bad)} unreadable skipped" if imgs.bad and imgs.from_cache else ""
    print(
        f"{path}: {len(imgs.images):,} images in {len(imgs.classes)} classes {how} in {imgs.seconds:.1f} s"
        f"{where}{skipped}",
        file=sys.stderr,
    )
    if imgs.bad and not imgs.from_cache:
        print(f"Skipped {len(imgs.bad)} unreadable file(s) (--bad-images skip):", file=sys.stderr)
        for file, why in imgs.bad[:20]:
            print(f"  {imgs.root / file}: {why}", file=sys.stderr)
        if len(imgs.bad) > 20:
            print(f"  ... and {len(imgs.bad) - 20} more", file=sys.stderr)
