"""Decode image files of any mode and size into one uint8 array of a fixed square size, in parallel.

Shared by folder datasets (decoded once, then cached) and `cnnlab predict`; each file goes through the
one decoder, `cnnlab.images.decode_pixels`, and is fitted to the size here (`fit_pixels`). Every file becomes
(C, S, S) uint8 with C = 1 (ITU-R 601 luma, the tutorial's 0.299 R + 0.587 G + 0.114 B) or 3 (RGB):

- palette, CMYK, YCbCr, LAB... are converted; 16-bit grayscale is scaled 65535 -> 255; float images are
  taken as 0..1; transparent pixels are composited onto white (what a viewer shows); animated or
  multi-page files give their first frame; EXIF-rotated photos are turned upright.
- `resize="pad"` (default) scales the longer side to S and pads the shorter one, centred, so nothing of
  the picture is lost and nothing is distorted: with black (`fill="black"`, what folder datasets train
  on) or with the image's own border colour (`fill="border"`, for models trained on unpadded images);
  `"crop"` scales the shorter side to S and cuts the centre square; `"stretch"` ignores the aspect ratio
  (`cnnlab.data.fit`: the same geometry for arrays). Images under `MIN_IMAGE_SIDE` (8) pixels a side
  are refused; paths are opened with `cnnlab.userfiles` (regular files only, bounded reads).
- JPEGs are decoded at reduced size when that is enough (libjpeg's DCT scaling via Pillow's draft mode:
  a 256x256 JPEG for a 64x64 input is decoded at 64x64, four to eight times faster), then resized with
  antialiasing (`cnnlab.data.fit.fit_pixels`: torch's vectorised bilinear kernel, straight to (C, S, S)).

Decoding runs in forked worker processes that write into one shared buffer (Linux, 512+ files), else
in a thread pool (Pillow releases the GIL while it decodes, torch while it resizes); see `decode_images`.
"""

from __future__ import annotations

import math
import mmap
import multiprocessing as mp
import os
import sys
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from cnnlab.data.fit import border_median, fit_image, fit_pixels
from cnnlab.data.row_file import RowFile
from cnnlab.data.stats import pixel_sums
from cnnlab.errors import CnnlabError
from cnnlab.images import MAX_PIXELS, MIN_IMAGE_SIDE, BadImageError, decode_pixels, named

__all__ = [
    "IMAGE_EXTENSIONS",
    "BadImage",
    "Decoded",
    "border_median",  # from cnnlab.data.fit, where explain finds it too
    "decode_image",
    "decode_images",
    "decode_into",
    "default_workers",
    "fit_image",
]

