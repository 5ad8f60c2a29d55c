"""safetensors headers, read and checked before a file's tensors cost anything.

A safetensors file is an 8-byte little-endian header length, a JSON header naming each tensor's dtype,
shape and byte range, then the data. The header is the one part a reader must parse whole, and the
safetensors library parses it in Rust while holding Python's interpreter lock: a header of a million
entries held it 4.4 s. Here a header is refused over `HEADER_MAX_BYTES` or `MAX_TENSORS` entries, and
its byte ranges must tile the file's data exactly, so the shapes it names describe no more memory than
the file holds: a model can be checked against them (and refused) before it is built.

Infrastructure: imports nothing from cnnlab but its errors and `cnnlab.userfiles`.
"""

from __future__ import annotations

import json
import math
import os

from cnnlab.errors import CnnlabError
from cnnlab.userfiles import open_user_file

HEADER_MAX_BYTES = 4 << 20  # ~100 bytes per tensor: room for 40,000 of them
MAX_TENSORS = 20_000  # tensors in one file (a large timm backbone has ~1,000; a checkpoint's state ~3x)
DTYPE_BYTES = {
    "BOOL": 1, "U8": 1, "I8": 1, "F8_E4M3": 1, "F8_E5M2": 1, "I16": 2, "U16": 2, "F16": 2, "BF16": 2,
    "I32": 4, "U32": 4, "F32": 4, "I64": 8, "U64": 8, "F64": 8,
}  # fmt: skip


class TensorFileError(CnnlabError):
    """A safetensors file whose header is malformed, too large, or disagrees with the file's size."""


def header_length(prefix: bytes, size: int) -> int:
    """The header's length from a file's first 8 bytes, checked against `HEADER_MAX_BYTES` and ``size``."""
    n = int.from_bytes(prefix[:8], "little") if len(prefix) >= 8 else -1
    if not 0 < n <= min(HEADER_MAX_BYTES, size - 8):
        raise TensorFileError(
            f"a header of {n:,} bytes in a file of {size:,} (at most {HEADER_MAX_BYTES:,} are read)"
        )
    return n


def check_header(head: bytes, size: int) -> dict[str, tuple[int, ...]]:
    """The tensors' shapes, by name, from the JSON header ``head`` of a file of ``size`` bytes: at most
    `MAX_TENSORS` entries of known dtypes whose byte ranges tile the data exactly."""
    try:
        header = json.loads(head)
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise TensorFileError("its header is not JSON") from None
    if not isinstance(header, dict):
        raise TensorFileError("its header is not a JSON object")
    header.pop("__metadata__", None)
    if len(header) > MAX_TENSORS:
        raise TensorFileError(f"it names {len(header):,} tensors, over the limit of {MAX_TENSORS:,}")
    shapes: dict[str, tuple[int, ...]] = {}
    spans: list[tuple[int, int]] = []
    for key, e in header.items():
        shape = e.get("shape") if isinstance(e, dict) else None
        offsets = e.get("data_offsets") if isinstance(e, dict) else None
        if not (
            isinstance(shape, list)
            and all(type(d) is int and d >= 0 for d in shape)
            and isinstance(offsets, list)
            and len(offsets) == 2
            and all(type(o) is int for o in offsets)
            and e.get("dtype") in DTYPE_BYTES
        ):
            raise TensorFileError(f"its entry {key[:60]!r} is malformed")
        if offsets[0] < 0 or offsets[1] - offsets[0] != math.prod(shape) * DTYPE_BYTES[e["dtype"]]:
            raise TensorFileError(f"its entry {key[:60]!r} has a byte range that does not fit its shape")
        shapes[key] = tuple(shape)
        spans.append((offsets[0], offsets[1]))
    end = 0
    for begin, stop in sorted(spans):
        if begin != end:
            raise TensorFileError("its tensors' byte ranges overlap or leave gaps")
        end = stop
    data = size - 8 - len(head)
    if end != data:
        raise TensorFileError(f"its header describes {end:,} bytes of data, the file holds {data:,}")
    return shapes


def read_header(path: str | os.PathLike, *, max_bytes: int) -> dict[str, tuple[int, ...]]:
    """The tensors' shapes in the safetensors file at ``path`` (a regular file of at most ``max_bytes``),
    reading its header only. Raises `TensorFileError` or `cnnlab.userfiles.UserFileError`."""
    with open_user_file(path, max_bytes=max_bytes, what="safetensors file") as f:
        size = os.fstat(f.fileno()).st_size
        n = header_length(f.read(8), size)
        return check_header(f.read(n), size)


def check_bytes(data: bytes) -> dict[str, tuple[int, ...]]:
    """`check_header` for a whole safetensors file held in memory."""
    return check_header(data[8 : 8 + header_length(data[:8], len(data))], len(data))
