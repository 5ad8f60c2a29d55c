"""Decoding a folder dataset once into ONE uint8 array, cached in the user cache folder.

The array (N, C, S, S) is stored under `$XDG_CACHE_HOME/cnnlab/folders/` (else `~/.cache/...`) as a
`.npy` file beside a `.json` of labels, class names and file names. The images are decoded straight into
the file, a memory map on disk (`cnnlab.data.disk_entry`: never one buffer in memory, resumed where an
interrupted decode stopped); the `.json` is written last, atomically. It is read back memory-mapped with
`allow_pickle=False`: nothing is unpickled, and a warm start reads only the index. The name is
`<folder>-<options>-<contents>.npy/.json`: the contents key hashes every listed file's path, label,
size and modification time, the options key the image size, channels and resize mode. Adding, removing
or editing an image, or changing an option, is a miss (and a newer entry for the same folder and options
replaces the stale one); the same contents anywhere (a moved or copied folder) are a hit.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from cnnlab.atomic import write_atomic
from cnnlab.data.adapt import check_image_options
from cnnlab.data.decode import BadImage, decode_images, decode_into, default_workers
from cnnlab.data.disk_entry import DiskEntry, NoSpace, full_disk
from cnnlab.data.folder_source import FolderSource, scan_source
from cnnlab.data.stats import pixel_sums
from cnnlab.data.store import cache_dir
from cnnlab.errors import CnnlabError
from cnnlab.userfiles import UserFileError, read_user_text

if TYPE_CHECKING:
    from rich.progress import Progress

__all__ = ["DEFAULT_CHANNELS", "DEFAULT_IMAGE_SIZE", "FolderImages", "decode_folder"]

DEFAULT_IMAGE_SIZE = 64
DEFAULT_CHANNELS = 3
_MAX_META_BYTES = 512 << 20  # the index of a few million files
_CACHE_VERSION = 4  # bump when the decoded pixels of the same file and options would change
# (2: images under MIN_IMAGE_SIDE pixels a side are skipped; files are opened with cnnlab.userfiles;
# 3: written straight to disk, the index records the array file's size and modification time)


@dataclass
class FolderImages:
    """The decoded images of a source (all of them; not yet split)."""

    images: np.ndarray  # uint8 (N, C, S, S)
    labels: np.ndarray  # int64 (N,)
    classes: tuple[str, ...]
    files: list[str]  # one per image, as in FolderSource.files
    bad: list[BadImage]  # (file, reason) for every file that was skipped
    root: Path  # what `files` are relative to
    cache_file: Path | None
    from_cache: bool
    seconds: float
    sums: np.ndarray | None = None  # int64 (N, 2, C): per-image channel sums (`cnnlab.data.stats.pixel_sums`)


def _fingerprint(src: FolderSource) -> list:
    """(file, label, size, mtime_ns) of every listed image; a missing file is listed as such."""
    out = []
    root = str(src.root)
    for file, label in zip(src.files, src.labels.tolist(), strict=True):
        try:
            st = os.stat(os.path.join(root, file))
            out.append([file, label, st.st_size, st.st_mtime_ns])
        except OSError:
            out.append([file, label, -1, -1])
    return out


def _digest(obj: object) -> str:
    return hashlib.sha256(json.dumps(obj, separators=(",", ":")).encode()).hexdigest()


def _content_id(src: FolderSource) -> str:
    return _digest({"classes": list(src.classes), "files": _fingerprint(src)})[:24]


def _cached(
    cache_root: Path, ids: tuple[str, str, str], options: dict, src: FolderSource, *, bad_images: str
) -> FolderImages | None:
    """The decoded array of these contents with these options, from the cache: this folder's entry, or
    the same contents anywhere (a moved or copied folder). Under ``--bad-images strict`` a cached listing of
    unreadable files is the error decoding would have raised."""
    _, opt_id, content_id = ids  # (the folder's, the options', the contents') ids
    for candidate in [
        cache_root / "-".join(ids),
        *sorted(p.with_suffix("") for p in cache_root.glob(f"*-{opt_id}-{content_id}.json")),
    ]:
        hit = _read_cache(candidate, options, src.root)
        if hit is not None:
            if bad_images == "strict" and hit.bad:
                file, why = hit.bad[0]
                raise CnnlabError(
                    f"'{src.root / file}': {why} (--bad-images strict; use --bad-images skip to leave "
                    "such files out with a report)"
                )
            return hit
    return None


def decode_folder(
    path: str | os.PathLike[str],
    *,
    image_size: int = DEFAULT_IMAGE_SIZE,
    channels: int = DEFAULT_CHANNELS,
    resize: str = "pad",
    bad_images: str = "skip",
    cache: bool = True,
    workers: int | None = None,
    progress: bool = False,
    source: FolderSource | None = None,
) -> FolderImages:
    """Every image of a folder/CSV decoded to uint8 (N, channels, image_size, image_size), from the
    cache when the files and options are unchanged. `source`: the listing of `path`, if already made.

    Example:
        >>> imgs = decode_folder("pets", image_size=64)  # doctest: +SKIP
        >>> imgs.images.shape, imgs.from_cache  # doctest: +SKIP
        ((1200, 3, 64, 64), True)
    """
    check_image_options(image_size, channels, resize, bad_images)
    t0 = time.perf_counter()
    src = source if source is not None else scan_source(path)
    options = {"image_size": image_size, "channels": channels, "resize": resize, "v": _CACHE_VERSION}
    opt_id = _digest(options)[:8]
    content_id = _content_id(src)
    folder_id = _digest(str(src.origin.resolve()))[:8]
    cache_root = cache_dir("folders")
    stem = f"{folder_id}-{opt_id}-{content_id}"
    ids = (folder_id, opt_id, content_id)
    hit = _cached(cache_root, ids, options, src, bad_images=bad_images) if cache else None
    if hit is None and cache:
        with _one_builder(cache_root / stem, src) as waited:  # one decode per machine (DDP ranks, other runs)
            hit = _cached(cache_root, ids, options, src, bad_images=bad_images) if waited else None
            if hit is None:
                return _decode_new(src, options, ids, cache_root, bad_images, workers, progress, t0)
    if hit is not None:
        hit.seconds = time.perf_counter() - t0
        return hit
    return _decode_new(src, options, ids, None, bad_images, workers, progress, t0)


def _decode_new(
    src: FolderSource, options: dict, ids: tuple[str, str, str], cache_root: Path | None, bad_images: str,
    workers: int | None, progress: bool, t0: float,
) -> FolderImages:  # fmt: skip
    """Decode ``src`` (into the cache entry under ``cache_root``; None: into memory only) and check that
    the folder did not change meanwhile."""
    folder_id, opt_id, content_id = ids
    stem = "-".join(ids)
    paths = [os.path.join(str(src.root), f) for f in src.files]
    images, sums, bad_at, cache_file = _decode_to(
        cache_root / stem if cache_root is not None else None,
        paths,
        options,
        src,
        bad_images,
        workers,
        progress,
    )
    if cache_file is not None and _content_id(src) != content_id:
        cache_file.unlink(missing_ok=True)
        cache_file.with_suffix(".sums").unlink(missing_ok=True)
        raise CnnlabError(
            f"'{src.origin}' changed while it was being decoded (files added, removed or edited); "
            "nothing was cached: run again when it is settled."
        )
    ok = np.ones(len(paths), dtype=bool)
    ok[[i for i, _ in bad_at]] = False
    files = [f for f, good in zip(src.files, ok.tolist(), strict=True) if good]
    bad = [(src.files[i], why) for i, why in bad_at]
    result = FolderImages(
        images, src.labels[ok], src.classes, files, bad, src.root, None, False, time.perf_counter() - t0, sums
    )
    if cache_file is not None and cache_root is not None:
        result.cache_file = _write_meta(cache_root / stem, result, options)
        if result.cache_file is not None:
            for stale in cache_root.glob(f"{folder_id}-{opt_id}-*"):
                if not stale.name.startswith(stem):
                    stale.unlink(missing_ok=True)  # the same folder before its files changed
    return result


@contextmanager
def _one_builder(stem: Path, src: FolderSource) -> Iterator[bool]:
    """Hold ``<stem>.lock`` (``flock``) while this process decodes the entry: another process on the same
    machine that wants it (the other ranks of a DDP job, a second run) waits, saying so in one line, then
    finds it in the cache. Yields whether it waited. Without a lock (no ``fcntl``, a read-only cache
    folder) everyone decodes, as before."""
    try:
        import fcntl  # deferred: Unix only (no fcntl on Windows: everyone decodes)

        stem.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(stem.with_suffix(".lock"), os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o644)
    except (ImportError, OSError):
        yield False
        return
    try:
        waited = False
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            print(
                f"waiting for another process to finish decoding '{src.origin}' into the cache",
                file=sys.stderr,
            )
            fcntl.flock(fd, fcntl.LOCK_EX)
            waited = True
        yield waited
    finally:
        os.close(fd)  # releases the lock


def _decode_to(
    stem: Path | None, paths: list[str], options: dict, src: FolderSource, bad_images: str, workers, progress
) -> tuple[np.ndarray, np.ndarray, list[tuple[int, str]], Path | None]:
    """Decode ``paths`` into the cache entry ``<stem>.npy`` on disk (resuming a partial one), else, without
    a cache or where the disk cannot hold it, into memory. Returns the images (unreadable ones left out),
    their pixel sums, the (index, reason) of the unreadable files and the finished cache file (None: in
    memory)."""
    s, c = options["image_size"], options["channels"]
    entry = _disk_entry(stem, (len(paths), c, s, s))
    strict = bad_images == "strict"
    with _progress_bar(progress, len(paths), f"decoding {src.origin.name}") as update:
        if entry is not None:
            try:
                bad = _decode_to_disk(entry, paths, options["resize"], workers, strict, update)
            except OSError as exc:
                if not full_disk(exc):
                    raise
                entry.discard()
                print(
                    f"note: image cache not used: the disk of '{entry.npy.parent}' filled while decoding "
                    f"({exc.strerror}); the partial cache is removed; decoding into memory.",
                    file=sys.stderr,
                )
                entry = None
        if entry is None:
            d = decode_images(
                paths, size=s, channels=c, resize=options["resize"], workers=workers, strict=strict,
                on_progress=update,
            )  # fmt: skip
            bad_at = list(zip(np.flatnonzero(~d.ok).tolist(), [why for _, why in d.bad], strict=True))
            return d.images, pixel_sums(d.images), bad_at, None
    assert stem is not None
    try:
        entry.commit(len(paths), bad, force=True)
        final = stem.with_suffix(".npy")
        images, sums = entry.finish(final)
        return images, sums, bad, final
    except OSError as exc:
        raise CnnlabError(f"The image cache '{stem}.npy' could not be finished ({exc}); run again.") from None


def _decode_to_disk(entry: DiskEntry, paths: list[str], resize: str, workers, strict: bool, update):
    """Decode into the on-disk ``entry`` from where it stopped, its progress recorded chunk by chunk;
    returns the (index, reason) of every unreadable file, before an interruption included.

    Raises:
        OSError: the disk filled (`full_disk`), or the file could not be written."""
    prior = list(entry.bad)  # unreadable files found before an interruption

    def chunk_done(stop: int, bad: list[tuple[int, str]]) -> None:
        entry.commit(stop, prior + bad)
        if update is not None:
            update(stop)

    # One worker more than the cores: each waits for its own direct writes (measured on 60,000 JPEGs to
    # 224 px, 2 cores: 28.4 s with 2 workers, 25.8 s with 3).
    workers = workers or default_workers() + 1
    return prior + decode_into(
        paths, entry.images, start=entry.done, sums=entry.sums, resize=resize, workers=workers, strict=strict,
        on_chunk=chunk_done,
    )  # fmt: skip


def _disk_entry(stem: Path | None, shape: tuple[int, int, int, int]) -> DiskEntry | None:
    """The on-disk entry to decode into (a partial one resumed), or None: no cache, or it cannot be
    written (said in one line; the images are then decoded into memory)."""
    if stem is None:
        return None
    try:
        entry = DiskEntry.open(stem, shape)
    except (NoSpace, OSError) as exc:
        why = str(exc) if isinstance(exc, NoSpace) else f"it could not be written ({exc})"
        print(f"note: image cache not used: {why}; decoding into memory.", file=sys.stderr)
        return None
    if entry.resumed:
        print(f"resuming an interrupted decode at image {entry.done:,} of {shape[0]:,}", file=sys.stderr)
    return entry


def _write_meta(stem: Path, imgs: FolderImages, options: dict) -> Path | None:
    """``<stem>.json`` beside the finished ``<stem>.npy``: labels, classes, files, skipped files, options, and
    the array file's shape, size and modification time, so that a file cut short or edited by hand is
    found and rebuilt. Written last and atomically: a crash before it leaves a miss, never a wrong hit."""
    npy, meta_path = stem.with_suffix(".npy"), stem.with_suffix(".json")
    try:
        st = npy.stat()
        meta = {
            "options": options,
            "shape": list(imgs.images.shape),
            "bytes": st.st_size,
            "mtime_ns": st.st_mtime_ns,
            "classes": list(imgs.classes),
            "labels": imgs.labels.tolist(),
            "files": imgs.files,
            "bad": [list(b) for b in imgs.bad],
        }
        write_atomic(meta_path, json.dumps(meta), fsync=False)  # a cache: a crash only costs a decode
        return npy
    except OSError as exc:
        print(
            f"note: could not write the image cache '{meta_path}' ({exc}); decoding again next time.",
            file=sys.stderr,
        )
        return None


def _read_cache(stem: Path, options: dict, root: Path) -> FolderImages | None:
    """The cached images (memory-mapped, read-only: the splits index into them) or None. A file cut short,
    edited by hand (its size or modification time differ from the index's record) or with another shape
    is discarded with one line, and decoded again."""
    npy, meta_path = stem.with_suffix(".npy"), stem.with_suffix(".json")
    if not (npy.is_file() and meta_path.is_file()):
        return None
    try:
        meta = json.loads(read_user_text(meta_path, max_bytes=_MAX_META_BYTES, what="cache index"))
        st = npy.stat()
        if (st.st_size, st.st_mtime_ns) != (meta["bytes"], meta["mtime_ns"]):
            raise ValueError("changed since it was written")
        images = np.load(npy, mmap_mode="r", allow_pickle=False)
        sums = np.load(stem.with_suffix(".sums"), allow_pickle=False)
        labels = np.asarray(meta["labels"], dtype=np.int64)
        s = options["image_size"]
        valid = (
            meta["options"] == options
            and images.dtype == np.uint8
            and list(images.shape) == meta["shape"]
            and images.shape[1:] == (options["channels"], s, s)
            and labels.shape == (len(images),)
            and sums.shape == (len(images), 2, options["channels"])
            and sums.dtype == np.int64
            and len(meta["files"]) == len(images)
        )
    except (OSError, ValueError, KeyError, TypeError, UserFileError, json.JSONDecodeError):
        valid = False
    if not valid:
        print(f"note: the image cache '{npy}' is damaged or was changed; decoding again.", file=sys.stderr)
        npy.unlink(missing_ok=True)
        meta_path.unlink(missing_ok=True)
        stem.with_suffix(".sums").unlink(missing_ok=True)
        return None
    return FolderImages(
        images,
        labels,
        tuple(meta["classes"]),
        meta["files"],
        [tuple(b) for b in meta["bad"]],
        root,
        npy,
        True,
        0.0,
        sums,
    )


class _progress_bar:
    """A transient rich progress bar on stderr (only when asked and stderr is a terminal).

    It starts at the first update, i.e. after the decoding workers were forked: forking while the
    bar's refresh thread runs could copy a held lock into the children.
    """

    def __init__(self, enabled: bool, total: int, label: str):
        self.enabled = enabled and sys.stderr.isatty() and total > 0
        self.total, self.label = total, label
        self.bar: Progress | None = None

    def update(self, done: int) -> None:
        if self.bar is None:
            bar = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeRemainingColumn(),
                console=Console(stderr=True),
                transient=True,
            )
            bar.__enter__()
            self.task = bar.add_task(self.label, total=self.total)
            self.bar = bar
        self.bar.update(self.task, completed=done)

    def __enter__(self):
        return self.update if self.enabled else None

    def __exit__(self, *exc):
        if self.bar is not None:
            self.bar.__exit__(*exc)
        return False
