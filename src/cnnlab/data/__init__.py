"""Datasets: the built-in Fashion-MNIST, MNIST and CIFAR-10, your own image folders, the IDX and CIFAR
readers, verified downloads, splits and per-channel statistics.

Modules: `load` (`load_data`, `list_datasets`: the one entry point), one per source (`mnist`: the IDX
datasets, `cifar`, `folder` with `folder_source`, `folder_cache` and `decode`), what the built-ins share
(`official`: spec fields, options, official arrays -> `Dataset`), and the infrastructure under them all
(`store`: cache and data folders, checked files, mirrors; `download`; `idx`; `split`; `stats`; `adapt`;
`types`). User paths are opened with `cnnlab.userfiles`; files are written with `cnnlab.atomic`.

Example:
    >>> from cnnlab.data import load_data
    >>> data = load_data("fashion_mnist", split="tutorial", seed=0)  # doctest: +SKIP
    >>> data.describe()["sizes"]  # doctest: +SKIP
    {'train': 45000, 'val': 15000, 'test': 10000}
"""

from __future__ import annotations

from cnnlab.data.cifar import CIFAR10, load_cifar10, read_cifar_batch
from cnnlab.data.decode import decode_image, decode_images
from cnnlab.data.download import download_file
from cnnlab.data.folder import decode_folder, load_folder
from cnnlab.data.idx import read_idx
from cnnlab.data.load import BUILTIN_NAMES, check_dataset_name, list_datasets, load_data, load_recorded
from cnnlab.data.mnist import DATASETS, LIGHT_ON_DARK
from cnnlab.data.split import SPLITS
from cnnlab.data.stats import channel_stats
from cnnlab.data.types import Dataset, Split

__all__ = [
    "BUILTIN_NAMES",
    "CIFAR10",
    "DATASETS",
    "LIGHT_ON_DARK",
    "SPLITS",
    "Dataset",
    "Split",
    "channel_stats",
    "decode_folder",
    "decode_image",
    "decode_images",
    "download_file",
    "list_datasets",
    "load_cifar10",
    "check_dataset_name",
    "load_data",
    "load_recorded",
    "load_folder",
    "read_cifar_batch",
    "read_idx",
]
