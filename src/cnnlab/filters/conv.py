"""`apply`: 2-D convolution of an image with a kernel, with the tutorial's exact semantics and fast paths.

Semantics (all engines agree; the reference is `scipy.signal.convolve2d`):
- The image is padded according to `boundary`, then the kernel slides over the padded image with
  `stride`; every output reads one kernel-sized window.
- `op="conv"` is true convolution, what `scipy.signal.convolve2d` and the tutorial compute: the kernel
  is flipped (rotated 180 degrees) before sliding. `op="corr"` is cross-correlation, what CNN layers
  (`torch.nn.Conv2d`, Keras `Conv2D`) compute: no flip. For symmetric kernels (blur, outline) they are
  equal; for `sobel_left` they differ in sign.
- Padding comes from `mode` (`same`: output as large as the input; `valid`: no padding; `full`: every
  partial overlap) or explicitly from `padding` (then the output is the `valid` result on the padded
  image, exactly like a CNN layer with that padding).
- Even-sized kernels in `same` mode are anchored as SciPy anchors them: with `op="conv"` a k-wide axis
  gets k//2 padding before (top/left) and (k-1)//2 after, like `convolve2d`; with `op="corr"` it gets
  (k-1)//2 before and k//2 after, like `scipy.signal.correlate2d` and PyTorch's `padding="same"`.

Engines: `direct` uses `scipy.ndimage.correlate` (compiled, one pass, no kernel size limit); `fft` uses
overlap-save tiles with `scipy.fft` (cost nearly independent of kernel size). `auto` picks `fft` from
`FFT_MIN_AREA` kernel entries up, where it starts to win. On a 12 MP photo with 2 cores
(benchmarks/filters_bench.py) that is 2-6x faster than `convolve2d` for 3x3 and 15-100x for 15x15 and
31x31. torch's CPU conv2d was measured too: slower than `ndimage` for one channel and ~1 s to import,
so it is not used here.

Computation runs in float64 for float64 input (results match SciPy to ~1e-12) and in float32 for
float32 input such as `load_image`'s (half the memory, ~1e-6 relative agreement). Colour images are
convolved channel by channel, so extra memory stays near one padded channel plus the output.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from typing import Any, Literal

import numpy as np

from cnnlab.errors import CnnlabError
from cnnlab.filters.kernels import normalize_kernel, parse_kernel
from cnnlab.images import MAX_PIXELS

BOUNDARIES: dict[str, Literal["symmetric", "reflect", "wrap", "constant"]] = {
    "symm": "symmetric",
    "reflect": "reflect",
    "wrap": "wrap",
    "fill": "constant",
}
"""Boundary name -> `numpy.pad` mode. `symm` mirrors including the edge pixel (SciPy's and the
tutorial's), `reflect` mirrors without repeating it, `wrap` is circular, `fill` pads with `fillvalue`."""
MODES = ("same", "valid", "full")
OPS = ("conv", "corr")
METHODS = ("auto", "direct", "fft")
FFT_MIN_AREA = 25  # kernels with 25+ entries (5x5 and up) go to the FFT engine when method="auto"
_FFT_TILE = 256  # output rows/cols per overlap-save tile: fits in cache, measured fastest on 2 cores


def _pair(value: Any, name: str, *, minimum: int) -> tuple[int, int]:
    vals = (value, value) if np.ndim(value) == 0 else tuple(value)
    if len(vals) != 2 or not all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in vals):
        raise CnnlabError(f"{name} must be an integer or a pair of integers, got {value!r}")
    if min(vals) < minimum:
        raise CnnlabError(f"{name} must be >= {minimum}, got {value!r}")
    return int(vals[0]), int(vals[1])


def _padding4(padding: Any) -> tuple[int, int, int, int]:
    """int p | (ph, pw) | (top, bottom, left, right) -> (top, bottom, left, right)."""
    if np.ndim(padding) == 0 or len(padding) == 2:
        ph, pw = _pair(padding, "padding", minimum=0)
        return ph, ph, pw, pw
    vals = tuple(padding)
    if len(vals) != 4:
        raise CnnlabError(f"padding must be p, (ph, pw) or (top, bottom, left, right), got {padding!r}")
    top, bottom = _pair(vals[:2], "padding", minimum=0)
    left, right = _pair(vals[2:], "padding", minimum=0)
    return top, bottom, left, right


