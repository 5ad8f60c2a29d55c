"""Reader for the IDX format of MNIST and Fashion-MNIST (raw or gzip-compressed).

An IDX file is a 4-byte magic number (two zero bytes, a type code, the number of dimensions), one
big-endian uint32 per dimension, then the values in C order. See http://yann.lecun.com/exdb/mnist/.
"""

from __future__ import annotations

import gzip
import os
import zlib
from pathlib import Path

import numpy as np

from cnnlab.errors import CnnlabError

__all__ = ["parse_idx", "read_idx"]

# IDX type code -> big-endian numpy dtype. MNIST-style files only use 0x08 (uint8); the rest are part of
# the format and cost nothing to support.
_DTYPES = {
    0x08: np.dtype("u1"),
    0x09: np.dtype("i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
_GZIP_MAGIC = b"\x1f\x8b"


def read_idx(path: str | os.PathLike[str]) -> np.ndarray:
    """Read an IDX file (`.gz` or raw) into a numpy array with the shape from its header.

    The whole header is checked: magic number, type code, dimensions, and that the payload holds exactly
    as many values as the dimensions say. Any problem raises `CnnlabError` naming the file.

    Args:
        path: an IDX file, e.g. `train-images-idx3-ubyte.gz` (gzip is detected from the content).

    Returns:
        A read-only array, e.g. uint8 of shape (60000, 28, 28) for the training images.

    Example:
        >>> images = read_idx("data/train-images-idx3-ubyte.gz")  # doctest: +SKIP
        >>> images.shape, images.dtype  # doctest: +SKIP
        ((60000, 28, 28), dtype('uint8'))
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise CnnlabError(f"IDX file '{path}' does not exist.") from None
    except IsADirectoryError:
        raise CnnlabError(f"'{path}' is a folder, not an IDX file.") from None
    except OSError as exc:
        raise CnnlabError(f"Cannot read IDX file '{path}': {exc.strerror or exc}.") from None
    return parse_idx(data, path)


def parse_idx(data: bytes, source: str | os.PathLike[str] = "<bytes>") -> np.ndarray:
    """Decode the bytes of an IDX file (gzip or raw); `source` is only used in error messages.

    Split from `read_idx` so a caller that already read the file (to check its checksum) does not read
    it twice.
    """
    name = str(source)
    if data[:2] == _GZIP_MAGIC:
        try:
            data = gzip.decompress(data)
        except EOFError:
            raise CnnlabError(
                f"'{name}' is a truncated gzip file (download interrupted?); fetch it again."
            ) from None
        except (OSError, zlib.error) as exc:
            raise CnnlabError(f"'{name}' is a corrupt gzip file ({exc}); fetch it again.") from None
    elif name.endswith(".gz"):
        raise CnnlabError(
            f"'{name}' is not a gzip file although its name ends in .gz "
            "(an HTML error page saved by a failed download?); expected the gzip-compressed IDX file."
        )
    return _decode(data, name)


def _decode(data: bytes, name: str) -> np.ndarray:
    if len(data) < 4:
        raise CnnlabError(f"'{name}' is too short to be an IDX file ({len(data)} bytes, header needs 4+).")
    zero, code, ndim = int.from_bytes(data[:2], "big"), data[2], data[3]
    if zero != 0 or code not in _DTYPES or ndim == 0:
        raise CnnlabError(
            f"'{name}' is not an IDX file: magic number 0x{data[:4].hex()} "
            "(expected 0x0000 then a type code such as 08 for uint8, then the number of dimensions, "
            "e.g. 0x00000803 for images)."
        )
    header = 4 + 4 * ndim
    if len(data) < header:
        raise CnnlabError(f"'{name}' ends inside its IDX header ({len(data)} bytes, header needs {header}).")
    dims = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    dtype = _DTYPES[code]
    # Python ints, so a forged header cannot overflow the product.
    expected = dtype.itemsize * int(np.prod(dims, dtype=object))
    if len(data) - header != expected:
        shape = "x".join(map(str, dims))
        raise CnnlabError(
            f"'{name}' has {len(data) - header:,} bytes of data but its header ({shape}, {dtype.name}) "
            f"needs exactly {expected:,}; the file is truncated or corrupt."
        )
    # frombuffer shares memory with `data` instead of copying: decoding the 47 MB images file is free.
    array = np.frombuffer(data, dtype=dtype, offset=header).reshape(dims)
    if dtype.byteorder == ">":  # multi-byte types are big-endian on disk; hand out native order
        array = array.astype(dtype.newbyteorder("="))
    return array
