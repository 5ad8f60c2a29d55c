"""PNG files without the metadata chunks that cost to open: one pass over the chunk headers, before
Pillow sees the file.

A PNG may carry any number of text chunks (``tEXt``, and the zlib-compressed ``zTXt`` and ``iTXt``), an
ICC profile (``iCCP``, compressed) and EXIF (``eXIf``). Pillow inflates every compressed one when the file
is opened or decoded, up to 1 MB each and 64 MB in all: a 59 KB PNG of 59 ``zTXt`` chunks of zeros cost
0.5-0.8 s to open, attacker-priced work. cnnlab reads none of the text or colour-profile chunks (pixels
are taken as sRGB), so `without_metadata` drops them all, and an ``eXIf`` chunk (which turns phone photos
upright) over `MAX_EXIF_BYTES`; every other chunk is kept byte for byte, so the pixels are the same.

The pass costs one small read and a seek per chunk, and nothing when the file holds none of those chunks
(the file object is handed back, rewound). Infrastructure: imports nothing from cnnlab.

Example:
    >>> import io, zlib, struct
    >>> from PIL import Image
    >>> buf = io.BytesIO()
    >>> Image.new("L", (8, 8)).save(buf, format="PNG")
    >>> raw = buf.getvalue()
    >>> data = zlib.compress(bytes(1 << 20))
    >>> text = struct.pack(">I", len(data) + 3) + b"zTXtk\\x00\\x00" + data + b"\\x00" * 4
    >>> bloated = raw[:33] + text * 4 + raw[33:]
    >>> len(without_metadata(io.BytesIO(bloated)).getvalue()) == len(raw)
    True
"""

from __future__ import annotations

import io
import struct
from typing import BinaryIO

SIGNATURE = b"\x89PNG\r\n\x1a\n"
DROPPED = frozenset({b"tEXt", b"zTXt", b"iTXt", b"iCCP"})
MAX_EXIF_BYTES = 64 * 1024  # a phone photo's EXIF is a few KiB; larger ones are dropped, not parsed


def _dropped(kind: bytes, length: int) -> bool:
    return kind in DROPPED or (kind == b"eXIf" and length > MAX_EXIF_BYTES)


def without_metadata(fp: BinaryIO) -> BinaryIO:
    """``fp`` itself (rewound to where it was) unless it is a PNG holding chunks cnnlab drops; then a
    copy of it without them, as an in-memory file. A truncated or malformed chunk list ends the pass:
    what follows is kept as it is, for Pillow to report."""
    start = fp.tell()
    if fp.read(8) != SIGNATURE:
        fp.seek(start)
        return fp
    spans: list[tuple[int, int]] = []  # (offset, length) of the byte ranges kept
    kept_from, pos, dropped = start, start + 8, False
    while True:
        head = fp.read(8)
        if len(head) < 8:
            break
        length, kind = struct.unpack(">I4s", head)
        end = pos + 12 + length  # length, type, data, CRC
        if _dropped(kind, length):
            dropped = True
            spans.append((kept_from, pos - kept_from))
            kept_from = end
        pos = end
        if kind == b"IEND":
            break
        fp.seek(pos)
    if not dropped:
        fp.seek(start)
        return fp
    out = io.BytesIO()
    for offset, length in [*spans, (kept_from, -1)]:
        fp.seek(offset)
        out.write(fp.read(length) if length >= 0 else fp.read())
    out.seek(0)
    return out
