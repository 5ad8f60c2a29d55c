"""Decoding a folder dataset once into ONE uint8 array, cached in the user cache folder.

The array (N, C, S, S) is stored under `$XDG_CACHE_HOME/cnnlab/folders/` (else `~/.cache/...`) as an
uncompressed `.npz` (written to a temp file, then renamed) and read back with `allow_pickle=False`. Its
name is `<folder>-<options>-<contents>.npz`: the contents key hashes every listed file's path, label,
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
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cnnlab.data.builtin import cache_dir, check_image_options
from cnnlab.data.decode import BadImage, decode_images
from cnnlab.data.folder_source import FolderSource, scan_source
from cnnlab.errors import CnnlabError

__all__ = ["DEFAULT_CHANNELS", "DEFAULT_IMAGE_SIZE", "FolderImages", "decode_folder"]

DEFAULT_IMAGE_SIZE = 64
DEFAULT_CHANNELS = 3
_CACHE_VERSION = 1  # bump when the decoded pixels of the same file and options would change


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


def _fingerprint(src: FolderSource) -> list:
    """(file, label, size, mtime_ns) of every listed image; a missing file is listed as such."""
    out = []
    for file, label in zip(src.files, src.labels.tolist(), strict=True):
        try:
            st = os.stat(src.root / file)
            out.append([file, label, st.st_size, st.st_mtime_ns])
        except OSError:
            out.append([file, label, -1, -1])
    return out


def _digest(obj: object) -> str:
    return hashlib.sha256(json.dumps(obj, separators=(",", ":")).encode()).hexdigest()


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
) -> FolderImages:
    """Every image of a folder/CSV decoded to uint8 (N, channels, image_size, image_size), from the
    cache when the files and options are unchanged.

    Example:
        >>> imgs = decode_folder("pets", image_size=64)  # doctest: +SKIP
        >>> imgs.images.shape, imgs.from_cache  # doctest: +SKIP
        ((1200, 3, 64, 64), True)
    """
    check_image_options(image_size, channels, resize, bad_images)
    t0 = time.perf_counter()
    src = scan_source(path)
    options = {"image_size": image_size, "channels": channels, "resize": resize, "v": _CACHE_VERSION}
    opt_id = _digest(options)[:8]
    content_id = _digest({"classes": list(src.classes), "files": _fingerprint(src)})[:24]
    folder_id = _digest(str(src.origin.resolve()))[:8]
    cache_root = cache_dir("folders")
    name = f"{folder_id}-{opt_id}-{content_id}.npz"
    if cache:
        # The same contents anywhere (a moved or copied folder) reuse the same decoded array.
        for candidate in [cache_root / name, *sorted(cache_root.glob(f"*-{opt_id}-{content_id}.npz"))]:
            hit = _read_cache(candidate, options, src.root)
            if hit is not None:
                hit.seconds = time.perf_counter() - t0
                if bad_images == "strict" and hit.bad:
                    file, why = hit.bad[0]
                    raise CnnlabError(
                        f"'{src.root / file}': {why} (--bad-images strict; use --bad-images skip to leave "
                        "such files out with a report)"
                    )
                return hit
    paths = [src.root / f for f in src.files]
    with _progress_bar(progress, len(paths), f"decoding {src.origin.name}") as update:
        images, ok, bad_abs, _ = decode_images(
            paths,
            size=image_size,
            channels=channels,
            resize=resize,
            workers=workers,
            strict=bad_images == "strict",
            on_progress=update,
        )
    files = [f for f, good in zip(src.files, ok.tolist(), strict=True) if good]
    skipped = [f for f, good in zip(src.files, ok.tolist(), strict=True) if not good]
    bad = [(f, why) for f, (_, why) in zip(skipped, bad_abs, strict=True)]  # same order as paths
    result = FolderImages(
        images, src.labels[ok], src.classes, files, bad, src.root, None, False, time.perf_counter() - t0
    )
    if cache:
        result.cache_file = _write_cache(cache_root / name, result, options)
        if result.cache_file is not None:
            for stale in cache_root.glob(f"{folder_id}-{opt_id}-*.npz"):
                if stale.name != name:
                    stale.unlink(missing_ok=True)  # the same folder before its files changed
    return result


def _write_cache(path: Path, imgs: FolderImages, options: dict) -> Path | None:
    """Write atomically (temp file + rename); a cache that cannot be written only costs speed."""
    meta = {
        "options": options,
        "classes": list(imgs.classes),
        "files": imgs.files,
        "bad": [list(b) for b in imgs.bad],
    }
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(tmp, "wb") as f:
            np.savez(
                f,
                images=imgs.images,
                labels=imgs.labels,
                meta=np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8),
            )
        os.replace(tmp, path)
        return path
    except OSError as exc:
        print(
            f"note: could not write the image cache '{path}' ({exc}); decoding again next time.",
            file=sys.stderr,
        )
        return None
    finally:
        tmp.unlink(missing_ok=True)


def _read_cache(path: Path, options: dict, root: Path) -> FolderImages | None:
    if not path.is_file():
        return None
    import zipfile

    try:
        with np.load(path, allow_pickle=False) as z:
            meta = json.loads(z["meta"].tobytes().decode())
            images, labels = z["images"], z["labels"]
    except (OSError, ValueError, KeyError, zipfile.BadZipFile, UnicodeDecodeError, json.JSONDecodeError):
        path.unlink(missing_ok=True)  # damaged (e.g. a crash mid-copy): decode again
        return None
    s = options["image_size"]
    if (
        meta.get("options") != options
        or images.dtype != np.uint8
        or images.shape[1:] != (options["channels"], s, s)
        or labels.shape != (len(images),)
        or len(meta["files"]) != len(images)
    ):
        return None
    return FolderImages(
        images,
        labels.astype(np.int64),
        tuple(meta["classes"]),
        meta["files"],
        [tuple(b) for b in meta["bad"]],
        root,
        path,
        True,
        0.0,
    )


class _progress_bar:
    """A transient rich progress bar on stderr (only when asked and stderr is a terminal).

    It starts at the first update, i.e. after the decoding workers were forked: forking while the
    bar's refresh thread runs could copy a held lock into the children.
    """

    def __init__(self, enabled: bool, total: int, label: str):
        self.enabled = enabled and sys.stderr.isatty() and total > 0
        self.total, self.label = total, label
        self.bar = None

    def update(self, done: int) -> None:
        if self.bar is None:
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

            self.bar = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeRemainingColumn(),
                console=Console(stderr=True),
                transient=True,
            )
            self.bar.__enter__()
            self.task = self.bar.add_task(self.label, total=self.total)
        self.bar.update(self.task, completed=done)

    def __enter__(self):
        return self.update if self.enabled else None

    def __exit__(self, *exc):
        if self.bar is not None:
            self.bar.__exit__(*exc)
        return False
