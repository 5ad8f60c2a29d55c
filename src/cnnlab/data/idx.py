"""Reader for the IDX format of MNIST and Fashion-MNIST (raw or gzip-compressed).

An IDX file is a 4-byte magic number (two zero bytes, a type code, the number of dimensions), one
big-endian uint32 per dimension, then the values in C order. See http://yann.lecun.com/exdb/mnist/.
"""

from __future__ import annotations

import gzip
import io
import os
import zlib
from typing import BinaryIO

import numpy as np

from cnnlab.errors import CnnlabError
from cnnlab.userfiles import UserFileError, format_size, limit_output, open_user_file

__all__ = ["MAX_IDX_BYTES", "parse_idx", "read_idx"]

MAX_IDX_BYTES = 1 << 30
"""Largest IDX file, and largest decompressed payload, read by default (1 GiB: EMNIST's biggest file is
550 MB raw; Fashion-MNIST's 47 MB)."""

# IDX type code -> big-endian numpy dtype. MNIST-style files only use 0x08 (uint8); the rest are part of
# the format and cost nothing to support.
_DTYPES: dict[int, np.dtype] = {
    0x08: np.dtype("u1"),
    0x09: np.dtype("i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
_GZIP_MAGIC = b"\x1f\x8b"
_CHUNK = 1 << 22


def read_idx(path: str | os.PathLike[str], *, max_bytes: int = MAX_IDX_BYTES) -> np.ndarray:
    """Read an IDX file (`.gz` or raw) into a numpy array with the shape from its header.

    The whole header is checked: magic number, type code, dimensions, and that the payload holds exactly
    as many values as the dimensions say. The file is opened with `cnnlab.userfiles` (a regular file of
    at most `max_bytes`), and a gzip file is decompressed only as far as its header says it should go:
    a gzip bomb is refused after at most that many bytes (and never more than `max_bytes`). Any problem
    raises `CnnlabError` naming the file.

    Args:
        path: an IDX file, e.g. `train-images-idx3-ubyte.gz` (gzip is detected from the content).
        max_bytes: the largest file, and the largest decompressed payload, accepted.

    Returns:
        A read-only array, e.g. uint8 of shape (60000, 28, 28) for the training images.

    Example:
        >>> images = read_idx("data/train-images-idx3-ubyte.gz")  # doctest: +SKIP
        >>> images.shape, images.dtype  # doctest: +SKIP
        ((60000, 28, 28), dtype('uint8'))
    """
    try:
        f = open_user_file(path, max_bytes=max_bytes, what="IDX file")
    except UserFileError as exc:
        if exc.reason == "no such file":
            raise type(exc)(path, "it does not exist", what="IDX file") from None
        raise
    with f:
        return _read(f, str(path), max_bytes)


def parse_idx(
    data: bytes, source: str | os.PathLike[str] = "<bytes>", *, max_bytes: int = MAX_IDX_BYTES
) -> np.ndarray:
    """Decode the bytes of an IDX file (gzip or raw); `source` is only used in error messages.

    Split from `read_idx` so a caller that already read the file (to check its checksum) does not read
    it twice.
    """
    return _read(io.BytesIO(data), str(source), max_bytes)


def _read(f: BinaryIO, name: str, max_bytes: int) -> np.ndarray:
    gzipped = f.read(2) == _GZIP_MAGIC
    f.seek(0)
    if not gzipped:
        if name.endswith(".gz"):
            raise CnnlabError(
                f"'{name}' is not a gzip file although its name ends in .gz "
                "(an HTML error page saved by a failed download?); expected the gzip-compressed IDX file."
            )
        return _decode(f, name, max_bytes)
    bomb = CnnlabError(
        f"'{name}' decompresses to more than {format_size(max_bytes)} (a decompression bomb?); refused."
    )
    try:
        return _decode(
            limit_output(gzip.GzipFile(fileobj=f, mode="rb"), max_bytes=max_bytes, error=bomb),
            name,
            max_bytes,
        )
    except EOFError:
        raise CnnlabError(
            f"'{name}' is a truncated gzip file (download interrupted?); fetch it again."
        ) from None
    except (OSError, zlib.error) as exc:
        raise CnnlabError(f"'{name}' is a corrupt gzip file ({exc}); fetch it again.") from None


def _read_upto(f: BinaryIO, n: int) -> bytearray:
    """At most n bytes: fewer only at the end of the stream (in chunks: memory grows with the data
    actually there, not with what a forged header announces)."""
    out = bytearray()
    while len(out) < n:
        chunk = f.read(min(_CHUNK, n - len(out)))
        if not chunk:
            break
        out += chunk
    return out


def _decode(f: BinaryIO, name: str, max_bytes: int) -> np.ndarray:
    head = _read_upto(f, 4)
    if len(head) < 4:
        raise CnnlabError(f"'{name}' is too short to be an IDX file ({len(head)} bytes, header needs 4+).")
    zero, code, ndim = int.from_bytes(head[:2], "big"), head[2], head[3]
    if zero != 0 or code not in _DTYPES or ndim == 0:
        raise CnnlabError(
            f"'{name}' is not an IDX file: magic number 0x{head[:4].hex()} "
            "(expected 0x0000 then a type code such as 08 for uint8, then the number of dimensions, "
            "e.g. 0x00000803 for images)."
        )
    header = 4 + 4 * ndim
    rest = _read_upto(f, header - 4)
    if len(rest) < header - 4:
        raise CnnlabError(
            f"'{name}' ends inside its IDX header ({4 + len(rest)} bytes, header needs {header})."
        )
    dims = tuple(int.from_bytes(rest[4 * i : 4 + 4 * i], "big") for i in range(ndim))
    dtype = _DTYPES[code]
    # Python ints, so a forged header cannot overflow the product.
    expected = dtype.itemsize * int(np.prod(dims, dtype=object))
    shape = "x".join(map(str, dims))
    if expected > max_bytes:
        raise CnnlabError(
            f"'{name}': its IDX header ({shape}, {dtype.name}) announces {expected:,} bytes of data, over "
            f"the {format_size(max_bytes)} limit; refused before reading it."
        )
    payload = _read_upto(f, expected + 1)  # one byte more: a longer payload is as wrong as a shorter one
    if len(payload) != expected:
        got = f"more than {expected:,}" if len(payload) > expected else f"{len(payload):,}"
        raise CnnlabError(
            f"'{name}' has {got} bytes of data but its header ({shape}, {dtype.name}) "
            f"needs exactly {expected:,}; the file is truncated or corrupt."
        )
    array = np.frombuffer(payload, dtype=dtype).reshape(dims)
    if dtype.byteorder == ">":  # multi-byte types are big-endian on disk; hand out native order
        array = array.astype(dtype.newbyteorder("="))
    array.flags.writeable = False
    return array
