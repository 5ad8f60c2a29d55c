"""Load any image Pillow can read as a float32 array in 0..1, safely.

One loader for the filter playground, explain's arrays and web uploads; folder datasets and predict decode
files to uint8 at the model's size in `cnnlab.data.decode`, with the same limits (imported from here). It
accepts a path, raw bytes or a binary file object, and always returns either `(H, W)` grayscale (ITU-R
601 luma: 0.299 R + 0.587 G + 0.114 B, the tutorial's weights) or `(H, W, 3)` RGB.

Safety: a path is opened with `cnnlab.userfiles.open_user_file` (regular files only, at most
`MAX_IMAGE_BYTES`, never blocking on a FIFO); the pixel count is checked on the header, before any pixel
is decoded, against `MAX_PIXELS` (a decompression bomb, e.g. a 1 MB PNG that decodes to 100,000 x 100,000
pixels, is refused without allocating anything); an image under `MIN_IMAGE_SIDE` pixels on a side is
refused; a PNG's text chunks and ICC profile, which Pillow would inflate (up to 64 MB from a 60 KB file),
are dropped before Pillow opens it (`cnnlab.pngsafe`). Every failure is one `CnnlabError` line that names the file.
"""

from __future__ import annotations

import io
import os
import re
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import BinaryIO

import numpy as np

from cnnlab.errors import CnnlabError
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
    from PIL import Image

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


def _open(fp: BinaryIO, label: str, max_pixels: int | None = None):
    from PIL import Image

    from cnnlab.pngsafe import without_metadata

    if isinstance(fp, io.BytesIO) and not fp.getbuffer().nbytes:
        raise CnnlabError(f"{label} is empty (0 bytes), not an image")
    try:
        fp = without_metadata(fp)  # a PNG's text chunks and ICC profile: never inflated (cnnlab.pngsafe)
    except OSError as exc:
        raise CnnlabError(f"{label} is unreadable ({exc})") from None
    try:
        # Pillow warns (and above ~179 MP raises) on big images; we do our own, stricter check below,
        # so silence the warning rather than change Pillow's process-wide MAX_IMAGE_PIXELS.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            return Image.open(fp)  # reads the header only; pixels are decoded by load()
    except Image.DecompressionBombError as exc:
        raise CnnlabError(f"{label} {bomb_message(exc, max_pixels)}") from None
    except Image.UnidentifiedImageError:
        raise CnnlabError(f"{label} is not an image (Pillow cannot identify its format)") from None
    except (OSError, ValueError, SyntaxError, EOFError) as exc:
        raise CnnlabError(f"{label} is unreadable or truncated ({exc})") from None


def check_side(width: int, height: int, min_side: int = MIN_IMAGE_SIDE) -> str | None:
    """Why a `width` x `height` image is too small to accept, or None. One rule for every path.

    Example:
        >>> check_side(4, 30)
        'is 4x30 pixels; the smallest accepted is 8x8'
    """
    if min(width, height) < min_side:
        return f"is {width}x{height} pixels; the smallest accepted is {min_side}x{min_side}"
    return None


def _to_array(im, gray: bool) -> np.ndarray:
    """Decoded Pillow image -> float32 (H, W) or (H, W, 3) in 0..1, whatever its mode."""
    from PIL import Image

    mode = im.mode
    if mode in ("I;16", "I;16L", "I;16B", "I;16N", "I"):
        # 16-bit grayscale (PNG/TIFF). Pillow opens 16-bit PNGs as "I;16" or, in older versions, "I".
        arr = np.asarray(im, dtype=np.float32) * np.float32(1.0 / 65535.0)
        arr = np.clip(arr, 0.0, 1.0, out=arr)
    elif mode == "F":
        arr = np.clip(np.asarray(im, dtype=np.float32), 0.0, 1.0)  # float TIFF: assume 0..1 already
    else:
        if "A" in mode or "transparency" in im.info:
            # Transparent pixels have undefined colour: composite onto white, as a viewer shows them.
            rgba = im.convert("RGBA")
            background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
            im = Image.alpha_composite(background, rgba)
        if gray and im.mode in ("L", "1", "RGBA", "RGB", "P", "CMYK", "YCbCr", "LAB", "HSV"):
            # Convert to RGB first so every source gets the same 0.299/0.587/0.114 weights in float.
            im = im.convert("L") if im.mode in ("L", "1") else im.convert("RGB")
        elif im.mode != "RGB":
            im = im.convert("RGB")
        arr = np.asarray(im, dtype=np.float32)
        arr *= np.float32(1.0 / 255.0)
    if gray:
        return np.ascontiguousarray(to_gray(arr)) if arr.ndim == 3 else arr
    if arr.ndim == 2:
        arr = np.repeat(arr[:, :, None], 3, axis=2)
    return arr


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
        opened = _open(fp, label, max_pixels)
        try:
            return _decode_opened(opened, label, gray, max_pixels, min_side)
        finally:
            opened.close()


def _decode_opened(im, label: str, gray: bool, max_pixels: int | None, min_side: int) -> np.ndarray:
    from PIL import Image, ImageOps

    width, height = im.size
    if width <= 0 or height <= 0:
        raise CnnlabError(f"{label} has no pixels ({width}x{height})")
    if max_pixels is not None and width * height > max_pixels:
        raise CnnlabError(
            f"{label} has {width * height / 1e6:.1f} megapixels ({width}x{height}); the limit is "
            f"{max_pixels / 1e6:g} megapixels (a guard against decompression bombs)"
        )
    small = check_side(width, height, min_side)
    if small:
        raise CnnlabError(f"{label} {small}")
    try:
        im.seek(0)  # animated GIF/WebP/APNG, multi-page TIFF: the first frame
        im.load()
        im = ImageOps.exif_transpose(im)
    except Image.DecompressionBombError as exc:
        raise CnnlabError(f"{label} {bomb_message(exc, max_pixels)}") from None
    except (OSError, ValueError, SyntaxError, EOFError) as exc:
        # Truncated or corrupt data surfaces here, when the pixels are actually decoded.
        raise CnnlabError(f"{label} is truncated or corrupt ({exc})") from None
    try:
        return _to_array(im, gray)
    except (OSError, ValueError) as exc:
        raise CnnlabError(f"cannot convert {label} (mode {im.mode}) to an array: {exc}") from None
