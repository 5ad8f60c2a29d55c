"""Chunks of rows of a uint8 array written into the file it maps (a ``numpy.memmap`` of a ``.npy``), as the
folder cache's decode writes them: with ``pwrite``, by one worker at a time, and with direct I/O where the
file lets it.

Why not through the map, nor the page cache: writing rows through a shared map faults its pages in one
by one (4 KiB each), and a buffered ``pwrite`` of gigabytes fills the page cache with fresh pages; on the
virtual machines this was measured on, each costs the kernel more than the decode itself saves (9 GB:
3.2 s and 0.3 s of kernel time with direct I/O, 4.8 to 20.5 s buffered, from one process, from run to
run). Two processes writing one file at once also spin on its lock in the kernel (26 s of kernel time
for those 9 GB at once, 9 s taking turns), hence the lock.

Direct I/O (``O_DIRECT``) moves whole blocks from a block-aligned buffer to a block-aligned file offset:
the array's data must start on a block (`disk_entry` pads the ``.npy`` header to `BLOCK` bytes) and
every chunk must start on one, so chunks are a multiple of `RowFile.unit` rows; the last chunk is padded
to a whole block and the file cut back to its size on `close`. Where any of that fails (another header, a
resumed start off the grid, a file system without direct I/O such as tmpfs, Windows) it writes through the
page cache instead, the same bytes either way.
"""

from __future__ import annotations

import errno
import math
import mmap
import os
import threading

import numpy as np

__all__ = ["BLOCK", "RowFile"]

BLOCK = 4096  # direct I/O's alignment: a multiple of every disk's logical block
_MAX_CHUNK = 16 << 20  # larger aligned chunks than this (odd-sized rows) are written through the page cache

_SCRATCH = threading.local()  # each worker's reused chunk buffer (fresh memory faults on every page)


class RowFile:
    """Writes chunks of rows of the file-backed ``out`` from chunk-starts ``start``, ``start + unit``, ...

    Open it in the process that forks the workers (they inherit its descriptors and ``lock``)."""

    def __init__(self, out: np.memmap, start: int, lock) -> None:
        assert out.filename is not None
        self.row_bytes = math.prod(out.shape[1:]) * out.itemsize
        self.shape = tuple(out.shape[1:])
        self.offset, self.end = int(out.offset), int(out.offset) + out.nbytes
        self.lock = lock
        self.fd = os.open(out.filename, os.O_WRONLY | getattr(os, "O_CLOEXEC", 0))
        self.unit = BLOCK // math.gcd(self.row_bytes, BLOCK) if self.row_bytes else 1
        self.direct = self._open_direct(out.filename, start)
        if self.direct is None:
            self.unit = 1

    def _open_direct(self, filename: str, start: int) -> int | None:
        o_direct = getattr(os, "O_DIRECT", 0)
        aligned = self.offset % BLOCK == 0 and start % self.unit == 0
        if not o_direct or not aligned or self.unit * self.row_bytes > _MAX_CHUNK:
            return None
        try:
            return os.open(filename, os.O_WRONLY | o_direct | getattr(os, "O_CLOEXEC", 0))
        except OSError:  # a file system without direct I/O (tmpfs)
            return None

    def step(self, rows: int) -> int:
        """The chunk size to use for about ``rows`` rows: at least that, a multiple of `unit`."""
        return -(-rows // self.unit) * self.unit

    def buffer(self, n: int, step: int) -> np.ndarray:
        """This worker's page-aligned buffer for ``n`` rows (of chunks of at most ``step``), reused."""
        need = -(-step * self.row_bytes // BLOCK) * BLOCK
        buf = getattr(_SCRATCH, "buf", None)
        if buf is None or len(buf) < need:
            buf = _SCRATCH.buf = mmap.mmap(-1, max(need, BLOCK))
        return np.frombuffer(buf, dtype=np.uint8, count=n * self.row_bytes).reshape(n, *self.shape)

    def write(self, n: int, start: int) -> None:
        """Write the first ``n`` rows of this worker's `buffer` as rows ``start...`` of the array."""
        offset, nbytes = self.offset + start * self.row_bytes, n * self.row_bytes
        view = memoryview(_SCRATCH.buf)
        with self.lock:
            if self.direct is not None and offset % BLOCK == 0:
                padded = -(-nbytes // BLOCK) * BLOCK  # the last chunk's tail: cut off by `close`
                try:
                    _write_all(self.direct, view[:padded], offset)
                    return
                except OSError as exc:
                    if exc.errno != errno.EINVAL:  # EINVAL: no direct I/O here after all
                        raise
            _write_all(self.fd, view[:nbytes], offset)

    def close(self) -> None:
        try:
            if self.direct is not None:
                os.ftruncate(self.fd, self.end)  # the last chunk's padding, if it went past the end
                os.close(self.direct)
        finally:
            os.close(self.fd)


def _write_all(fd: int, view: memoryview, offset: int) -> None:
    """``view`` written at ``offset`` (pwrite may write less than asked, e.g. on a signal)."""
    while view:
        done = os.pwrite(fd, view, offset)
        view, offset = view[done:], offset + done