IMAGE_EXTENSIONS = frozenset(
    {".png", ".jpg", ".jpeg", ".gif", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm", ".pbm", ".pnm"}
)

BadImage = tuple[str, str]  # (path, why it could not be decoded)


class Decoded(NamedTuple):
    images: np.ndarray  # uint8 (N_good, C, S, S)
    ok: np.ndarray  # bool (N,): which paths were decoded
    bad: list[BadImage]
    sizes: np.ndarray  # int64 (N, 2): original (height, width), upright; (0, 0) where not decoded


class _Options(NamedTuple):
    size: int
    channels: int
    resize: str
    fill: str
    max_pixels: int | None
    min_side: int


def default_workers() -> int:
    """Threads for decoding: one per core this process may use (at most 32)."""
    try:
        n = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        n = os.cpu_count() or 1
    return max(1, min(32, n))


def decode_image(
    source: str | os.PathLike[str] | bytes | bytearray | memoryview,
    *,
    size: int,
    channels: int = 3,
    resize: str = "pad",
    fill: str = "black",
    max_pixels: int | None = MAX_PIXELS,
    min_side: int = MIN_IMAGE_SIDE,
    name: str | None = None,
    return_size: bool = False,
):
    """Decode one image file (or its bytes) to uint8 (channels, size, size); see the module docstring.

    Returns:
        The array; with ``return_size``, ``(array, (height, width))``: also the original size, upright.

    Raises:
        CnnlabError: the file is missing, not a regular file, not an image, truncated, corrupt, too
        large or under ``min_side`` pixels on a side; one line naming it (``name``, else the path, else
        "the image").

    Example:
        >>> decode_image("shoe.jpg", size=28, channels=1).shape  # doctest: +SKIP
        (1, 28, 28)
    """
    hw = np.zeros(2, dtype=np.int64)
    if isinstance(source, (bytes, bytearray, memoryview)):
        data: str | bytes = bytes(source)
        label = name or "the image"
    else:
        data = os.fspath(source)
        label = name or f"'{data}'"
    try:
        options = _Options(size, channels, resize, fill, max_pixels, min_side)
        arr = _decode(data, options, hw)
    except BadImageError as exc:
        raise CnnlabError(named(label, str(exc))) from None
    return (arr, (int(hw[0]), int(hw[1]))) if return_size else arr


def decode_images(
    paths: Sequence[str | os.PathLike[str]],
    *,
    size: int,
    channels: int = 3,
    resize: str = "pad",
    fill: str = "black",
    workers: int | None = None,
    strict: bool = False,
    max_pixels: int | None = MAX_PIXELS,
    min_side: int = MIN_IMAGE_SIDE,
    on_progress: Callable[[int], None] | None = None,
    backend: str = "auto",
) -> Decoded:
    """Decode many files into one uint8 array (N_good, channels, size, size), in parallel.

    Args:
        backend: `"processes"` (forked workers writing into one shared buffer: every core decodes,
            including Pillow's Python-side header parsing, which is half the time of a small decode),
            `"threads"` (Pillow and torch release the GIL only while decoding and resizing), or `"auto"`:
            processes for 512+ files on Linux with 2+ workers, else threads.

    Returns:
        A `Decoded`: the images in the order of `paths` (bad ones left out), a bool mask `ok` over
        `paths` saying which were decoded, `(path, reason)` for every file that was not, and each
        file's original (height, width) after EXIF rotation (0, 0 for bad files).

    Raises:
        CnnlabError: with `strict=True`, at the first file that cannot be decoded (naming it).
    """
    n = len(paths)
    shared = _use_processes(backend, workers or default_workers(), n)
    nbytes = n * channels * size * size
    # Anonymous shared memory: forked workers write straight into the parent's array (no pickled pixels).
    buf = mmap.mmap(-1, max(1, nbytes)) if shared else bytearray(max(1, nbytes))
    out = np.frombuffer(buf, dtype=np.uint8)[:nbytes].reshape(n, channels, size, size)
    size_buf = mmap.mmap(-1, max(1, n * 16)) if shared else bytearray(max(1, n * 16))
    sizes = np.frombuffer(size_buf, dtype=np.int64)[: n * 2].reshape(n, 2)
    bad_at = decode_into(
        paths,
        out,
        sizes=sizes,
        resize=resize,
        fill=fill,
        workers=workers,
        strict=strict,
        max_pixels=max_pixels,
        min_side=min_side,
        on_chunk=None if on_progress is None else lambda stop, _: on_progress(stop),
        backend=backend,
    )
    ok = np.ones(n, dtype=bool)
    ok[[i for i, _ in bad_at]] = False
    bad = [(os.fspath(paths[i]), why) for i, why in bad_at]
    # The buffer itself when nothing was skipped (the array keeps it alive; copying 100s of MB costs
    # as much as writing them), else a compact copy of the good images.
    images = out if ok.all() else out[ok]
    return Decoded(images, ok, bad, np.array(sizes))


def decode_into(
    paths: Sequence[str | os.PathLike[str]],
    out: np.ndarray,
    *,
    start: int = 0,
    sizes: np.ndarray | None = None,
    sums: np.ndarray | None = None,
    resize: str = "pad",
    fill: str = "black",
    workers: int | None = None,
    strict: bool = False,
    max_pixels: int | None = MAX_PIXELS,
    min_side: int = MIN_IMAGE_SIDE,
    on_chunk: Callable[[int, list[tuple[int, str]]], None] | None = None,
    backend: str = "auto",
) -> list[tuple[int, str]]:
    """Decode ``paths[start:]`` into the rows ``out[start:]`` of a uint8 (N, C, S, S) array that the caller
    owns: anonymous memory, written in place, or a memory map of a file (``numpy.memmap``, the folder cache's
    way, so no in-memory copy of the images is ever made), each chunk of rows decoded into a reused buffer
    and written to the file with `row_file.RowFile`. Rows of files that cannot be decoded are black.

    Files are decoded in chunks, in parallel; the chunks complete in order, so after ``on_chunk(stop,
    bad)`` every row below ``stop`` is written (a resumable decode records ``stop``); ``bad`` are the
    (index, reason) pairs found so far. ``sizes``: an int64 (N, 2) array for each file's original size;
    ``sums``: an int64 (N, 2, C) array for each image's per-channel sum of pixels and of their squares
    (exact training statistics later, without reading the images again; see `stats.stats_from_sums`).

    Returns:
        ``(index, reason)`` of every file from ``start`` on that could not be decoded.

    Raises:
        CnnlabError: an unknown backend; with ``strict=True``, the first file that cannot be decoded.
    """
    if backend not in ("auto", "processes", "threads"):
        raise CnnlabError(f"Unknown decoding backend {backend!r}. Available: auto, processes, threads")
    n, channels, size = len(paths), int(out.shape[1]), int(out.shape[2])
    workers = workers or default_workers()
    if sizes is None:
        sizes = np.zeros((n, 2), dtype=np.int64)
    options = _Options(size, channels, resize, fill, max_pixels, min_side)
    processes = _use_processes(backend, workers, n - start)
    file = _row_file(out, start, processes)
    chunk = 32 if processes else 16
    chunk = chunk if file is None else file.step(chunk)
    job = _Job([os.fspath(p) for p in paths], out, sizes, options, chunk, sums, file)
    bad: list[tuple[int, str]] = []

    def collect(stop: int, errors: list[tuple[int, str]]) -> None:
        for i, error in errors:
            if strict:
                raise CnnlabError(
                    f"'{job.paths[i]}': {error} (--bad-images strict; use --bad-images skip "
                    "to leave such files out with a report)"
                )
            bad.append((i, error))
        if on_chunk is not None:
            on_chunk(stop, bad)

    try:
        if processes:
            _run_processes(job, workers, start, collect)
        else:
            _run_threads(job, workers, start, collect)
    finally:
        if file is not None:
            file.close()
    return bad


def _use_processes(backend: str, workers: int, n: int) -> bool:
    """Forked workers for 512+ files on Linux with 2+ workers (or when asked), where fork exists."""
    wanted = backend == "processes" or (
        backend == "auto" and workers > 1 and n >= 512 and sys.platform.startswith("linux")
    )
    return wanted and "fork" in mp.get_all_start_methods()


@dataclass(frozen=True)
class _Job:
    paths: list[str]
    out: np.ndarray
    sizes: np.ndarray
    options: _Options
    chunk: int  # rows per task
    sums: np.ndarray | None = None
    file: RowFile | None = None  # where rows go when ``out`` maps a file; None: written in place

    def run(self, start: int, stop: int) -> tuple[int, int, list[tuple[int, str]]]:
        errors = []
        rows = self.out[start:stop] if self.file is None else self.file.buffer(stop - start, self.chunk)
        for k, i in enumerate(range(start, stop)):
            try:
                rows[k] = _decode(self.paths[i], self.options, self.sizes[i])
            except BadImageError as exc:
                rows[k] = 0
                errors.append((i, str(exc)))
        if self.sums is not None:
            self.sums[start:stop] = pixel_sums(rows)
        if self.file is not None:
            self.file.write(stop - start, start)
        return start, stop, errors


def _row_file(out: np.ndarray, start: int, processes: bool) -> RowFile | None:
    """A `RowFile` for ``out`` when it maps a file (the folder cache), else None: memory is written in place
    (and so is a file where pwrite is missing: Windows)."""
    if getattr(out, "filename", None) is None or not hasattr(os, "pwrite") or not out.flags.c_contiguous:
        return None
    assert isinstance(out, np.memmap)
    return RowFile(out, start, mp.get_context("fork").Lock() if processes else threading.Lock())


_FORKED_JOB: _Job | None = None  # what forked workers inherit; set only while a process pool runs
_FORK_LOCK = threading.Lock()


def _forked_run(bounds: tuple[int, int]) -> tuple[int, int, list[tuple[int, str]]]:
    assert _FORKED_JOB is not None
    return _FORKED_JOB.run(*bounds)


def _chunks(start: int, n: int, step: int) -> list[tuple[int, int]]:
    return [(s, min(n, s + step)) for s in range(start, n, step)]


def _run_processes(job: _Job, workers: int, start: int, collect) -> None:
    global _FORKED_JOB
    with _FORK_LOCK:
        _FORKED_JOB = job
        pool = ProcessPoolExecutor(max_workers=workers, mp_context=mp.get_context("fork"))
        try:
            # Results come back in order, so with strict=True the first bad file raises first.
            for _, stop, errors in pool.map(_forked_run, _chunks(start, len(job.paths), job.chunk)):
                collect(stop, errors)
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
            _FORKED_JOB = None


def _run_threads(job: _Job, workers: int, start: int, collect) -> None:
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="cnnlab-decode") as pool:
        try:
            for _, stop, errors in pool.map(lambda b: job.run(*b), _chunks(start, len(job.paths), job.chunk)):
                collect(stop, errors)
        except BaseException:
            pool.shutdown(wait=True, cancel_futures=True)
            raise


def _decode(source: str | bytes, opt: _Options, hw: np.ndarray | None = None) -> np.ndarray:
    """One file through the one decoder (`cnnlab.images.decode_pixels`), fitted: uint8 (C, S, S)."""
    arr = decode_pixels(
        source,
        channels=opt.channels,
        max_pixels=opt.max_pixels,
        min_side=opt.min_side,
        draft=lambda w, h: _draft_size(w, h, opt.size, opt.resize),
        hw=hw,
    )
    return fit_pixels(arr, opt.size, opt.resize, opt.fill)


def _draft_size(w: int, h: int, size: int, resize: str) -> tuple[int, int]:
    """The smallest decoded size from which `fit_image` still only shrinks (draft keeps >= this)."""
    if resize == "stretch":
        return (size, size)
    scale = size / (max(w, h) if resize == "pad" else min(w, h))
    return (max(1, math.ceil(w * scale)), max(1, math.ceil(h * scale)))
