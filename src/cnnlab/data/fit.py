"""Fitting an image to a model's square (or any) input size: `"pad"`, `"crop"` or `"stretch"`, the one
geometry for image files (`fit_pixels`, what `cnnlab.data.decode` uses), Pillow images (`fit_image`) and
arrays (`fit_array`, what `cnnlab.explain` uses for tensors), and `border_median`, the background-colour
rule shared by padding and auto-inversion.

The filter is bilinear and antialiased everywhere. Decoded files are resampled by torch's vectorised uint8
kernel (`F.interpolate(..., antialias=True)`), which computes Pillow's BILINEAR filter and rounds to within
one level of it (on about one pixel in 10^4), about three times faster than Pillow on one core.
"""

from __future__ import annotations

import warnings

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from cnnlab.errors import CnnlabError

__all__ = ["border_median", "fit_array", "fit_image", "fit_pixels"]

# torch.from_numpy warns, once per process, that Pillow's arrays are read-only. `_resampled` only reads
# them, and copying a large image to silence it would cost its size again in memory, so the one warning
# is spent here, silenced (its "once" is torch's own, kept in the process and by forked workers).
with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    torch.from_numpy(np.frombuffer(b"\0", dtype=np.uint8))


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


def fit_pixels(
    pixels: np.ndarray, size: int | tuple[int, int], resize: str = "pad", fill: str = "black"
) -> np.ndarray:
    """`fit_image` for decoded uint8 pixels (H, W) or (H, W, C): returns channels-first uint8 (C, h, w),
    resampled by torch's SIMD kernel (see the module docstring). A "crop" to another aspect ratio,
    which resamples a box with fractional edges, goes through Pillow's `fit_image`.

    Example:
        >>> fit_pixels(np.full((20, 40), 255, dtype=np.uint8), 8)[0, :, 4].tolist()  # bands above and below
        [0, 0, 255, 255, 255, 255, 0, 0]
    """
    th, tw = (size, size) if isinstance(size, int) else size
    h, w = pixels.shape[:2]
    if resize == "crop" and w * th != h * tw:
        return _channels_first(np.asarray(fit_image(Image.fromarray(pixels), (th, tw), resize, fill)))
    if resize == "stretch" or w * th == h * tw:
        return _resampled(pixels, th, tw)
    scale = min(tw / w, th / h)
    nw, nh = max(1, round(w * scale)), max(1, round(h * scale))
    small = _resampled(pixels, nh, nw)
    canvas = np.zeros((small.shape[0], th, tw), dtype=np.uint8)
    if fill == "border":
        canvas[:] = border_median(small)[:, None, None]
    top, left = (th - nh) // 2, (tw - nw) // 2  # centred
    canvas[:, top : top + nh, left : left + nw] = small
    return canvas


def _resampled(pixels: np.ndarray, h: int, w: int) -> np.ndarray:
    """uint8 (H, W[, C]) -> contiguous (C, h, w), bilinear and antialiased."""
    if pixels.shape[:2] == (h, w):
        return _channels_first(pixels)
    hwc = torch.from_numpy(pixels)  # Pillow's arrays are read-only: only read (see the top of the module)
    nchw = (hwc[None] if hwc.ndim == 2 else hwc.permute(2, 0, 1))[None]
    return F.interpolate(nchw, size=(h, w), mode="bilinear", antialias=True, align_corners=False)[0].numpy()


def _channels_first(pixels: np.ndarray) -> np.ndarray:
    """uint8 (H, W) or (H, W, C) -> contiguous (C, H, W)."""
    return pixels[None] if pixels.ndim == 2 else np.ascontiguousarray(pixels.transpose(2, 0, 1))


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
