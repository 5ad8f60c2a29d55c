"""One folder-cache entry written straight to disk while it decodes, and resumed after an interruption.

The images go into ``<stem>.part.npy``, a plain ``.npy`` file (``numpy.lib.format.open_memmap``), sparse:
a disk with less free space than the whole array is refused at once, in one line, and the decode's workers
write each chunk of rows with ``pwrite`` (`decode.decode_into`), so a disk that fills meanwhile is an
``ENOSPC`` error (the entry is then discarded), never a SIGBUS in the middle of a write. The decode
records how far it got in ``<stem>.part.json`` (the count of leading files decoded and the files found
unreadable so far), replaced atomically every few seconds: a run that is killed resumes from the last
record, and a record never claims rows that were not written. Each image's per-channel pixel sums
(``<stem>.part.sums``, a ``.npy`` of exact integers) are kept beside it, so training statistics never need
the images read again. When every file is decoded, unreadable files' rows are squeezed out in place (chunk by chunk, never the whole array in
memory), the header's shape rewritten, the file renamed to ``<stem>.npy`` and the progress record removed.

The stem names the folder's contents and the options (``folder_cache``), so a partial entry of a folder
that has since changed is never resumed: it is another stem, removed as stale.
"""

from __future__ import annotations

import errno
import json
import math
import os
import struct
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from cnnlab.atomic import write_atomic
from cnnlab.data.row_file import BLOCK
from cnnlab.userfiles import UserFileError, read_user_text

__all__ = ["DiskEntry", "NoSpace", "full_disk", "shrink_npy"]

_COMMIT_SECONDS = 3.0  # how often progress is recorded (an atomic rename of a small JSON)
_MAX_PROGRESS_BYTES = 256 << 20
_MOVE_ROWS_BYTES = 64 << 20  # rows moved at a time when unreadable files' rows are squeezed out


class NoSpace(Exception):
    """The cache's disk cannot hold the decoded images; the message says how much is needed and free."""


@dataclass
class DiskEntry:
    """A partial cache entry: the writable map ``images`` (N, C, S, S), rows below ``done`` decoded, and
    ``bad`` (index, reason) for the unreadable files among them."""

    stem: Path
    images: np.memmap
    sums: np.memmap  # int64 (N, 2, C): each image's per-channel pixel sums (`stats.pixel_sums`)
    done: int = 0
    bad: list[tuple[int, str]] = field(default_factory=list)
    resumed: bool = False
    _last_commit: float = 0.0

    @property
    def npy(self) -> Path:
        return self.stem.with_suffix(".part.npy")

    @property
    def progress(self) -> Path:
        return self.stem.with_suffix(".part.json")

    @property
    def sums_file(self) -> Path:
        return self.stem.with_suffix(".part.sums")

    @classmethod
    def open(cls, stem: Path, shape: tuple[int, int, int, int]) -> DiskEntry:
        """Resume ``<stem>.part.npy`` when its progress record matches ``shape``, else start it afresh.

        Raises:
            NoSpace: the disk cannot hold the array (nothing is left behind).
            OSError: the cache folder cannot be written.
        """
        entry = cls._resume(stem, shape)
        if entry is not None:
            return entry
        npy, sums_file = stem.with_suffix(".part.npy"), stem.with_suffix(".part.sums")
        stem.with_suffix(".part.json").unlink(missing_ok=True)
        npy.parent.mkdir(parents=True, exist_ok=True)
        npy.unlink(missing_ok=True)  # a stale partial file's blocks count as free below
        if _free_bytes(npy.parent) < int(np.prod(shape)):
            raise NoSpace(_space_message(npy, shape))
        # The images' file is sparse: its blocks are taken as the decode writes them (pwrite, which fails with
        # ENOSPC, never a SIGBUS, on a disk that fills meanwhile: see `full_disk`). Reserving them up front
        # with posix_fallocate made every later write convert "unwritten" extents, which cost the kernel
        # more than five times the writing itself on ext4 (17.5 s against 3 s for 9 GB).
        images = _create_npy(npy, shape)
        sums = np.lib.format.open_memmap(sums_file, mode="w+", dtype=np.int64, shape=(shape[0], 2, shape[1]))
        try:  # the small sums file is written through its map: its blocks are reserved
            with open(sums_file, "r+b") as f:
                os.posix_fallocate(f.fileno(), 0, sums.offset + sums.nbytes)
        except OSError as exc:
            if exc.errno in (errno.EOPNOTSUPP, errno.EINVAL):  # a file system without fallocate
                return cls(stem, images, sums)
            del images, sums
            npy.unlink(missing_ok=True)
            sums_file.unlink(missing_ok=True)
            if full_disk(exc):
                raise NoSpace(_space_message(npy, shape)) from None
            raise
        return cls(stem, images, sums)

    @classmethod
    def _resume(cls, stem: Path, shape: tuple[int, int, int, int]) -> DiskEntry | None:
        npy, progress = stem.with_suffix(".part.npy"), stem.with_suffix(".part.json")
        if not (npy.is_file() and progress.is_file()):
            return None
        try:
            record = json.loads(
                read_user_text(progress, max_bytes=_MAX_PROGRESS_BYTES, what="cache progress")
            )
            images = np.lib.format.open_memmap(npy, mode="r+")
            sums = np.lib.format.open_memmap(stem.with_suffix(".part.sums"), mode="r+")
            done = int(record["done"])
            bad = [(int(i), str(why)) for i, why in record["bad"]]
            fits = tuple(images.shape) == shape and images.dtype == np.uint8 and 0 <= done <= shape[0]
            fits = fits and sums.shape == (shape[0], 2, shape[1]) and sums.dtype == np.int64
        except (OSError, ValueError, KeyError, TypeError, UserFileError, json.JSONDecodeError):
            fits = False
        if not fits or record.get("shape") != list(shape):
            return None  # damaged or another shape: started afresh by the caller
        return cls(stem, images, sums, done, bad, resumed=done > 0, _last_commit=time.monotonic())

    def discard(self) -> None:
        """Remove the partial entry's files (a disk that filled during the decode gets its space back)."""
        del self.images, self.sums
        for path in (self.npy, self.sums_file, self.progress):
            path.unlink(missing_ok=True)

    def commit(self, done: int, bad: list[tuple[int, str]], *, force: bool = False) -> None:
        """Record that rows below ``done`` are decoded (at most every few seconds unless ``force``). Each
        chunk's write has returned before its rows count as done (direct I/O: on the disk; else: in the
        kernel's page cache), so a killed process loses none of them and the record never runs ahead of
        the data; nothing is forced to disk (``fsync`` would stall the decode on the disk): as for every
        cache file here, an operating-system crash costs a decode, a partial entry then being resumed from
        its record."""
        now = time.monotonic()
        if not force and now - self._last_commit < _COMMIT_SECONDS:
            return
        record = {"shape": list(self.images.shape), "done": done, "bad": [list(b) for b in bad]}
        write_atomic(self.progress, json.dumps(record), fsync=False)
        self.done, self.bad, self._last_commit = done, list(bad), now

    def finish(self, final: Path) -> tuple[np.ndarray, np.ndarray]:
        """Squeeze out unreadable rows, rename to ``final`` (the sums to ``<final>.sums``) and drop the
        progress record; returns the read-only map of the finished array and the good rows' sums."""
        n = len(self.images)
        keep = np.ones(n, dtype=bool)
        keep[[i for i, _ in self.bad]] = False
        good = int(keep.sum())
        self.progress.unlink(missing_ok=True)  # from here on an interruption starts afresh: rows move
        sums = np.array(self.sums[keep])
        del self.sums
        with open(final.with_suffix(".sums"), "wb") as f:  # a .npy file; not named so, to stand apart
            np.save(f, sums, allow_pickle=False)
        self.sums_file.unlink(missing_ok=True)
        if good < n:
            _squeeze(self.images, np.flatnonzero(keep))
        offset = self.images.offset
        del self.images  # the map is closed before the file is cut and renamed
        if good < n:
            shrink_npy(self.npy, good, offset)
        os.replace(self.npy, final)
        return np.load(final, mmap_mode="r", allow_pickle=False), sums


