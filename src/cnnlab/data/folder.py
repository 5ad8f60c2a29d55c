"""Your own images as a dataset: a folder with one sub-folder per class, or a CSV of `path,label`.

    pets/                       pets.csv                      (paths relative to the CSV's folder;
      cat/  001.jpg 002.png       path,label                   an optional classes.txt beside it fixes
      dog/  a.jpeg  b/c.webp      img/001.jpg,cat              the class order and rejects unknown labels)
                                  img/a.jpeg,dog

Every image is decoded once (in parallel, see `cnnlab.data.decode`) into ONE uint8 array
(N, C, S, S) that is cached under `$XDG_CACHE_HOME/cnnlab/folders/` (else `~/.cache/...`) as an
uncompressed `.npz` read back with `allow_pickle=False`. The cache key is the list of files with their
sizes and modification times plus the decoding options, so adding, removing or editing any image (or
changing `image_size`/`channels`/`resize`) decodes again, and a second run with nothing changed
starts in about the time it takes to read the array.

The split is stratified: each class is cut train/val/test (70/15/15 by default) with the seed, so
every class appears in every split. Per-channel mean and std are computed on the training split and
returned in `Dataset.mean/std` (a model built with them normalises its own 0..1 input).
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from cnnlab.data.builtin import cache_dir, check_image_options
from cnnlab.data.decode import IMAGE_EXTENSIONS, BadImage, decode_images
from cnnlab.data.split import check_seed
from cnnlab.data.types import Dataset, Split
from cnnlab.errors import CnnlabError

__all__ = [
    "DEFAULT_CHANNELS",
    "channel_stats",
    "DEFAULT_IMAGE_SIZE",
    "FolderImages",
    "FolderSource",
    "decode_folder",
    "folder_split",
    "is_folder_dataset",
    "load_folder",
    "parse_fractions",
    "scan_source",
]

DEFAULT_IMAGE_SIZE = 64
DEFAULT_CHANNELS = 3
DEFAULT_FRACTIONS = (0.70, 0.15, 0.15)
_CACHE_VERSION = 1  # bump when the decoded pixels of the same file and options would change


@dataclass(frozen=True)
class FolderSource:
    """What a folder or CSV lists, before any decoding."""

    root: Path  # the folder, or the CSV's folder
    origin: Path  # the folder or the CSV file itself
    files: list[str]  # paths relative to root (or absolute, from a CSV), one per image
    labels: np.ndarray  # int64, index into classes
    classes: tuple[str, ...]
    ignored: list[str] = field(default_factory=list)  # files that are not images by their extension


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


def is_folder_dataset(name: object) -> bool:
    """True if `name` names an existing folder or CSV file (what `load_data` treats as your own images)."""
    return isinstance(name, (str, os.PathLike)) and (
        Path(name).expanduser().is_dir() or str(name).lower().endswith(".csv")
    )


def parse_fractions(split: str) -> tuple[float, float, float]:
    """`"default"`/`"tutorial"` -> 70/15/15; `"80/10/10"` -> (0.8, 0.1, 0.1) (percentages summing to 100)."""
    if split in ("default", "tutorial"):
        return DEFAULT_FRACTIONS
    parts = str(split).split("/")
    try:
        pct = [float(p) for p in parts]
    except ValueError:
        pct = []
    if len(pct) != 3 or abs(sum(pct) - 100) > 1e-6 or pct[0] <= 0 or pct[1] <= 0 or pct[2] <= 0:
        raise CnnlabError(
            f"Unknown split {split!r} for a folder dataset. Available: default (stratified 70/15/15) or "
            "train/val/test percentages summing to 100, e.g. 80/10/10."
        )
    return (pct[0] / 100, pct[1] / 100, pct[2] / 100)


# ---- listing ---------------------------------------------------------------------------------------


def scan_source(path: str | os.PathLike[str]) -> FolderSource:
    """List the images of a class-folder tree or a CSV of path,label; every structural problem is a
    CnnlabError saying what layout would work."""
    p = Path(path).expanduser()
    if p.is_file() and p.suffix.lower() == ".csv":
        return _scan_csv(p)
    if not p.exists():
        raise CnnlabError(f"Dataset folder or CSV '{p}' does not exist.")
    if not p.is_dir():
        raise CnnlabError(
            f"'{p}' is a file, not a dataset: pass a folder with one sub-folder per class or a CSV of path,label."
        )
    return _scan_folder(p)


def _visible(entry: Path) -> bool:
    return not entry.name.startswith(".") and not entry.name.startswith("__")


def _scan_folder(root: Path) -> FolderSource:
    subdirs = sorted(d for d in root.iterdir() if d.is_dir() and _visible(d))
    if not subdirs:
        loose = sum(1 for f in root.iterdir() if f.suffix.lower() in IMAGE_EXTENSIONS)
        found = f" (it holds {loose} images directly)" if loose else ""
        raise CnnlabError(
            f"'{root}' has no class sub-folders{found}: put each class's images in its own folder "
            f"({root.name}/cat/1.jpg, {root.name}/dog/2.jpg) or pass a CSV of path,label."
        )
    if len(subdirs) == 1:
        raise CnnlabError(
            f"'{root}' has only one class sub-folder ('{subdirs[0].name}'); a classifier needs at least two."
        )
    files: list[str] = []
    labels: list[int] = []
    ignored: list[str] = []
    empty: list[str] = []
    for label, d in enumerate(subdirs):
        found = 0
        for dirpath, dirnames, filenames in os.walk(d, followlinks=True):
            dirnames[:] = sorted(n for n in dirnames if _visible(Path(n)))
            for name in sorted(filenames):
                if not _visible(Path(name)):
                    continue
                rel = os.path.relpath(os.path.join(dirpath, name), root)
                if Path(name).suffix.lower() in IMAGE_EXTENSIONS:
                    files.append(rel)
                    labels.append(label)
                    found += 1
                else:
                    ignored.append(rel)
        if not found:
            empty.append(d.name)
    if empty:
        exts = ", ".join(sorted(IMAGE_EXTENSIONS))
        raise CnnlabError(
            f"Class folder{'s' if len(empty) > 1 else ''} {', '.join(repr(e) for e in empty)} in '{root}' "
            f"hold{'' if len(empty) > 1 else 's'} no images ({exts}); add images or remove the folder."
        )
    classes = tuple(d.name for d in subdirs)
    return FolderSource(root, root, files, np.asarray(labels, dtype=np.int64), classes, ignored)


def _scan_csv(path: Path) -> FolderSource:
    root = path.parent
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise CnnlabError(f"Cannot read CSV '{path}': {exc}") from None
    rows = [(n, r) for n, r in enumerate(csv.reader(text.splitlines()), start=1) if any(c.strip() for c in r)]
    if rows and [c.strip().lower() for c in rows[0][1]][:1] in (["path"], ["file"], ["filename"], ["image"]):
        rows = rows[1:]  # header
    if not rows:
        raise CnnlabError(f"CSV '{path}' lists no images; expected lines of path,label (e.g. img/1.jpg,cat).")
    entries: list[tuple[int, str, str]] = []
    for line, row in rows:
        cells = [c.strip() for c in row]
        if len(cells) != 2 or not cells[0] or not cells[1]:
            raise CnnlabError(
                f"CSV '{path}' line {line}: expected path,label (two non-empty fields), got {','.join(row)!r}."
            )
        entries.append((line, cells[0], cells[1]))
    seen: dict[str, int] = {}
    for line, file, _ in entries:
        key = os.path.normpath(file)
        if key in seen:
            raise CnnlabError(
                f"CSV '{path}' lists '{file}' twice (lines {seen[key]} and {line}); an image in two splits "
                "would leak test data into training."
            )
        seen[key] = line
    classes_file = root / "classes.txt"
    if classes_file.is_file():
        classes = tuple(c.strip() for c in classes_file.read_text(encoding="utf-8").splitlines() if c.strip())
        unknown = [(line, label) for line, _, label in entries if label not in classes]
        if unknown:
            shown = ", ".join(f"{label!r} (line {line})" for line, label in unknown[:5])
            more = f" and {len(unknown) - 5} more" if len(unknown) > 5 else ""
            raise CnnlabError(
                f"CSV '{path}' has labels not in {classes_file.name}: {shown}{more}. Known: {', '.join(classes)}."
            )
    else:
        classes = tuple(sorted({label for _, _, label in entries}))
    if len(classes) < 2:
        raise CnnlabError(
            f"CSV '{path}' has only one class ({classes[0]!r}); a classifier needs at least two."
        )
    index = {c: i for i, c in enumerate(classes)}
    labels = np.asarray([index[label] for _, _, label in entries], dtype=np.int64)
    counts = np.bincount(labels, minlength=len(classes))
    if (counts == 0).any():
        missing = ", ".join(c for c, n in zip(classes, counts, strict=True) if n == 0)
        raise CnnlabError(f"CSV '{path}': classes in classes.txt with no images: {missing}.")
    return FolderSource(root, path, [f for _, f, _ in entries], labels, classes)


# ---- decoding and the cache -------------------------------------------------------------------------


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
    """A transient rich progress bar on stderr (only when asked and stderr is a terminal)."""

    def __init__(self, enabled: bool, total: int, label: str):
        self.enabled = enabled and sys.stderr.isatty() and total > 0
        self.total, self.label = total, label

    def __enter__(self):
        if not self.enabled:
            return None
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
        task = self.bar.add_task(self.label, total=self.total)
        return lambda done: self.bar.update(task, completed=done)

    def __exit__(self, *exc):
        if self.enabled:
            self.bar.__exit__(*exc)
        return False


# ---- splitting and the Dataset ----------------------------------------------------------------------


def folder_split(
    labels: np.ndarray, fractions: tuple[float, float, float], seed: int, *, classes: tuple[str, ...] = ()
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Stratified train/val/test indices: each class is shuffled with `seed` and cut by `fractions`
    (val and test get at least one image of every class; train keeps the rest).

    Example:
        >>> tr, va, te = folder_split(np.repeat(np.arange(2), 20), (0.7, 0.15, 0.15), seed=0)
        >>> len(tr), len(va), len(te)
        (28, 6, 6)
    """
    seed = check_seed(seed)
    rng = np.random.default_rng(seed)
    parts: tuple[list, list, list] = ([], [], [])
    counts = np.bincount(labels, minlength=len(classes))
    too_few = [i for i, n in enumerate(counts) if n < 3]
    if too_few:
        names = [f"{classes[i] if classes else i!r} ({counts[i]})" for i in too_few]
        pct = "/".join(f"{round(f * 100):g}" for f in fractions)
        raise CnnlabError(
            f"Too few images for the {pct} train/val/test split in class{'es' if len(names) > 1 else ''} "
            f"{', '.join(names)}: every class needs at least 3 (one each for train, val and test); "
            "add images or remove the class."
        )
    for cls, n in enumerate(counts):
        if n == 0:
            continue
        members = rng.permutation(np.flatnonzero(labels == cls))
        n_val = max(1, round(n * fractions[1]))
        n_test = max(1, round(n * fractions[2]))
        n_val = min(n_val, n - 2)
        n_test = min(n_test, n - 1 - n_val)
        parts[1].append(members[:n_val])
        parts[2].append(members[n_val : n_val + n_test])
        parts[0].append(members[n_val + n_test :])
    return tuple(rng.permutation(np.concatenate(p)).astype(np.int64) for p in parts)  # type: ignore[return-value]


