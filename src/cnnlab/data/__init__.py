"""Datasets: the built-in Fashion-MNIST, MNIST and CIFAR-10, your own image folders, the IDX and CIFAR
readers, verified downloads, and splits.

Example:
    >>> from cnnlab.data import load_data
    >>> data = load_data("fashion_mnist", split="tutorial", seed=0)  # doctest: +SKIP
    >>> data.describe()["sizes"]  # doctest: +SKIP
    {'train': 45000, 'val': 15000, 'test': 10000}
"""

from __future__ import annotations

from cnnlab.data.builtin import DATASETS, list_datasets, load_data
from cnnlab.data.cifar import CIFAR10, load_cifar10, read_cifar_batch
from cnnlab.data.decode import decode_image, decode_images
from cnnlab.data.download import download_file
from cnnlab.data.folder import decode_folder, load_folder
from cnnlab.data.idx import read_idx
from cnnlab.data.split import SPLITS
from cnnlab.data.types import Dataset, Split

__all__ = [
    "CIFAR10",
    "DATASETS",
    "SPLITS",
    "Dataset",
    "Split",
    "decode_folder",
    "decode_image",
    "decode_images",
    "download_file",
    "list_datasets",
    "load_cifar10",
    "load_data",
    "load_folder",
    "read_cifar_batch",
    "read_idx",
]
