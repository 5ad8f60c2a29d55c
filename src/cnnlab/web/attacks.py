"""The slow-attack family of issue 22, as payloads: what a stranger can send that is cheap to send and
was costly to answer. Used by tests (tests/test_web_loop.py) and benchmarks/fuzz_api.py ``--slow``.

- `bloated_png`: a small PNG (59 KB) carrying zlib-compressed text chunks that inflate to 1 MB each: Pillow
  inflated them all on open (0.5-0.8 s), twice per request, on the event loop.
- `chunk_flood`: a POST whose body is sent in 1-byte chunks (~10 us of h11 work each on the loop).
- `near_limit_head`: the head of a POST announcing a body just under the 8 MiB cap, to be followed by a
  body that stops short: bodies were buffered before any limit on how many are held.
"""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
from PIL import Image


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def bloated_png(side: int = 256, chunks: int = 59, inflated: int = 1 << 20, seed: int = 0) -> bytes:
    """A ``side`` x ``side`` grayscale PNG (a gradient, shifted by ``seed``: a few KB) with ``chunks`` zTXt
    chunks of ``inflated`` zero bytes each (about 1 KB each compressed), between its header and pixels."""
    pixels = ((np.add.outer(np.arange(side), np.arange(side)) + seed) % 256).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="PNG")
    raw = buf.getvalue()
    text = zlib.compress(bytes(inflated), 9)
    extra = b"".join(_chunk(b"zTXt", b"k%d\x00\x00" % i + text) for i in range(chunks))
    return raw[:33] + extra + raw[33:]  # after the signature (8) and IHDR (25)


def chunk_flood(path: str = "/api/filter", chunks: int = 400_000) -> bytes:
    """A whole HTTP request whose body is ``chunks`` chunks of one byte each."""
    head = (
        f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\n"
        "Transfer-Encoding: chunked\r\n\r\n"
    ).encode()
    return head + b"1\r\na\r\n" * chunks + b"0\r\n\r\n"


def near_limit_head(path: str = "/api/predict", size: int = 8 * 1024 * 1024 - 50) -> bytes:
    """The head of a multipart POST announcing ``size`` bytes (just under the body cap)."""
    return (
        f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; boundary=xx\r\n"
        f"Content-Length: {size}\r\n\r\n"
    ).encode()