def _squeeze(images: np.ndarray, rows: np.ndarray) -> None:
    """Move ``rows`` (ascending) to the front of ``images`` in place, a bounded number of rows at a time
    (each row moves down or stays, so no row is overwritten before it is read)."""
    step = max(1, _MOVE_ROWS_BYTES // max(1, images[0].nbytes))
    for start in range(0, len(rows), step):
        part = rows[start : start + step]
        images[start : start + len(part)] = images[part]


def shrink_npy(path: Path, rows: int, offset: int) -> None:
    """Rewrite a C-ordered uint8 ``.npy`` header for ``rows`` leading rows (same header length) and cut the
    file after them."""
    with open(path, "r+b") as f:
        f.seek(0)
        head = f.read(offset)
        start = 10 if head[6] == 1 else 12  # after the magic, the version and the header's length
        text = head[start:offset].decode("latin1")
        shape = tuple(int(v) for v in text.split("'shape': (")[1].split(")")[0].split(",") if v.strip())
        new_shape = (rows, *shape[1:])
        body = f"{{'descr': '|u1', 'fortran_order': False, 'shape': {new_shape!r}, }}"
        f.seek(start)
        f.write((body.ljust(offset - start - 1) + "\n").encode("latin1"))
        f.truncate(offset + rows * int(np.prod(shape[1:])))


def _create_npy(path: Path, shape: tuple[int, ...]) -> np.memmap:
    """A new sparse uint8 ``.npy`` of ``shape`` (zeros), its header padded so that the data start on a
    `row_file.BLOCK` boundary (direct I/O writes whole blocks), opened as a writable map."""
    body = f"{{'descr': '|u1', 'fortran_order': False, 'shape': {tuple(shape)!r}, }}"
    start = 10  # magic, version 1.0 and the header's length
    head = (
        b"\x93NUMPY\x01\x00"
        + struct.pack("<H", BLOCK - start)
        + (body.ljust(BLOCK - start - 1) + "\n").encode()
    )
    with open(path, "wb") as f:
        f.write(head)
        f.truncate(BLOCK + math.prod(shape))
    return np.lib.format.open_memmap(path, mode="r+")


def full_disk(exc: OSError) -> bool:
    """Whether ``exc`` says the disk (or the user's quota) is full."""
    return exc.errno in (errno.ENOSPC, errno.EDQUOT)


def _free_bytes(folder: Path) -> float:
    """Bytes free for this user on ``folder``'s disk (infinite where that cannot be told)."""
    try:
        st = os.statvfs(folder)
    except (OSError, AttributeError):  # statvfs is missing on Windows
        return float("inf")
    return st.f_bavail * st.f_frsize


def _space_message(npy: Path, shape: tuple[int, int, int, int]) -> str:
    need = int(np.prod(shape)) / 1e9
    have = _free_bytes(npy.parent)
    free = f", {have / 1e9:.1f} GB free" if have != float("inf") else ""
    return (
        f"the disk of the image cache '{npy.parent}' cannot hold the decoded images ({need:.1f} GB needed{free}); "
        "free space there or set XDG_CACHE_HOME to a folder on a larger disk"
    )
