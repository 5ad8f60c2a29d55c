"""Any image -> the (1, C, H, W) tensor of 0..1 pixels a model takes, and a note of what was done to it.

An image file (a path or its bytes) is decoded exactly as `cnnlab predict` and folder datasets decode it
(`cnnlab.data.decode`: same grayscale conversion, resize mode and uint8 rounding), so explain, the page
and predict give the same probabilities for the same file; pass a run's ``image_options``. Arrays and
tensors are resized in float with the same geometry and filter (`cnnlab.data.fit.fit_array`). Grayscale
uses the tutorial's weights (0.299 R + 0.587 G + 0.114 B); a gray image for an RGB model is repeated on
the three channels. ``fill`` pads a resized image with black (what folder datasets train on) or with its
own border colour (for models trained on images that were never padded). Fashion-MNIST and MNIST show
light objects on black, while photos and drawings are usually dark on white, so for models trained on
such data (``light_on_dark``) ``invert="auto"`` inverts a grayscale image whose border is mostly bright
(``True``/``False`` force it).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import numpy as np
import torch

from cnnlab.data.decode import decode_image
from cnnlab.data.fit import border_median, fit_array
from cnnlab.errors import CnnlabError
from cnnlab.images import MAX_PIXELS, load_image, to_gray


@dataclass
class PreparedInput:
    tensor: torch.Tensor  # (1, C, H, W) float32 in 0..1
    source: str = "array"
    original_size: tuple[int, int] | None = None  # (height, width) before resizing
    inverted: bool = False
    resized: bool = False
    label: int | None = None  # the true class, for dataset images
    extra: dict = field(default_factory=dict)

    def __repr__(self) -> str:
        shape = "x".join(map(str, self.tensor.shape[1:]))
        how = [w for w, on in (("resized", self.resized), ("inverted", self.inverted)) if on]
        size = f" from {self.original_size[1]}x{self.original_size[0]}" if self.original_size else ""
        label = f", label {self.label}" if self.label is not None else ""
        return f"PreparedInput({shape} in 0..1{size}, {self.source!r}{''.join(', ' + w for w in how)}{label})"

    def info(self) -> dict:
        return {
            "shape": list(self.tensor.shape[1:]),
            "source": self.source,
            "original_size": list(self.original_size) if self.original_size else None,
            "inverted": self.inverted,
            "resized": self.resized,
            "label": self.label,
        }


def bright_border(images: np.ndarray) -> np.ndarray:
    """Which of the (N, C, H, W) images (0..1 float or uint8) have a mostly bright border (the channel mean
    of `cnnlab.data.fit.border_median`): a dark object on a light background, the opposite of
    Fashion-MNIST's. One rule for predict, explain and the page; NumPy, as a server prepares many small
    images and each torch call on a tiny tensor costs more than the arithmetic."""
    bright = 127.5 if images.dtype == np.uint8 else 0.5
    return border_median(images).astype(np.float32).mean(axis=-1) > bright


def auto_invert(images: torch.Tensor) -> torch.Tensor:
    """`bright_border` of a batch tensor, as a bool tensor (N,)."""
    return torch.from_numpy(bright_border(images.detach().cpu().numpy()))


def prepare_input(
    image,
    input_shape: tuple[int, int, int] | None = None,
    *,
    invert: bool | str = "auto",
    source: str | None = None,
    label: int | None = None,
    resize: str = "pad",
    fill: str = "border",
    light_on_dark: bool = True,
    max_pixels: int | None = MAX_PIXELS,
) -> PreparedInput:
    """Turn ``image`` into the model's input.

    Args:
        image: a path or image bytes (read with `cnnlab.load_image`), an (H, W) or (H, W, C) array in
            0..1 (uint8 is divided by 255), or a (C, H, W) / (1, C, H, W) tensor (uint8 or 0..1 float).
        input_shape: the model's (C, H, W); None keeps the image's own shape.
        invert: ``"auto"``, ``True`` or ``False`` (see the module docstring).
        resize, fill, light_on_dark: how the model's training images looked; a run's ``image_options``.
        max_pixels: refuse larger image files before decoding them (a decompression-bomb guard).

    Example:
        >>> p = prepare_input(np.ones((56, 56), dtype=np.float32) * 0.9, (1, 28, 28))
        >>> tuple(p.tensor.shape), p.resized, p.inverted
        ((1, 1, 28, 28), True, True)
    """
    if isinstance(image, (str, os.PathLike, bytes, bytearray, memoryview)):
        src = source or (os.fspath(image) if isinstance(image, (str, os.PathLike)) else "bytes")
        c, h, w = input_shape or (0, 0, 0)
        if input_shape is not None and h == w and c in (1, 3):  # as predict and training decode files
            name = None if isinstance(image, (str, os.PathLike)) else src
            pixels, original = decode_image(
                image, size=h, channels=c, resize=resize, fill=fill, max_pixels=max_pixels, name=name,
                return_size=True,
            )  # fmt: skip
            return _finish(
                pixels.astype(np.float32) / np.float32(255.0), original, input_shape, invert, light_on_dark,
                source=src, label=label, resized=original != (h, w),
            )  # fmt: skip
        image = load_image(image, gray=c == 1, max_pixels=max_pixels)
        source = src
    t = _as_chw(image, input_shape)
    original = (int(t.shape[1]), int(t.shape[2]))
    t, resized = _shaped(t, input_shape, resize, fill)
    return _finish(
        t.numpy(), original, input_shape, invert, light_on_dark, source=source, label=label, resized=resized
    )


def _as_chw(image, input_shape: tuple[int, int, int] | None) -> torch.Tensor:
    """A tensor or array image as float32 (C, H, W) pixels in 0..1 (uint8 divided by 255; an RGB array
    made gray for a one-channel model), all finite."""
    if isinstance(image, torch.Tensor):
        t = image.detach().cpu()
        if t.dim() == 4 and t.shape[0] == 1:
            t = t[0]
        if t.dim() == 2:
            t = t[None]
        if t.dim() != 3:
            raise CnnlabError(f"expected an image tensor of shape (C, H, W), got {tuple(image.shape)}")
        t = t.float().div_(255.0) if t.dtype == torch.uint8 else t.float()
    else:
        a = np.asarray(image)
        if a.dtype == np.uint8:
            a = a.astype(np.float32) / np.float32(255.0)
        if a.dtype.kind not in "fiub":
            raise CnnlabError(f"expected a numeric image array, got dtype {a.dtype}")
        a = a.astype(np.float32, copy=False)
        if a.ndim == 2:
            t = torch.from_numpy(np.ascontiguousarray(a))[None]
        elif a.ndim == 3:
            if input_shape is not None and input_shape[0] == 1 and a.shape[-1] >= 3:
                a = to_gray(a)[..., None]
            t = torch.from_numpy(np.ascontiguousarray(a)).permute(2, 0, 1).contiguous()
        else:
            raise CnnlabError(f"expected an (H, W) or (H, W, C) image, got shape {a.shape}")
    if not torch.isfinite(t).all():
        raise CnnlabError("the image has NaN or infinite pixels")
    return t


def _shaped(
    t: torch.Tensor, input_shape: tuple[int, int, int] | None, resize: str, fill: str
) -> tuple[torch.Tensor, bool]:
    """(C, H, W) pixels with the model's channels and size (resized as image files are), and whether the
    size changed."""
    if input_shape is None:
        return t, False
    c, h, w = (int(v) for v in input_shape)
    if t.shape[0] != c:
        if c == 1 and t.shape[0] >= 3:
            weights = torch.tensor([0.299, 0.587, 0.114], dtype=torch.float32).view(3, 1, 1)
            t = (t[:3] * weights).sum(0, keepdim=True)
        elif t.shape[0] == 1:
            t = t.expand(c, -1, -1).contiguous()
        else:
            raise CnnlabError(f"the model takes {c} channels; the image has {t.shape[0]}")
    if tuple(t.shape[1:]) == (h, w):
        return t, False
    return torch.from_numpy(
        fit_array(t.numpy(), (h, w), resize, fill)
    ), True  # as files get (cnnlab.data.fit)


def _finish(a, original, input_shape, invert, light_on_dark, *, source, label, resized) -> PreparedInput:
    """Invert the (C, H, W) float32 pixels ``a`` as asked (``"auto"``: a grayscale model trained on
    light-on-dark images, and a `bright_border`)."""
    if invert == "auto":
        inverted = (
            input_shape is not None
            and input_shape[0] == 1
            and light_on_dark
            and bool(bright_border(a[None])[0])
        )
    else:
        inverted = bool(invert)
    if inverted:
        a = np.float32(1.0) - a
    return PreparedInput(
        torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32))[None],
        source=source or "array",
        original_size=original,
        inverted=inverted,
        resized=resized,
        label=label,
    )
