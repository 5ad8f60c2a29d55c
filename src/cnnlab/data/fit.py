"""Fitting an image to a model's square (or any) input size: `"pad"`, `"crop"` or `"stretch"`, the one
geometry for image files (`cnnlab.data.decode`) and for arrays (`fit_array`, what `cnnlab.explain` uses
for tensors), and `border_median`, the background-colour rule shared by padding and auto-inversion."""

from __future__ import annotations

import numpy as np
from PIL import Image

from cnnlab.errors import CnnlabError

__all__ = ["border_median", "fit_array", "fit_image"]


def fit_image(im, size: int | tuple[int, int], resize: str = "pad", fill: str = "black"):
    """Resize a Pillow image to `size` (square side, or (height, width)) as `resize` says: the one
    geometry for files (`decode_image`) and arrays (`fit_array`).

    `"pad"` scales the image to fit inside and centres it on a canvas of `fill` (`"black"`, or
    `"border"`: the median colour of the scaled image's outermost pixels); `"crop"` scales it to cover
    and keeps the centre (only that part is resampled); `"stretch"` ignores the aspect ratio.
    Resampling is bilinear and antialiased (Pillow widens the filter when shrinking). Any mode
    Pillow resizes works, "F" (float32) included.

    Example:
        >>> from PIL import Image
        >>> fit_image(Image.new("L", (40, 20), 255), 8).getpixel((4, 0))  # black bands above and below
        0
    """
    th, tw = (size, size) if isinstance(size, int) else size
    w, h = im.size
    bilinear = Image.Resampling.BILINEAR
    if resize == "stretch" or w * th == h * tw:  # same aspect ratio: all three modes agree
        return im if (w, h) == (tw, th) else im.resize((tw, th), bilinear)
    if resize == "crop":
        scale = max(tw / w, th / h)
        nw, nh = max(tw, round(w * scale)), max(th, round(h * scale))
        left, top = (nw - tw) // 2, (nh - th) // 2
        # resize(box=...) crops in source coordinates first, so only the kept part is resampled
        box = (left / scale, top / scale, (left + tw) / scale, (top + th) / scale)
        return im.resize((tw, th), bilinear, box=box)
    scale = min(tw / w, th / h)
    nw, nh = max(1, round(w * scale)), max(1, round(h * scale))
    small = im.resize((nw, nh), bilinear)
    canvas = Image.new(im.mode, (tw, th), _border_colour(small) if fill == "border" else 0)
    canvas.paste(small, ((tw - nw) // 2, (th - nh) // 2))  # centred
    return canvas


def fit_array(
    image: np.ndarray, size: int | tuple[int, int], resize: str = "pad", fill: str = "black"
) -> np.ndarray:
    """`fit_image` for a float (C, H, W) array (e.g. 0..1 pixels): each channel resized as a float32
    Pillow image, so arrays and files get the same geometry and filter. Returns float32 (C, h, w).

    Example:
        >>> fit_array(np.ones((3, 20, 40), dtype=np.float32), (8, 8)).shape
        (3, 8, 8)
    """
    x = np.asarray(image, dtype=np.float32)
    if x.ndim != 3:
        raise CnnlabError(f"fit_array takes a (C, H, W) array, got shape {x.shape}")
    planes = [np.asarray(fit_image(Image.fromarray(np.ascontiguousarray(c)), size, resize, fill)) for c in x]
    return np.stack(planes).astype(np.float32, copy=False)


def border_median(images: np.ndarray) -> np.ndarray:
    """Per-channel lower median of the outermost pixels of (..., C, H, W) images: their background colour.
    One rule for padding (fill="border") and for `cnnlab.explain`'s auto-inversion."""
    edge = np.concatenate(
        [images[..., 0, :], images[..., -1, :], images[..., :, 0], images[..., :, -1]], axis=-1
    )
    return np.sort(edge, axis=-1)[..., (edge.shape[-1] - 1) // 2]


def _border_colour(im) -> float | tuple[int, ...]:
    a = np.asarray(im)
    colour = border_median(a[None] if a.ndim == 2 else a.transpose(2, 0, 1))
    if im.mode == "F":
        return float(colour[0])
    return int(colour[0]) if len(colour) == 1 else tuple(int(v) for v in colour)
