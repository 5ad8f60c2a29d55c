"""The one image decoder for files: any image Pillow can read, as uint8 pixels, safely; and its float view.

`decode_pixels` is the decoder everything uses: folder datasets and `predict` (`cnnlab.data.decode`, which
adds the parallel batch and the fit to the model's size) and `load_image`, the float32 0..1 view of the
same uint8 pixels for the filter playground, explain's arrays and web uploads. It accepts a path, raw bytes
or a binary file object, and gives `(H, W)` or `(H, W, 3)` uint8: grayscale files stay one channel (or
become ITU-R 601 luma, the tutorial's 0.299 R + 0.587 G + 0.114 B, when asked for one channel), everything
else is RGB; 16-bit and float images are scaled to 0..255, transparent pixels composited onto white, the
first frame of an animation taken and EXIF-rotated photos turned upright.

Safety: a path is opened with `cnnlab.userfiles.open_user_file` (regular files only, at most
`MAX_IMAGE_BYTES`, never blocking on a FIFO); the pixel count is checked on the header, before any pixel
is decoded, against `MAX_PIXELS` (a decompression bomb, e.g. a 1 MB PNG that decodes to 100,000 x 100,000
pixels, is refused without allocating anything); an image under `MIN_IMAGE_SIDE` pixels on a side is
refused; a PNG's text chunks and ICC profile, which Pillow would inflate (up to 64 MB from a 60 KB file),
are dropped before Pillow opens it (`cnnlab.pngsafe`). Every failure is a `BadImageError` whose message
says why (callers name the file), or from `load_image` one `CnnlabError` line that names the file.
"""

from __future__ import annotations

import io
import os
import re
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import BinaryIO

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from cnnlab.errors import CnnlabError
from cnnlab.pngsafe import without_metadata
from cnnlab.userfiles import UserFileError, open_user_file

MAX_PIXELS = 50_000_000
"""Largest image accepted by default, in pixels (50 megapixels: above a 48 MP phone photo, and
50e6 x 3 channels x 4 bytes = 600 MB as float32). Pass `max_pixels=None` to lift it."""

MIN_IMAGE_SIDE = 8
"""Smallest image side accepted from a user, everywhere (CLI, Python, the server): a picture under 8x8
pixels holds too little to classify or explain, and upscaled to a model's input it is a few flat blocks.
Arrays passed in Python and `cnnlab conv`'s arithmetic on sizes have no minimum. Pass `min_side=1` to
lift it."""

MAX_IMAGE_BYTES = 512 << 20
"""Largest image file read (512 MiB): more than an uncompressed 16-bit RGBA image of `MAX_PIXELS` needs."""

# ITU-R BT.601 luma weights, exactly as the tutorial's rgb2gray.
GRAY_WEIGHTS = (0.299, 0.587, 0.114)

_READ_WHOLE = 64 << 20  # files smaller than this are read in one go

ImageSource = str | os.PathLike | bytes | bytearray | memoryview | BinaryIO


def to_gray(rgb: np.ndarray) -> np.ndarray:
    """Grayscale with the tutorial's weights: `0.299 R + 0.587 G + 0.114 B` (extra channels ignored).

    Example:
        >>> import numpy as np
        >>> to_gray(np.array([[[1.0, 0.0, 0.0], [1.0, 1.0, 1.0]]])).round(6).tolist()
        [[0.299, 1.0]]
    """
    rgb = np.asarray(rgb)
    if rgb.ndim == 2:
        return rgb
    if rgb.ndim != 3 or rgb.shape[-1] < 3:
        raise CnnlabError(f"expected an (H, W) or (H, W, 3) image, got shape {rgb.shape}")
    dtype = rgb.dtype if rgb.dtype.kind == "f" else np.float32
    return rgb[..., :3] @ np.asarray(GRAY_WEIGHTS, dtype=dtype)


