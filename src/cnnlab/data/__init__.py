"""Datasets: the built-in Fashion-MNIST and MNIST, the IDX reader, verified downloads, and splits.

Example:
    >>> from cnnlab.data import load_data
    >>> data = load_data("fashion_mnist", split="tutorial", seed=0)  # doctest: +SKIP
    >>> data.describe()["sizes"]  # doctest: +SKIP
    {'train': 45000, 'val': 15000, 'test': 10000}
"""

from __future__ import annotations

from cnnlab.data.builtin import DATASETS, list_datasets, load_data
from cnnlab.data.download import download_file
from cnnlab.data.idx import read_idx
from cnnlab.data.split import SPLITS
from cnnlab.data.types import Dataset, Split

__all__ = [
    "DATASETS",
    "SPLITS",
    "Dataset",
    "Split",
    "download_file",
    "list_datasets",
    "load_data",
    "read_idx",
]
