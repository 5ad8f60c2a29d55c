"""The containers every dataset loader returns: `Split` (images + labels) and `Dataset` (three splits).

Images stay uint8 (N, C, H, W): Fashion-MNIST's 70,000 images are 55 MB that way and 220 MB as float32,
so scaling to 0..1 happens per batch or on request (`Split.float()`), never for the whole dataset.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from cnnlab.data.mapped import MappedImages
from cnnlab.errors import CnnlabError
from cnnlab.notebook import dataset_html

__all__ = ["Dataset", "Split"]


# eq=False: a generated __eq__ would compare tensors elementwise and fail on `bool(...)`.
@dataclass(frozen=True, eq=False)
class Split:
    """Images and labels of one split.

    Attributes:
        images: uint8 tensor of shape (N, C, H, W), values 0..255.
        labels: int64 tensor of shape (N,), class indices.
        files: for a folder or CSV dataset, the file of each image in order (relative to the folder, or
            as the CSV gives it); None for built-ins, whose images are rows of their files.

    Example:
        >>> s = Split(torch.zeros(4, 1, 28, 28, dtype=torch.uint8), torch.arange(4))
        >>> len(s), s.float().dtype
        (4, torch.float32)
    """

    images: torch.Tensor | MappedImages  # MappedImages: a folder split, an index view read on demand
    labels: torch.Tensor
    files: tuple[str, ...] | None = None

    def __repr__(self) -> str:  # a summary, as torch and NumPy print large arrays: never every pixel
        n, c, h, w = self.images.shape
        files = f", files {self.files[0]!r}..." if self.files else ""
        return f"Split({n:,} images uint8 {c}x{h}x{w}, labels 0..{int(self.labels.max()) if n else 0}{files})"

    def __post_init__(self) -> None:
        if self.images.dtype != torch.uint8 or self.images.ndim != 4:
            raise CnnlabError(
                f"Split images must be uint8 of shape (N, C, H, W), got {self.images.dtype} "
                f"{tuple(self.images.shape)}."
            )
        if self.labels.dtype != torch.int64 or self.labels.ndim != 1:
            raise CnnlabError(
                f"Split labels must be int64 of shape (N,), got {self.labels.dtype} {tuple(self.labels.shape)}."
            )
        if len(self.images) != len(self.labels):
            raise CnnlabError(f"Split has {len(self.images)} images but {len(self.labels)} labels.")
        if self.files is not None and len(self.files) != len(self.labels):
            raise CnnlabError(f"Split has {len(self.labels)} images but {len(self.files)} file names.")

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def float(self) -> torch.Tensor:
        """The images as float32 in 0..1 (divided by 255, as the tutorial does); a new tensor."""
        return self.images.float().div_(255.0)

    def head(self, n: int) -> Split:
        """The first `n` images, labels and file names (views, no copy)."""
        return Split(self.images[:n], self.labels[:n], None if self.files is None else self.files[:n])

    def take(self, index) -> Split:
        """The images, labels and file names at `index` (a 1-D index tensor or array, or a list of ints).

        Example:
            >>> s = Split(torch.zeros(3, 1, 8, 8, dtype=torch.uint8), torch.arange(3), ("a", "b", "c"))
            >>> s.take([2, 0]).files
            ('c', 'a')
        """
        idx = torch.as_tensor(index, dtype=torch.int64)
        files = None if self.files is None else tuple(self.files[i] for i in idx.tolist())
        return Split(self.images[idx], self.labels[idx], files)


@dataclass(frozen=True, eq=False)
class Dataset:
    """A dataset cut into train, validation and test splits.

    Attributes:
        name: registry name, e.g. `"fashion_mnist"`.
        classes: class names in label order.
        train: the images to fit on.
        val: held out from the official training set, for early stopping and model choice.
        test: the official test set (10,000 images for the MNISTs), for the final number only.
        split: the protocol that cut train/val, `"tutorial"` or `"default"`.
        seed: the seed of that cut.
        limit: if set, every split was capped at this many images (a quick run; not official numbers).
        mean, std: per-channel normalisation on the 0..1 scale, computed on the training split, for
            datasets that want it (folder datasets); None means the model sees plain 0..1 pixels.
        split_description: what the split is, in words (e.g. "stratified 70/15/15 train/val/test by
            class, seed 0"), for the run's records; `split` is the name it was asked by.

    Example:
        >>> data = load_data("fashion_mnist", split="tutorial", seed=0)  # doctest: +SKIP
        >>> data.input_shape, data.num_classes, len(data.train)  # doctest: +SKIP
        ((1, 28, 28), 10, 45000)
    """

    name: str
    classes: tuple[str, ...]
    train: Split
    val: Split
    test: Split
    split: str
    seed: int
    limit: int | None = None
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    split_description: str | None = None

    def __repr__(self) -> str:
        sizes = " / ".join(f"{len(s):,}" for s in (self.train, self.val, self.test))
        c, h, w = self.train.images.shape[1:]
        shown = ", ".join(self.classes[:4]) + (", ..." if len(self.classes) > 4 else "")
        cut = f", limit {self.limit:,}" if self.limit else ""
        return (
            f"Dataset({self.name!r}: {sizes} train/val/test images {c}x{h}x{w}, {len(self.classes)} classes "
            f"({shown}), split {self.split!r} seed {self.seed}{cut})"
        )

    def _repr_html_(self) -> str:
        """In Jupyter: split sizes, classes and one training image of each class."""
        return dataset_html(self)

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """(C, H, W) of one image, what a model's first layer needs."""
        c, h, w = self.train.images.shape[1:]
        return (int(c), int(h), int(w))

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def describe(self) -> dict[str, Any]:
        """A JSON-able summary, saved with every run so its numbers can be traced to the exact data."""
        return {
            "name": self.name,
            "split": self.split,
            "split_description": self.split_description,
            "seed": self.seed,
            "limit": self.limit,
            "sizes": {"train": len(self.train), "val": len(self.val), "test": len(self.test)},
            "input_shape": list(self.input_shape),
            "classes": list(self.classes),
            "mean": list(self.mean) if self.mean else None,
            "std": list(self.std) if self.std else None,
        }

    def split_files(self) -> dict[str, list[str]] | None:
        """`{"train": [...], "val": [...], "test": [...]}`: the file of every image of each split, in
        order (what a run saves as splits.json), or None for a dataset without files (the built-ins)."""
        splits = {"train": self.train, "val": self.val, "test": self.test}
        if any(s.files is None for s in splits.values()):
            return None
        return {k: list(s.files or ()) for k, s in splits.items()}
