"""Built-in datasets (Fashion-MNIST, MNIST; CIFAR-10 in `cifar.py`): where their files live, checking them, and `load_data`.

Files are looked up in `data_dir`, else `$CNNLAB_DATA_DIR`, else the user cache folder, which is the only
place anything is downloaded to. Every file is checked against the publisher's checksum before use.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from cnnlab.data.adapt import adapt_dataset, check_image_options
from cnnlab.data.download import check_digest, download_file
from cnnlab.data.idx import parse_idx
from cnnlab.data.split import SPLITS, check_protocol, split_indices
from cnnlab.data.types import Dataset, Split
from cnnlab.errors import CnnlabError

__all__ = [
    "DATASETS",
    "BuiltinDataset",
    "RemoteFile",
    "list_datasets",
    "load_data",
]


@dataclass(frozen=True)
class RemoteFile:
    """One published file and its official checksums (at least one of them)."""

    name: str
    md5: str | None = None
    sha256: str | None = None


@dataclass(frozen=True)
class BuiltinDataset:
    """What cnnlab knows about a built-in dataset: files, checksums, mirrors (tried in order), classes."""

    name: str
    description: str
    classes: tuple[str, ...]
    mirrors: tuple[str, ...]
    train_images: RemoteFile
    train_labels: RemoteFile
    test_images: RemoteFile
    test_labels: RemoteFile
    folder_names: tuple[str, ...]  # sub-folders of a data dir that may hold the files
    input_shape: tuple[int, int, int] = (1, 28, 28)
    train_size: int = 60_000
    test_size: int = 10_000
    val_size: int = 5_000  # of the `default` split

    @property
    def files(self) -> tuple[RemoteFile, ...]:
        return (self.train_images, self.train_labels, self.test_images, self.test_labels)


DATASETS: dict[str, BuiltinDataset] = {
    "fashion_mnist": BuiltinDataset(
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
    "mnist": BuiltinDataset(
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

BUILTIN_NAMES = (*DATASETS, "cifar10")
LIGHT_ON_DARK = ("fashion_mnist", "mnist")  # light objects on a black background


def list_datasets() -> list[dict[str, Any]]:
    """The built-in datasets as JSON-able dicts (what `cnnlab datasets` prints).

    Example:
        >>> [d["name"] for d in list_datasets()]
        ['fashion_mnist', 'mnist', 'cifar10']
    """
    from cnnlab.data.cifar import cifar_info

    return [
        {
            "name": spec.name,
            "description": spec.description,
            "classes": list(spec.classes),
            "input_shape": list(spec.input_shape),
            "train_size": spec.train_size,
            "test_size": spec.test_size,
            "splits": dict(SPLITS),
            "urls": list(spec.mirrors),
            "files": [f.name for f in spec.files],
        }
        for spec in DATASETS.values()
    ] + [cifar_info()]


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
    """Load a built-in dataset as uint8 train / val / test splits.

    Files come from `data_dir`, else the folder in `$CNNLAB_DATA_DIR`, else the user cache
    (`$XDG_CACHE_HOME/cnnlab/<name>` or `~/.cache/cnnlab/<name>`), where missing files are downloaded. A
    given folder may hold the four `.gz` files itself or in a sub-folder named for the dataset
    (`fashion-mnist/` or `fashion_mnist/`); it is never downloaded into. Every file must match the
    official checksum.

    Args:
        name: `"fashion_mnist"` or `"mnist"` (see `list_datasets()`); `"cifar10"` is read by
            `cnnlab.data.cifar.load_cifar10`, and a folder with one sub-folder per class or a CSV of
            path,label by `cnnlab.data.folder.load_folder` (which take the same options).
        split: `"default"`: 55,000 train / 5,000 validation stratified by class; `"tutorial"`: the post's
            random 45,000 / 15,000. `test` is always the official 10,000 test images.
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
    spec = DATASETS.get(name) if isinstance(name, str) else None
    if spec is None:
        return _load_other(
            name,
            split=split,
            seed=seed,
            data_dir=data_dir,
            limit=limit,
            download=download,
            image_size=image_size,
            channels=channels,
            resize=resize,
            bad_images=bad_images,
        )
    check_image_options(image_size, channels, resize, bad_images)
    seed = check_protocol(name, split, seed, limit, train_size=spec.train_size, val_size=spec.val_size)
    folder = _locate(spec, data_dir, download)

    train_x, train_y = _read_pair(spec, folder, spec.train_images, spec.train_labels, spec.train_size)
    test_x, test_y = _read_pair(spec, folder, spec.test_images, spec.test_labels, spec.test_size)
    train_idx, val_idx = split_indices(split, train_y, seed, val_size=spec.val_size)
    if limit is not None:
        # The index arrays are already shuffled, so their heads keep all classes.
        train_idx, val_idx = train_idx[:limit], val_idx[:limit]
        test_x, test_y = test_x[:limit], test_y[:limit]

    data = Dataset(
        name=spec.name,
        classes=spec.classes,
        # Fancy indexing copies, so each split owns contiguous, writable memory.
        train=_to_split(train_x[train_idx], train_y[train_idx]),
        val=_to_split(train_x[val_idx], train_y[val_idx]),
        test=_to_split(np.array(test_x), np.array(test_y)),
        split=split,
        seed=seed,
        limit=limit,
    )
    return adapt_dataset(data, image_size=image_size, channels=channels)