def bomb_message(exc: Exception, max_pixels: int | None) -> str:
    """Pillow's decompression-bomb refusal, said in our terms: the pixel count and our limit."""
    m = re.search(r"\((\d+) pixels\)", str(exc))
    pixels = int(m[1]) if m else None
    size = f"{pixels / 1e6:g} megapixels" if pixels else "too many pixels"
    if max_pixels and pixels and pixels > max_pixels:
        return f"has {size}, over the {max_pixels / 1e6:g}-megapixel limit (a decompression-bomb guard)"
    pillow = 2 * (Image.MAX_IMAGE_PIXELS or 0) / 1e6  # Pillow refuses twice its warning threshold
    return f"has {size}, over Pillow's own decompression-bomb limit of {pillow:g} megapixels"


def _describe(source: ImageSource, name: str | None) -> str:
    if name is None:
        name = (
            os.fspath(source)
            if isinstance(source, (str, os.PathLike))
            else getattr(source, "name", "<bytes>")
        )
    text = str(name)
    return repr(text if len(text) <= 120 else f"{text[:40]}...{text[-60:]}")  # one readable line


@contextmanager
def _readable(source: ImageSource, name: str | None) -> Iterator[BinaryIO]:
    """A binary file for `source`: a path opened with the user-file checks, bytes wrapped, a file object
    passed through (and left open: it is the caller's)."""
    if isinstance(source, (str, os.PathLike)):
        try:
            f = open_user_file(source, max_bytes=MAX_IMAGE_BYTES, what="image")
        except UserFileError as exc:
            raise exc if name is None else type(exc)(name, exc.reason, what="image") from None
        with f:
            yield f
    elif isinstance(source, (bytes, bytearray, memoryview)):
        yield io.BytesIO(bytes(source))
    else:
        yield source


def check_side(width: int, height: int, min_side: int = MIN_IMAGE_SIDE) -> str | None:
    """Why a `width` x `height` image is too small to accept, or None. One rule for every path.

    Example:
        >>> check_side(4, 30)
        'is 4x30 pixels; the smallest accepted is 8x8'
    """
    if min(width, height) < min_side:
        return f"is {width}x{height} pixels; the smallest accepted is {min_side}x{min_side}"
    return None


def load_image(
    source: ImageSource,
    *,
    gray: bool = False,
    max_pixels: int | None = MAX_PIXELS,
    min_side: int = MIN_IMAGE_SIDE,
    name: str | None = None,
) -> np.ndarray:
    """Read an image file (or bytes) as float32 in 0..1.

    Handles every mode Pillow decodes: palette, CMYK, 16-bit, alpha (composited onto white),
    animated or multi-page files (first frame) and EXIF-rotated phone photos (turned upright).

    Args:
        source: a path, the file's bytes (e.g. a web upload), or a binary file object.
        gray: return `(H, W)` luma `0.299 R + 0.587 G + 0.114 B` instead of `(H, W, 3)` RGB.
        max_pixels: refuse images with more pixels than this, checked on the header before decoding
            (default `MAX_PIXELS`, 50 megapixels); `None` for no limit.
        min_side: refuse images with a side under this many pixels (default `MIN_IMAGE_SIDE`, 8).
        name: how to name the image in error messages (defaults to the path).

    Returns:
        A C-contiguous float32 array with values in [0, 1].

    Raises:
        CnnlabError: missing, not a regular file, unreadable, truncated, too small or oversized; one
        line naming it.

    Example:
        >>> import io
        >>> from PIL import Image
        >>> buf = io.BytesIO()
        >>> Image.new("RGB", (16, 8), (255, 0, 0)).save(buf, format="PNG")
        >>> img = load_image(buf.getvalue(), gray=True)
        >>> img.shape, round(float(img[0, 0]), 3)
        ((8, 16), 0.299)
    """
    label = _describe(source, name)
    with _readable(source, name) as fp:
        try:
            pixels = decode_pixels(fp, channels=0, max_pixels=max_pixels, min_side=min_side)
        except BadImageError as exc:
            raise CnnlabError(named(label, str(exc))) from None
    return float_view(pixels, gray=gray)