def mode_padding(kernel_shape: Sequence[int], mode: str, op: str = "conv") -> tuple[int, int, int, int]:
    """The (top, bottom, left, right) padding a `mode` implies for a kernel shape (see module docs).

    Example:
        >>> mode_padding((3, 3), "same"), mode_padding((2, 2), "same"), mode_padding((2, 2), "same", "corr")
        ((1, 1, 1, 1), (1, 0, 1, 0), (0, 1, 0, 1))
    """
    kh, kw = kernel_shape
    if mode == "valid":
        return 0, 0, 0, 0
    if mode == "full":
        return kh - 1, kh - 1, kw - 1, kw - 1
    if op == "conv":  # convolve2d's 'same' is the centre of 'full', rounded towards the start
        return kh // 2, (kh - 1) // 2, kw // 2, (kw - 1) // 2
    return (kh - 1) // 2, kh // 2, (kw - 1) // 2, kw // 2


def _count(n: int) -> str:
    """An integer for a message: 1,234 or, when absurdly long, ~1e+40."""
    return f"{n:,}" if n < 10**15 else f"~1e+{len(str(n)) - 1}"


def check_padded_size(
    image_hw: Sequence[int],
    kernel_shape: Sequence[int],
    pads: Sequence[int],
    max_pixels: int | None = MAX_PIXELS,
    *,
    limit_name: str = "max_pixels",
) -> None:
    """Refuse padding that would make the padded image (and so the output) larger than `max_pixels`.

    The padding of any `mode` is always allowed (at most the kernel size on every side, as in 'full'),
    so an image that loaded can always be filtered; explicit padding beyond that must keep the padded
    image within the limit. Checked before anything is allocated.

    Example:
        >>> check_padded_size((10, 10), (3, 3), (1, 1, 1, 1), max_pixels=100)  # 'same' padding: fine
        >>> check_padded_size((10, 10), (3, 3), (5, 5, 5, 5), max_pixels=100)
        Traceback (most recent call last):
        ...
        cnnlab.errors.CnnlabError: padding (5, 5, 5, 5) makes the padded image 20x20 (400 pixels), over the limit of 100 pixels (max_pixels); padding up to 2 on every side fits
    """
    if max_pixels is None:
        return
    h, w = int(image_hw[0]), int(image_hw[1])
    kh, kw = int(kernel_shape[0]), int(kernel_shape[1])
    hp, wp = h + pads[0] + pads[1], w + pads[2] + pads[3]
    if hp * wp <= max(max_pixels, (h + 2 * (kh - 1)) * (w + 2 * (kw - 1))):
        return
    # the largest p with (h + 2p)(w + 2p) <= max_pixels, from the quadratic, then exact
    p = max(0, (math.isqrt((h - w) ** 2 + 4 * int(max_pixels)) - (h + w)) // 4)
    while (h + 2 * p + 2) * (w + 2 * p + 2) <= max_pixels:
        p += 1
    while p > 0 and (h + 2 * p) * (w + 2 * p) > max_pixels:
        p -= 1
    p = max(p, min(kh, kw) - 1)
    shown = ", ".join(_count(int(v)) for v in pads)
    limit = (
        f"the {max_pixels / 1e6:g}-megapixel limit"
        if max_pixels >= 10**6
        else f"the limit of {_count(int(max_pixels))} pixels"
    )
    size = f"{_count(hp * wp // 10**6)} megapixels" if hp * wp >= 10**6 else f"{_count(hp * wp)} pixels"
    raise CnnlabError(
        f"padding ({shown}) makes the padded image {_count(wp)}x{_count(hp)} ({size}), over {limit} "
        f"({limit_name}); padding up to {p} on every side fits"
    )


def _check_choice(value: str, choices: Sequence[str], name: str) -> None:
    if value not in choices:
        raise CnnlabError(f"Unknown {name} {value!r}. Choose one of: {', '.join(choices)}")


def _correlate_direct(padded: np.ndarray, k: np.ndarray, out_hw: tuple[int, int]) -> np.ndarray:
    # deferred: scipy (~0.2 s), only when a convolution runs (`filters kernels` needs none)
    from scipy import ndimage

    # ndimage centres the kernel at index k//2 and writes an output as large as its input: the valid
    # windows are the ones whose centre lies k//2 from the start.
    full = ndimage.correlate(padded, k.astype(padded.dtype), mode="constant")
    top, left = k.shape[0] // 2, k.shape[1] // 2
    return full[top : top + out_hw[0], left : left + out_hw[1]]


def _correlate_fft(padded: np.ndarray, k: np.ndarray, out_hw: tuple[int, int]) -> np.ndarray:
    """Valid cross-correlation by overlap-save: FFT tiles of the padded image against the kernel."""
    # deferred: scipy.fft (~0.2 s), only for large kernels
    from scipy import fft

    kh, kw = k.shape
    oh, ow = out_hw
    workers = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    tile = max(_FFT_TILE, 4 * max(kh, kw))
    fh = min(fft.next_fast_len(tile + kh - 1, real=True), fft.next_fast_len(padded.shape[0], real=True))
    fw = min(fft.next_fast_len(tile + kw - 1, real=True), fft.next_fast_len(padded.shape[1], real=True))
    th, tw = fh - kh + 1, fw - kw + 1  # valid outputs per tile
    # Correlation = convolution with the flipped kernel; the FFT computes (circular) convolution.
    spectrum = fft.rfft2(k[::-1, ::-1].astype(padded.dtype), s=(fh, fw), workers=workers)
    out = np.empty((oh, ow), dtype=padded.dtype)
    n_cols = -(-ow // tw)
    strip = np.zeros((n_cols, fh, fw), dtype=padded.dtype)  # one row of tiles, transformed together
    for r0 in range(0, oh, th):
        rows = min(fh, padded.shape[0] - r0)
        strip[:] = 0
        for b in range(n_cols):
            c0 = b * tw
            cols = min(fw, padded.shape[1] - c0)
            strip[b, :rows, :cols] = padded[r0 : r0 + rows, c0 : c0 + cols]
        spec = fft.rfft2(strip, workers=workers)
        spec *= spectrum  # in place: one complex strip alive at a time
        tiles = fft.irfft2(spec, s=(fh, fw), workers=workers, overwrite_x=True)
        rh = min(th, oh - r0)
        for b in range(n_cols):
            c0 = b * tw
            cw = min(tw, ow - c0)
            # Rows/cols before kh-1 / kw-1 wrapped around the tile: overlap-save discards them.
            out[r0 : r0 + rh, c0 : c0 + cw] = tiles[b, kh - 1 : kh - 1 + rh, kw - 1 : kw - 1 + cw]
    return out


def _check_fill(fillvalue: Any, k: np.ndarray, dtype) -> None:
    """A fill value must be a finite number small enough that fill x kernel stays finite in `dtype`."""
    try:
        value = float(fillvalue)
    except (TypeError, ValueError):
        raise CnnlabError(f"fill value must be a number, got {fillvalue!r}") from None
    if not math.isfinite(value):
        raise CnnlabError(f"fill value must be a finite number, got {value}")
    limit = float(np.finfo(dtype).max) / max(1.0, float(np.abs(k).sum()))
    if abs(value) > limit:
        raise CnnlabError(
            f"fill value {value:g} is too large: times this kernel it overflows {np.dtype(dtype).name}; "
            f"use a value within ±{limit:.3g}"
        )


def choose_method(kernel_shape: Sequence[int]) -> str:
    """The engine `method="auto"` uses for a kernel shape: `direct` below `FFT_MIN_AREA` entries."""
    return "fft" if kernel_shape[0] * kernel_shape[1] >= FFT_MIN_AREA else "direct"


def _pads(
    hw: tuple[int, int],
    kernel_shape: tuple[int, ...],
    *,
    mode: str | None,
    padding,
    op: str,
    max_pixels: int | None,
) -> tuple[int, int, int, int]:
    """(top, bottom, left, right) padding from ``padding`` or ``mode``, checked: not both, the padded image
    within ``max_pixels``, and at least as large as the kernel."""
    if padding is not None:
        if mode not in (None, "valid"):
            raise CnnlabError(f"give either mode={mode!r} or explicit padding, not both")
        pads = _padding4(padding)
    else:
        pads = mode_padding(kernel_shape, mode or "same", op)
    h, w = hw
    check_padded_size((h, w), kernel_shape, pads, max_pixels)
    hp, wp = h + pads[0] + pads[1], w + pads[2] + pads[3]
    if kernel_shape[0] > hp or kernel_shape[1] > wp:
        where = "the image" if hp == h and wp == w else "the padded image"
        raise CnnlabError(
            f"kernel {kernel_shape[0]}x{kernel_shape[1]} is larger than {where} ({hp}x{wp}) in "
            f"'{mode or 'valid'}' mode; use mode 'same' or 'full', or more padding"
        )
    return pads


def apply(
    image: np.ndarray,
    kernel: Any,
    *,
    boundary: str = "symm",
    mode: str | None = None,
    stride: int | tuple[int, int] = 1,
    padding: int | Sequence[int] | None = None,
    op: str = "conv",
    fillvalue: float = 0.0,
    normalize: bool = False,
    method: str = "auto",
    max_pixels: int | None = MAX_PIXELS,
) -> np.ndarray:
    """Convolve an image with a kernel: the tutorial's `convolve2d(img, kernel, boundary='symm',
    mode='same')` by default, plus strides, explicit padding, other boundaries and cross-correlation.

    Args:
        image: `(H, W)` grayscale or `(H, W, C)` colour (each channel convolved separately).
        kernel: a registered name (`"outline"`), a 2-D matrix, matrix text or a kernel file.
        boundary: how the image is extended past its edge: `symm`, `reflect`, `wrap` or `fill`.
        mode: `same` (default), `valid` or `full`; not combined with `padding` (except `valid`).
        stride: step of the kernel, an int or (rows, cols).
        padding: explicit padding instead of `mode`: p, (ph, pw) or (top, bottom, left, right).
        op: `conv` (true convolution, kernel flipped) or `corr` (cross-correlation, as in CNN layers).
        fillvalue: the value outside the image for `boundary="fill"`.
        normalize: scale the kernel to sum 1 (positive entries to 1 for zero-sum kernels).
        method: `auto`, `direct` or `fft` (same results within float rounding).
        max_pixels: refuse explicit padding that makes the padded image larger than this (the padding
            of any `mode` is always allowed); `None` for no limit. See `check_padded_size`.

    Returns:
        The feature map, float32 for float32 input, else float64; `(Ho, Wo)` or `(Ho, Wo, C)` with
        `Ho = (H + pad_top + pad_bottom - kh) // stride + 1` (see `output_size`).

    Example:
        >>> import numpy as np
        >>> from scipy.signal import convolve2d
        >>> from cnnlab.filters import get_kernel
        >>> img = np.random.default_rng(0).random((6, 8))
        >>> np.allclose(apply(img, "sobel_left"), convolve2d(img, get_kernel("sobel_left"), boundary="symm", mode="same"))
        True
        >>> apply(np.ones((5, 5)), np.ones((3, 3)), padding=1, stride=2, boundary="fill").shape
        (3, 3)
    """
    _check_choice(boundary, tuple(BOUNDARIES), "boundary")
    _check_choice(op, OPS, "op")
    _check_choice(method, METHODS, "method")
    if mode is not None:
        _check_choice(mode, MODES, "mode")
    img = np.asarray(image)
    if img.dtype.kind not in "iufb" or img.ndim not in (2, 3):
        raise CnnlabError(f"image must be a numeric (H, W) or (H, W, C) array, got {img.dtype} {img.shape}")
    if img.size == 0:
        raise CnnlabError(f"image is empty (shape {img.shape})")
    k = parse_kernel(kernel)
    if normalize:
        k = normalize_kernel(k)
    pads = _pads(img.shape[:2], k.shape, mode=mode, padding=padding, op=op, max_pixels=max_pixels)
    sh, sw = _pair(stride, "stride", minimum=1)
    hp, wp = img.shape[0] + pads[0] + pads[1], img.shape[1] + pads[2] + pads[3]
    dtype = img.dtype if img.dtype in (np.float32, np.float64) else np.float64
    if boundary == "fill":
        _check_fill(fillvalue, k, dtype)
    corr_kernel = k[::-1, ::-1] if op == "conv" else k  # everything below is cross-correlation
    engine = choose_method(k.shape) if method == "auto" else method
    valid_hw = (hp - k.shape[0] + 1, wp - k.shape[1] + 1)
    pad_kw: dict[str, Any] = {"constant_values": fillvalue} if boundary == "fill" else {}
    np_mode = BOUNDARIES[boundary]

    def one_channel(channel: np.ndarray) -> np.ndarray:
        padded = np.pad(channel.astype(dtype, copy=False), (pads[:2], pads[2:]), mode=np_mode, **pad_kw)
        if engine == "fft":
            res = _correlate_fft(padded, corr_kernel, valid_hw)
        else:
            res = _correlate_direct(padded, corr_kernel, valid_hw)
        return res[::sh, ::sw]

    if img.ndim == 2:
        return np.ascontiguousarray(one_channel(img))
    out_hw = (-(-valid_hw[0] // sh), -(-valid_hw[1] // sw))
    out = np.empty((*out_hw, img.shape[2]), dtype=dtype)
    for c in range(img.shape[2]):
        out[..., c] = one_channel(img[..., c])
    return out