def channel_stats(images: np.ndarray, chunk: int = 2048) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and std on the 0..1 scale, accumulated in float64 chunk by chunk."""
    c = images.shape[1]
    total = np.zeros(c)
    total_sq = np.zeros(c)
    for start in range(0, len(images), chunk):
        x = images[start : start + chunk].astype(np.float64) / 255.0
        total += x.sum(axis=(0, 2, 3))
        total_sq += np.square(x).sum(axis=(0, 2, 3))
    n = max(1, images.shape[0] * images.shape[2] * images.shape[3])
    mean = total / n
    std = np.sqrt(np.maximum(total_sq / n - mean**2, 0.0))
    # A constant channel (all-black padding, a gray image in RGB) must not divide by zero.
    std = np.maximum(std, 1.0 / 255.0)
    return tuple(round(float(m), 6) for m in mean), tuple(round(float(s), 6) for s in std)


def load_folder(
    path: str | os.PathLike[str],
    *,
    split: str = "default",
    seed: int = 0,
    limit: int | None = None,
    image_size: int | None = None,
    channels: int | None = None,
    resize: str = "pad",
    bad_images: str = "skip",
    cache: bool = True,
    workers: int | None = None,
    quiet: bool = False,
) -> Dataset:
    """Load your own images as a `Dataset` (see the module docstring).

    Args:
        path: a folder with one sub-folder per class, or a CSV of path,label.
        split: `"default"` (or `"tutorial"`): stratified 70/15/15; or percentages like `"80/10/10"`.
        seed: the split's seed.
        limit: keep at most `limit` images of each split (quick runs).
        image_size: the square input size [64].
        channels: 1 (grayscale) or 3 (RGB) [3].
        resize: `"pad"` (default: keep the aspect ratio, pad with black), `"crop"` (centre square) or
            `"stretch"`.
        bad_images: `"skip"` (default: leave unreadable files out and list them on stderr) or `"strict"`.
        cache: read/write the decoded array in the user cache.
        workers: decoding threads [one per core].
        quiet: print nothing (no progress bar, no skip report).

    Returns:
        A `Dataset` with uint8 (N, C, S, S) splits and per-channel `mean`/`std` of the training split.

    Example:
        >>> data = load_folder("pets", image_size=64, seed=0)  # doctest: +SKIP
        >>> data.input_shape, data.classes  # doctest: +SKIP
        ((3, 64, 64), ('cat', 'dog'))
    """
    fractions = parse_fractions(split)
    seed = check_seed(seed)
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise CnnlabError(f"limit must be a positive integer, got {limit!r}.")
    size = DEFAULT_IMAGE_SIZE if image_size is None else image_size
    chans = DEFAULT_CHANNELS if channels is None else channels
    imgs = decode_folder(
        path,
        image_size=size,
        channels=chans,
        resize=resize,
        bad_images=bad_images,
        cache=cache,
        workers=workers,
        progress=not quiet,
    )
    if not quiet:
        _report(Path(path), imgs)
    if len(imgs.images) == 0:
        raise CnnlabError(f"No readable images in '{path}' ({len(imgs.bad)} files could not be decoded).")
    train, val, test = folder_split(imgs.labels, fractions, seed, classes=imgs.classes)
    if limit is not None:
        train, val, test = train[:limit], val[:limit], test[:limit]
    x, y = imgs.images, imgs.labels

    def make(idx: np.ndarray) -> Split:
        return Split(torch.from_numpy(x[idx]), torch.from_numpy(y[idx]))

    train_split = make(train)
    mean, std = channel_stats(train_split.images.numpy())
    return Dataset(
        name=str(Path(path).expanduser().resolve()),
        classes=imgs.classes,
        train=train_split,
        val=make(val),
        test=make(test),
        split=split,
        seed=seed,
        limit=limit,
        mean=mean,
        std=std,
    )


def _report(path: Path, imgs: FolderImages) -> None:
    """One stderr line about where the pixels came from, and the list of skipped files."""
    how = "read from the cache" if imgs.from_cache else "decoded"
    where = f" (cache: {imgs.cache_file})" if imgs.cache_file and not imgs.from_cache else ""
    print(
        f"{path}: {len(imgs.images):,} images in {len(imgs.classes)} classes {how} in {imgs.seconds:.1f} s{where}",
        file=sys.stderr,
    )
    if imgs.bad:
        print(f"Skipped {len(imgs.bad)} unreadable file(s) (--bad-images skip):", file=sys.stderr)
        for file, why in imgs.bad[:20]:
            print(f"  {imgs.root / file}: {why}", file=sys.stderr)
        if len(imgs.bad) > 20:
            print(f"  ... and {len(imgs.bad) - 20} more", file=sys.stderr)