def _load_other(name: object, **options: Any) -> Dataset:
    """CIFAR-10, or your own images (a folder of class sub-folders or a CSV), or a clear error."""
    from cnnlab.data.folder import is_folder_dataset, load_folder

    if name == "cifar10":
        from cnnlab.data.cifar import load_cifar10

        check_image_options(
            options["image_size"], options["channels"], options["resize"], options["bad_images"]
        )
        return load_cifar10(**{k: v for k, v in options.items() if k not in ("resize", "bad_images")})
    if isinstance(name, (str, os.PathLike)) and is_folder_dataset(name):
        # data_dir (or $CNNLAB_DATA_DIR, saved with every run) locates built-in files; a folder is its own.
        options = {k: v for k, v in options.items() if k not in ("data_dir", "download")}
        return load_folder(name, **options)
    if isinstance(name, (str, os.PathLike)) and os.path.isfile(name):
        raise CnnlabError(
            f"'{name}' is a file, not a dataset: pass a folder with one sub-folder per class or a CSV of path,label."
        )
    if isinstance(name, (str, os.PathLike)) and (os.sep in str(name) or "/" in str(name)):
        raise CnnlabError(f"Dataset folder or CSV '{name}' does not exist.")
    raise CnnlabError(
        f"Unknown dataset {name!r}. Available: {', '.join(BUILTIN_NAMES)}, or a folder with one "
        "sub-folder per class, or a CSV of path,label."
    )


def cache_dir(name: str) -> Path:
    """Where `load_data` downloads dataset `name` when no data folder is given."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "cnnlab" / name


def _locate(spec: BuiltinDataset, data_dir: str | os.PathLike[str] | None, download: bool) -> Path:
    """Return the folder holding all four files, downloading into the cache only."""
    if data_dir is None and os.environ.get("CNNLAB_DATA_DIR"):
        data_dir, origin = os.environ["CNNLAB_DATA_DIR"], "$CNNLAB_DATA_DIR"
    else:
        origin = "data_dir"
    if data_dir is not None:
        return _find_in(spec, Path(data_dir).expanduser(), origin)

    folder = cache_dir(spec.name)
    missing = [f for f in spec.files if not (folder / f.name).is_file()]
    if missing and not download:
        raise CnnlabError(
            f"{spec.name} is not in the cache folder '{folder}' (missing {', '.join(f.name for f in missing)}) "
            "and download=False; allow the download, or pass data_dir / set CNNLAB_DATA_DIR to a folder "
            "holding the files."
        )
    for remote in missing:
        _download(spec, remote, folder)
    return folder


def _find_in(spec: BuiltinDataset, root: Path, origin: str) -> Path:
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


def _download(spec: BuiltinDataset, remote: RemoteFile, folder: Path) -> None:
    errors = []
    for mirror in spec.mirrors:  # try each mirror before giving up
        try:
            download_file(
                mirror + remote.name,
                folder / remote.name,
                md5=remote.md5,
                sha256=remote.sha256,
                progress=sys.stderr.isatty(),
            )
            return
        except CnnlabError as exc:
            errors.append(str(exc).rstrip("."))
    raise CnnlabError(
        f"Could not download {remote.name} for {spec.name} ({'; '.join(errors)}). Put the files in "
        f"'{folder}' by hand, or point data_dir / CNNLAB_DATA_DIR at a folder holding them."
    )


def _read_checked(spec: BuiltinDataset, path: Path, remote: RemoteFile) -> np.ndarray:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise CnnlabError(f"Cannot read '{path}': {exc.strerror or exc}.") from None
    mismatch = check_digest(data, md5=remote.md5, sha256=remote.sha256)
    if mismatch:
        raise CnnlabError(
            f"'{path}' does not match the official checksum for {spec.name} (is this another dataset's "
            f"file, or truncated?); replace it with {remote.name} from {spec.mirrors[0]}."
        )
    return parse_idx(data, path)


def _read_pair(
    spec: BuiltinDataset, folder: Path, images_file: RemoteFile, labels_file: RemoteFile, count: int
) -> tuple[np.ndarray, np.ndarray]:
    images = _read_checked(spec, folder / images_file.name, images_file)
    labels = _read_checked(spec, folder / labels_file.name, labels_file)
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


def _to_split(images: np.ndarray, labels: np.ndarray) -> Split:
    return Split(torch.from_numpy(images), torch.from_numpy(labels.astype(np.int64)))
