"""Fashion-MNIST and MNIST: the IDX datasets, their published files and checksums, and loading them.

Files are looked up in `data_dir`, else `$CNNLAB_DATA_DIR`, else the user cache folder, which is the only
place anything is downloaded to (`store.py`). Every file is checked against the publisher's checksum
before use.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from cnnlab.data.idx import parse_idx
from cnnlab.data.official import BuiltinOptions, BuiltinSpec, builtin_info, check_options, official_dataset
from cnnlab.data.split import SPLITS
from cnnlab.data.store import (
    RemoteFile,
    cache_dir,
    fetch_files,
    given_data_dir,
    how_to_provide,
    read_checked,
)
from cnnlab.data.types import Dataset
from cnnlab.errors import CnnlabError

__all__ = ["DATASETS", "LIGHT_ON_DARK", "IdxDataset", "idx_info", "load_idx_dataset"]


@dataclass(frozen=True, kw_only=True)
class IdxDataset(BuiltinSpec):
    """An IDX dataset: its four published files and their checksums, and where a data folder keeps them."""

    train_images: RemoteFile
    train_labels: RemoteFile
    test_images: RemoteFile
    test_labels: RemoteFile
    folder_names: tuple[str, ...]  # sub-folders of a data dir that may hold the files
    input_shape: tuple[int, int, int] = (1, 28, 28)
    train_size: int = 60_000
    test_size: int = 10_000

    @property
    def files(self) -> tuple[RemoteFile, ...]:
        return (self.train_images, self.train_labels, self.test_images, self.test_labels)


DATASETS: dict[str, IdxDataset] = {
    "fashion_mnist": IdxDataset(
        name="fashion_mnist",
        description="Zalando's Fashion-MNIST: 28x28 grayscale photos of clothing, 10 classes (MIT licence)",
        classes=(
            "T-shirt/top",
            "Trouser",
            "Pullover",
            "Dress",
            "Coat",
            "Sandal",
            "Shirt",
            "Sneaker",
            "Bag",
            "Ankle boot",
        ),
        mirrors=("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",),
        # md5 from the official README; sha256 computed on those byte-identical files.
        train_images=RemoteFile(
            "train-images-idx3-ubyte.gz",
            md5="8d4fb7e6c68d591d4c3dfef9ec88bf0d",
            sha256="3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84",
        ),
        train_labels=RemoteFile(
            "train-labels-idx1-ubyte.gz",
            md5="25c81989df183df01b3e8a0aad5dffbe",
            sha256="a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845",
        ),
        test_images=RemoteFile(
            "t10k-images-idx3-ubyte.gz",
            md5="bef4ecab320f06d8554ea6380940ec79",
            sha256="346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073",
        ),
        test_labels=RemoteFile(
            "t10k-labels-idx1-ubyte.gz",
            md5="bb300cfdad3c16e7a12a480ee83cd310",
            sha256="67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5",
        ),
        folder_names=("fashion-mnist", "fashion_mnist"),
    ),
    "mnist": IdxDataset(
        name="mnist",
        description="LeCun, Cortes and Burges' MNIST: 28x28 grayscale handwritten digits, 10 classes",
        classes=tuple(str(d) for d in range(10)),
        # yann.lecun.com now refuses downloads; these mirrors serve the same files (same md5).
        mirrors=(
            "https://ossci-datasets.s3.amazonaws.com/mnist/",
            "https://storage.googleapis.com/cvdf-datasets/mnist/",
        ),
        # The md5s every loader (torchvision, tf.keras) checks.
        train_images=RemoteFile("train-images-idx3-ubyte.gz", md5="f68b3c2dcbeaaa9fbdd348bbdeb94873"),
        train_labels=RemoteFile("train-labels-idx1-ubyte.gz", md5="d53e105ee54ea40749a09fcbcd1e9432"),
        test_images=RemoteFile("t10k-images-idx3-ubyte.gz", md5="9fb629c4189551a2d022fa330f9573f3"),
        test_labels=RemoteFile("t10k-labels-idx1-ubyte.gz", md5="ec29112dd5afa0611ce80d1b7f02629c"),
        folder_names=("mnist",),
    ),
}

LIGHT_ON_DARK = ("fashion_mnist", "mnist")  # light objects on a black background
_MAX_FILE_BYTES = 64 << 20  # the largest published .gz is 26 MB; anything bigger is not one of them


def idx_info(spec: IdxDataset) -> dict[str, Any]:
    """The `list_datasets()` entry of an IDX dataset."""
    files = [f.name for f in spec.files]
    return builtin_info(
        spec, train_size=spec.train_size, test_size=spec.test_size, splits=SPLITS, files=files
    )


def load_idx_dataset(spec: IdxDataset, options: BuiltinOptions) -> Dataset:
    """An IDX dataset as uint8 train / val / test splits; `cnnlab.data.load_data` documents the options."""
    options = check_options(spec, options, train_size=spec.train_size)
    folder = _locate(spec, options.data_dir, options.download)
    train = _read_pair(spec, folder, spec.train_images, spec.train_labels, spec.train_size)
    test = _read_pair(spec, folder, spec.test_images, spec.test_labels, spec.test_size)
    return official_dataset(spec, train, test, options, splits=SPLITS)


def _locate(spec: IdxDataset, data_dir: str | os.PathLike[str] | None, download: bool) -> Path:
    """Return the folder holding all four files, downloading into the cache only."""
    given = given_data_dir(data_dir)
    if given is not None:
        return _find_in(spec, *given)
    folder = cache_dir(spec.name)
    missing = [f for f in spec.files if not (folder / f.name).is_file()]
    expected = _expected(spec)
    if missing and not download:
        raise CnnlabError(
            f"{spec.name} is not in the cache folder '{folder}' (missing {', '.join(f.name for f in missing)}) "
            f"and download=False; allow the download, or {how_to_provide(expected, spec.mirrors[0])}."
        )
    if missing:
        fetch_files(spec.name, missing, spec.mirrors, folder, expected=expected, progress=sys.stderr.isatty())
    return folder


def _expected(spec: IdxDataset) -> str:
    names = [f.name for f in spec.files]
    return f"{', '.join(names[:-1])} and {names[-1]}"


def _find_in(spec: IdxDataset, root: Path, origin: str) -> Path:
    names = [f.name for f in spec.files]
    if not root.is_dir():
        what = "is not a folder" if root.exists() else "does not exist"
        raise CnnlabError(
            f"Data folder '{root}' (from {origin}) {what}; expected a folder holding {', '.join(names)}."
        )
    candidates = [root, *(root / sub for sub in spec.folder_names)]
    present = [[n for n in names if (c / n).is_file()] for c in candidates]
    for folder, found in zip(candidates, present, strict=True):
        if len(found) == len(names):
            return folder
    # Name the most complete candidate, so a single missing file is obvious.
    best = max(range(len(candidates)), key=lambda i: len(present[i]))
    if present[best]:
        missing = [n for n in names if n not in present[best]]
        raise CnnlabError(
            f"Data folder '{candidates[best]}' has no {', '.join(missing)} (needed for {spec.name})."
        )
    subs = " or ".join(f"{s}/" for s in spec.folder_names)
    raise CnnlabError(
        f"No {spec.name} files in '{root}' (from {origin}): expected {', '.join(names)} there or in a "
        f"sub-folder {subs} (from {spec.mirrors[0]})."
    )


def _read_pair(
    spec: IdxDataset, folder: Path, images_file: RemoteFile, labels_file: RemoteFile, count: int
) -> tuple[np.ndarray, np.ndarray]:
    images = _read_idx(spec, folder / images_file.name, images_file)
    labels = _read_idx(spec, folder / labels_file.name, labels_file)
    # The checksums already pin the content; these checks make a wrong entry in DATASETS fail loudly.
    if images.shape != (count, *spec.input_shape[1:]) or images.dtype != np.uint8:
        raise CnnlabError(
            f"'{folder / images_file.name}' holds {images.dtype} {images.shape}, expected uint8 images of "
            f"{(count, *spec.input_shape[1:])}."
        )
    if labels.shape != (count,) or (count and labels.max() >= len(spec.classes)):
        raise CnnlabError(
            f"'{folder / labels_file.name}' does not hold {count:,} labels in 0..{len(spec.classes) - 1}."
        )
    return images[:, None], labels  # (N, 1, H, W): add the channel axis convolutions expect


def _read_idx(spec: IdxDataset, path: Path, remote: RemoteFile) -> np.ndarray:
    data = read_checked(path, remote, dataset=spec.name, mirror=spec.mirrors[0], max_bytes=_MAX_FILE_BYTES)
    return parse_idx(data, path)