def named(label: str, reason: str) -> str:
    """One line naming an image and why it was refused: ``'a.png' is 4x4 pixels; ...``, ``'b.png': not an
    image Pillow can read``."""
    return f"{label} {reason}" if reason.startswith(("is ", "has ")) else f"{label}: {reason}"


def float_view(pixels: np.ndarray, *, gray: bool = False) -> np.ndarray:
    """uint8 (H, W) or (H, W, 3) pixels as C-contiguous float32 in 0..1: ``gray`` gives (H, W) (RGB through
    the tutorial's luma weights, in float), else (H, W, 3) (a grayscale image repeated).

    Example:
        >>> [round(float(v), 3) for v in float_view(np.array([[[255, 0, 0]]], dtype=np.uint8), gray=True)[0]]
        [0.299]
    """
    arr = pixels.astype(np.float32)
    arr *= np.float32(1.0 / 255.0)
    if gray:
        return np.ascontiguousarray(to_gray(arr)) if arr.ndim == 3 else arr
    return np.repeat(arr[:, :, None], 3, axis=2) if arr.ndim == 2 else arr


class BadImageError(Exception):
    """One image that cannot be decoded; the message says why, without naming the file (the caller does)."""


def decode_pixels(
    source: str | os.PathLike | bytes | BinaryIO,
    *,
    channels: int = 0,
    max_pixels: int | None = MAX_PIXELS,
    min_side: int = MIN_IMAGE_SIDE,
    draft: Callable[[int, int], tuple[int, int]] | None = None,
    hw: np.ndarray | None = None,
) -> np.ndarray:
    """Decode one image to uint8 (H, W) or (H, W, 3): the one decoder (see the module docstring).

    Args:
        channels: 1 (luma), 3 (RGB) or 0 (native: one channel for grayscale files, else RGB).
        draft: for a JPEG, ``draft(width, height)`` gives the smallest size worth decoding (libjpeg's DCT
            scaling decodes at 1/2..1/8 scale, several times faster, when the caller shrinks anyway).
        hw: an int64 (2,) array receiving the original (height, width), upright.

    Raises:
        BadImageError: unreadable, truncated, corrupt, too large or too small; the message says which.
    """
    with _opened(source) as fp:
        if isinstance(fp, io.BytesIO) and not fp.getbuffer().nbytes:
            raise BadImageError(
                "empty file (0 bytes)" if isinstance(source, (str, os.PathLike)) else "empty (0 bytes)"
            )
        try:
            fp = without_metadata(fp)  # a PNG's text chunks and ICC profile: never inflated
            with warnings.catch_warnings():
                # Our own, stricter pixel limit is checked below, before any decoding.
                warnings.simplefilter("ignore", Image.DecompressionBombWarning)
                im = Image.open(fp)
        except UnidentifiedImageError:
            raise BadImageError("not an image Pillow can read") from None
        except Image.DecompressionBombError as exc:
            raise BadImageError(bomb_message(exc, max_pixels)) from None
        except (OSError, ValueError, SyntaxError, EOFError) as exc:
            raise BadImageError(f"unreadable: truncated or corrupt header ({exc})") from None
        try:
            return _pixels(im, channels, max_pixels, min_side, draft, hw)
        finally:
            im.close()


