"""The one entry point to every dataset: `load_data` (a built-in by name, or your own folder or CSV) and
`list_datasets`. Each source lives in its own module: `mnist.py` (IDX files), `cifar.py`, `folder.py`."""

from __future__ import annotations

import os
from typing import Any

import cnnlab.data.cifar as cifar
from cnnlab.data.adapt import check_image_options
from cnnlab.data.cifar import CIFAR10, cifar_info, load_cifar
from cnnlab.data.folder import is_folder_dataset, load_folder
from cnnlab.data.mnist import DATASETS, idx_info, load_idx_dataset
from cnnlab.data.official import BuiltinOptions
from cnnlab.data.types import Dataset
from cnnlab.errors import CnnlabError
from cnnlab.names import check_dataset_name, unknown_dataset

__all__ = ["BUILTIN_NAMES", "check_dataset_name", "list_datasets", "load_data"]

BUILTIN_NAMES = (*DATASETS, CIFAR10.name)


def list_datasets() -> list[dict[str, Any]]:
    """The built-in datasets as JSON-able dicts (what `cnnlab datasets` prints).

    Example:
        >>> [d["name"] for d in list_datasets()]
        ['fashion_mnist', 'mnist', 'cifar10']
    """
    return [idx_info(spec) for spec in DATASETS.values()] + [cifar_info()]


def load_data(
    name: str,
    *,
    split: str = "default",
    seed: int = 0,
    data_dir: str | os.PathLike[str] | None = None,
    limit: int | None = None,
    download: bool = True,
    image_size: int | None = None,
    channels: int | None = None,
    resize: str = "pad",
    bad_images: str = "skip",
) -> Dataset:
    """Load a dataset as uint8 train / val / test splits: a built-in by name, or your own images.

    Built-in files come from `data_dir`, else the folder in `$CNNLAB_DATA_DIR`, else the user cache
    (`$XDG_CACHE_HOME/cnnlab/<name>` or `~/.cache/cnnlab/<name>`), where missing files are downloaded. A
    given folder may hold the files itself or in a sub-folder named for the dataset (`fashion-mnist/` or
    `fashion_mnist/`); it is never downloaded into. Every file must match the official checksum.

    Args:
        name: `"fashion_mnist"`, `"mnist"` or `"cifar10"` (see `list_datasets()`), or a folder with one
            sub-folder per class, or a CSV of path,label (read by `cnnlab.data.folder.load_folder`).
        split: `"default"`: 55,000 train / 5,000 validation stratified by class; `"tutorial"`: the post's
            random 45,000 / 15,000. `test` is always the official 10,000 test images. (CIFAR-10 and
            folders: see `load_cifar10` and `load_folder`.)
        seed: the train/val cut; the same seed always gives the same split.
        data_dir: folder with the files (overrides `$CNNLAB_DATA_DIR`).
        limit: for quick runs only: keep the first `limit` images of the (already shuffled) train split
            and at most `limit` of val and of test. Accuracy on a limited test set is not the official
            test number.
        download: fetch missing files into the cache folder; False raises instead.
        image_size: resize every image to `image_size` x `image_size` (bilinear, antialiased); None keeps
            the native size (28x28).
        channels: 1 or 3; 3 repeats the gray channel (for models built for RGB). None keeps it.
        resize, bad_images: options of folder datasets; checked, no effect on a built-in's square,
            verified images.

    Returns:
        A `Dataset` with uint8 images of shape (N, 1, 28, 28) (or as `image_size`/`channels` ask) and
        int64 labels.

    Example:
        >>> data = load_data("fashion_mnist", split="tutorial", seed=0)  # doctest: +SKIP
        >>> len(data.train), len(data.val), len(data.test)  # doctest: +SKIP
        (45000, 15000, 10000)
    """
    if isinstance(name, str) and (name in DATASETS or name == CIFAR10.name):
        check_image_options(image_size, channels, resize, bad_images)
        options = BuiltinOptions(split, seed, data_dir, limit, download, image_size, channels)
        if name == CIFAR10.name:
            return load_cifar(cifar.CIFAR10, options)  # looked up now: a test may swap it
        return load_idx_dataset(DATASETS[name], options)
    if isinstance(name, (str, os.PathLike)) and is_folder_dataset(name):
        # data_dir (or $CNNLAB_DATA_DIR, saved with every run) locates built-in files; a folder is its own.
        return load_folder(
            name, split=split, seed=seed, limit=limit, image_size=image_size, channels=channels,
            resize=resize, bad_images=bad_images,
        )  # fmt: skip
    raise unknown_dataset(name)


IMAGE_OPTIONS = ("image_size", "channels", "resize", "bad_images")  # how training turned files into tensors


def load_recorded(config: dict, *, data_dir: str | os.PathLike | None = None, download: bool = False):
    """The dataset a run's ``config`` (its config.json) names, with its split protocol, seed, limit and image options (a
    folder run's images are decoded at the size, channels and resize mode it trained on).

    The data folder is ``data_dir``, else the one recorded in the run (when it still exists), else
    ``$CNNLAB_DATA_DIR`` / the user cache (see `cnnlab.load_data`); nothing is downloaded unless
    ``download``. One clear error when the run does not record its dataset.
    """
    if not config.get("data"):
        raise CnnlabError(
            "the run does not record its dataset (a run saved with cl.save_run(..., data=data) does); "
            "its final-set images cannot be rebuilt"
        )
    recorded = config.get("data_dir")
    folder = data_dir or (recorded if recorded and os.path.isdir(recorded) else None)
    return load_data(
        config["data"],
        split=config.get("split", "default"),
        seed=config.get("seed", 0),
        data_dir=folder,
        limit=config.get("limit"),
        download=download,
        **{k: config[k] for k in IMAGE_OPTIONS if config.get(k) is not None},
    )
