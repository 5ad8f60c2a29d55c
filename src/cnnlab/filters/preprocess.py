"""The tutorial's preprocessing: a photo, grayscale with 0.299/0.587/0.114, every n-th pixel.

The default photo is scikit-image's bundled cat (`skimage.data.chelsea()`, 451x300): it ships inside the
wheel, so the playground works offline on a fresh machine, and a cat is how the tutorial opens.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np

from cnnlab.errors import CnnlabError
from cnnlab.images import load_image, to_gray

SAMPLE_NAME = "chelsea"


def sample_path() -> Path | None:
    """Where scikit-image keeps the bundled cat photo, found without importing scikit-image (slow)."""
    spec = importlib.util.find_spec("skimage")
    for root in (spec.submodule_search_locations or []) if spec else []:
        path = Path(root) / "data" / "chelsea.png"
        if path.is_file():
            return path
    return None


def sample_image(*, gray: bool = False) -> np.ndarray:
    """The bundled cat photo as float32 in 0..1, (300, 451) gray or (300, 451, 3) RGB.

    Example:
        >>> sample_image(gray=True).shape
        (300, 451)
    """
    path = sample_path()
    if path is not None:
        return load_image(path, gray=gray)
    try:  # a scikit-image layout we did not expect: ask it for the array
        # deferred: inside the try, a failing import is one more way the sample is unavailable
        from skimage import data

        rgb = data.chelsea().astype(np.float32) / 255.0
    except Exception as exc:  # noqa: BLE001 - any failure means "no sample here"
        raise CnnlabError(f"the sample photo is unavailable ({exc}); pass an image path instead") from None
    return np.ascontiguousarray(to_gray(rgb)) if gray else rgb


def downsample(image: np.ndarray, factor: int) -> np.ndarray:
    """Keep every `factor`-th pixel in both axes, the tutorial's `img[::2, ::2]` for factor 2.

    Example:
        >>> downsample(np.zeros((5, 7)), 2).shape
        (3, 4)
    """
    if not isinstance(factor, (int, np.integer)) or isinstance(factor, bool) or factor < 1:
        raise CnnlabError(f"downsample factor must be an integer >= 1, got {factor!r}")
    if factor == 1:
        return image
    h, w = image.shape[:2]
    if factor >= h or factor >= w:
        # img[::f] would keep a single row or column: nothing left to convolve or to look at.
        fits = "use factor 1 (no downsampling)" if min(h, w) <= 2 else f"use a factor below {min(h, w)}"
        raise CnnlabError(
            f"downsample factor {factor} leaves nothing of a {w}x{h} image "
            f"({-(-w // factor)}x{-(-h // factor)}); {fits}"
        )
    return np.ascontiguousarray(image[::factor, ::factor])


def prepare(image: np.ndarray, *, gray: bool = True, factor: int = 1) -> np.ndarray:
    """Grayscale (or keep colour) and downsample, as the tutorial prepares its photo.

    Example:
        >>> prepare(np.ones((4, 6, 3), dtype=np.float32), factor=2).shape
        (2, 3)
    """
    img = np.asarray(image)
    if gray and img.ndim == 3:
        img = to_gray(img)
    return downsample(img, factor)