@contextmanager
def _opened(source: str | os.PathLike | bytes | BinaryIO) -> Iterator[BinaryIO]:
    """A file Pillow can read: bytes wrapped, a file object as it is, a path opened with the user-file checks
    (a FIFO, device or folder is refused without blocking) and read in one go when small, which is a third
    of a small JPEG's time saved over Pillow's dozens of small reads; huge files stream, still bounded."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        yield io.BytesIO(bytes(source))
        return
    if not isinstance(source, (str, os.PathLike)):
        yield source
        return
    try:
        f = open_user_file(source, max_bytes=MAX_IMAGE_BYTES, what="image")
    except UserFileError as exc:
        raise BadImageError(exc.reason) from None
    with f:
        head = f.read(_READ_WHOLE)
        if len(head) < _READ_WHOLE:
            yield io.BytesIO(head)
        else:
            f.seek(0)
            yield f


def _pixels(im, channels: int, max_pixels: int | None, min_side: int, draft, hw) -> np.ndarray:
    """The opened image checked, decoded, made upright and converted: uint8 (H, W[, 3])."""
    w, h = im.size
    if w <= 0 or h <= 0:
        raise BadImageError(f"has no pixels ({w}x{h})")
    if max_pixels is not None and w * h > max_pixels:
        raise BadImageError(
            f"has {w * h / 1e6:.1f} megapixels ({w}x{h}), over the {max_pixels / 1e6:g}-megapixel limit "
            "(a decompression-bomb guard)"
        )
    small = check_side(w, h, min_side)
    if small:
        raise BadImageError(small)
    try:
        if getattr(im, "n_frames", 1) > 1:
            im.seek(0)  # animated GIF/WebP/APNG, multi-page TIFF: the first frame
        if im.format == "JPEG" and draft is not None:
            # Decode at 1/2, 1/4 or 1/8 scale when the target is that small; "L" decodes luma only.
            im.draft("L" if channels == 1 else "RGB", draft(w, h))
        im.load()
        orientation = im.getexif().get(0x0112, 1)  # EXIF: phone photos are often stored sideways
        if hw is not None:  # the true size, upright (draft may have decoded at 1/2..1/8)
            hw[:] = (w, h) if orientation in (5, 6, 7, 8) else (h, w)
        if orientation != 1:
            im = ImageOps.exif_transpose(im)
        im = _to_mode(im, channels)
    except Image.DecompressionBombError as exc:
        raise BadImageError(bomb_message(exc, max_pixels)) from None
    except (OSError, ValueError, SyntaxError, EOFError, MemoryError) as exc:
        # Truncated or corrupt data surfaces here, when the pixels are actually decoded.
        raise BadImageError(f"truncated or corrupt ({exc})") from None
    return np.asarray(im, dtype=np.uint8)


def _to_mode(im, channels: int):
    """Any Pillow mode -> "L" (channels=1), "RGB" (3), or either (0: "L" for grayscale files), 8 bits."""
    mode = im.mode
    if mode in ("I;16", "I;16L", "I;16B", "I;16N", "I"):
        # 16-bit grayscale PNG/TIFF (Pillow may open it as "I"): 0..65535 -> 0..255.
        arr = np.asarray(im, dtype=np.float32) * np.float32(255.0 / 65535.0)
        im = Image.fromarray(np.clip(np.rint(arr), 0, 255).astype(np.uint8))
    elif mode == "F":
        arr = np.asarray(im, dtype=np.float32) * np.float32(255.0)  # float TIFF: taken as 0..1
        im = Image.fromarray(np.clip(np.rint(np.nan_to_num(arr)), 0, 255).astype(np.uint8))
    elif "A" in mode or "transparency" in im.info:
        # Transparent pixels have undefined colour: composite onto white, as a viewer shows them.
        rgba = im.convert("RGBA")
        im = Image.alpha_composite(Image.new("RGBA", rgba.size, (255, 255, 255, 255)), rgba)
    gray = channels == 1 or (channels == 0 and im.mode in ("L", "1"))
    target = "L" if gray else "RGB"
    if im.mode == target:
        return im
    if target == "L" and im.mode not in ("1", "RGB"):
        im = im.convert("RGB")  # CMYK, P, YCbCr...: via RGB so every source gets the same luma weights
    return im.convert(target)
