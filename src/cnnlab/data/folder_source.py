"""Listing your own images: a folder with one sub-folder per class, or a CSV of `path,label`.

    pets/                       pets.csv                      (paths relative to the CSV's folder;
      cat/  001.jpg 002.png       path,label                   an optional classes.txt beside it fixes
      dog/  a.jpeg  b/c.webp      img/001.jpg,cat              the class order and rejects unknown labels)
                                  img/a.jpeg,dog

Class folders are sorted by name (that is the label order); images are found recursively inside each
one by extension; hidden files and folders are skipped, other files are listed as ignored.

A dataset folder is a sealed box: a link (to a folder or a file) is followed only when what it points to
lies inside the same class folder, and every real folder is walked once. So a link out of the dataset
(``ln -s / pets/cat/all``) is never followed, a loop (``pets/cat/up -> ..``) is walked once, and no
image is counted under two classes; such links are listed as ignored. A class folder may itself be a
link to a folder inside the dataset folder (its real folder is then the box for that class; a real folder
reached twice is walked once, under the first class); a class folder linked to anywhere outside is one
error. Class folder names must be UTF-8 text (they become the class names
written into JSON and pages); an image file whose name is not is skipped and listed as ignored. Every structural problem (no class folders, one class, an
empty class, a malformed CSV, unknown labels, a file listed twice, a CSV row naming a missing file or
something that is not a regular file) is one `CnnlabError` that says what layout would work. The CSV
and classes.txt are read with `cnnlab.userfiles` (regular files only, bounded).
"""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from cnnlab.data.decode import IMAGE_EXTENSIONS
from cnnlab.errors import CnnlabError
from cnnlab.userfiles import UserFileError, check_user_file, read_user_text

__all__ = ["MAX_CSV_BYTES", "FolderSource", "is_folder_dataset", "scan_source"]

MAX_CSV_BYTES = 128 << 20  # about two million rows of path,label
_MAX_CLASSES_TXT = 1 << 20


@dataclass(frozen=True)
class FolderSource:
    """What a folder or CSV lists, before any decoding."""

    root: Path  # the folder, or the CSV's folder
    origin: Path  # the folder or the CSV file itself
    files: list[str]  # paths relative to root (or absolute, from a CSV), one per image
    labels: np.ndarray  # int64, index into classes
    classes: tuple[str, ...]
    ignored: list[str] = field(default_factory=list)  # files that are not images by their extension


def is_folder_dataset(name: object) -> bool:
    """True if `name` names an existing folder or CSV file (what `load_data` treats as your own images)."""
    return isinstance(name, (str, os.PathLike)) and (
        Path(name).expanduser().is_dir() or str(name).lower().endswith(".csv")
    )


def scan_source(path: str | os.PathLike[str]) -> FolderSource:
    """List the images of a class-folder tree or a CSV of path,label; every structural problem is a
    CnnlabError saying what layout would work."""
    p = Path(path).expanduser()
    if p.suffix.lower() == ".csv" and not p.is_dir():
        return _scan_csv(p)  # whatever it is (missing, a FIFO, /dev/zero...), the CSV reader says so
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
        held = f" (it holds {loose} images directly)" if loose else ""
        raise CnnlabError(
            f"'{root}' has no class sub-folders{held}: put each class's images in its own folder "
            f"({root.name}/cat/1.jpg, {root.name}/dog/2.jpg) or pass a CSV of path,label."
        )
    if len(subdirs) == 1:
        raise CnnlabError(
            f"'{root}' has only one class sub-folder ('{subdirs[0].name}'); a classifier needs at least two."
        )
    _check_class_names(root, subdirs)
    files: list[str] = []
    labels: list[int] = []
    ignored: list[str] = []
    empty: list[str] = []
    seen: set[tuple[int, int]] = set()  # real folders walked: a loop is walked once
    for label, d in enumerate(subdirs):
        before = len(files)
        box = os.path.realpath(d)
        if d.is_symlink() and not _inside(box, os.path.realpath(root)):
            raise CnnlabError(
                f"Class folder {d.name!r} in '{root}' is a link out of the dataset folder; cnnlab reads "
                "only what is inside it (a sealed box): move or copy the images in."
            )
        for rel in _walk(root, d, box, seen, ignored):
            files.append(rel)
            labels.append(label)
        if len(files) == before:
            empty.append(d.name)
    if empty:
        exts = ", ".join(sorted(IMAGE_EXTENSIONS))
        raise CnnlabError(
            f"Class folder{'s' if len(empty) > 1 else ''} {', '.join(repr(e) for e in empty)} in '{root}' "
            f"hold{'' if len(empty) > 1 else 's'} no images ({exts}); add images or remove the folder."
        )
    classes = tuple(d.name for d in subdirs)
    return FolderSource(root, root, files, np.asarray(labels, dtype=np.int64), classes, ignored)


def _check_class_names(root: Path, subdirs: list[Path]) -> None:
    """Class names become JSON and page text: a folder name that is not UTF-8 is refused in one line."""
    for d in subdirs:
        if not _utf8(d.name):
            raise CnnlabError(
                f"Class folder {ascii(d.name)} in {ascii(str(root))} has a name that is not UTF-8 text; "
                "rename it (class names are written into the run's JSON files and pages)."
            )


def _utf8(name: str) -> bool:
    try:
        name.encode("utf-8")  # a name the file system gave as bytes that are not UTF-8 holds surrogates
    except UnicodeEncodeError:
        return False
    return True


def _inside(path: str, folder: str) -> bool:
    return path == folder or path.startswith(folder.rstrip(os.sep) + os.sep)


def _walk(root: Path, top: Path, box: str, seen: set[tuple[int, int]], ignored: list[str]):
    """The image files under ``top`` (paths relative to ``root``), sorted, hidden ones skipped. A link is
    followed only when its target is inside ``box`` (the class folder's real path); each real folder is
    walked once; what is passed over is appended to ``ignored`` (printable: names that are not UTF-8 are
    given escaped)."""
    stack = [top]
    while stack:
        folder = stack.pop()
        if not _first_visit(str(folder), seen):
            continue
        try:
            entries = sorted(os.scandir(folder), key=lambda e: e.name)
        except OSError:
            continue
        prefix = os.path.relpath(folder, root) + os.sep  # once per folder, not per file (10,000s)
        subfolders = []
        for e in entries:
            if e.name.startswith((".", "__")):
                continue
            rel = prefix + e.name
            try:
                linked = e.is_symlink()
                if linked and not _inside(os.path.realpath(e.path), box):
                    ignored.append(
                        f"{ascii(rel) if not _utf8(rel) else rel} (a link out of its class folder)"
                    )
                    continue
                if e.is_dir():
                    subfolders.append(Path(e.path))
                    continue
            except OSError:
                continue
            if not _utf8(e.name):
                ignored.append(f"{ascii(rel)} (a name that is not UTF-8)")
            elif os.path.splitext(e.name)[1].lower() in IMAGE_EXTENSIONS:
                yield rel
            else:
                ignored.append(rel)
        stack.extend(reversed(subfolders))


def _first_visit(folder: str, seen: set[tuple[int, int]]) -> bool:
    try:
        st = os.stat(folder)
    except OSError:
        return False
    key = (st.st_dev, st.st_ino)
    if key in seen:
        return False
    seen.add(key)
    return True


def _scan_csv(path: Path) -> FolderSource:
    root = path.parent
    text = read_user_text(path, max_bytes=MAX_CSV_BYTES, what="CSV", encoding="utf-8-sig")
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
    _check_listed_files(path, entries)
    classes_file = root / "classes.txt"
    if os.path.lexists(classes_file):
        listed = read_user_text(classes_file, max_bytes=_MAX_CLASSES_TXT, what="class list")
        classes = tuple(c.strip() for c in listed.splitlines() if c.strip())
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


def _check_listed_files(path: Path, entries: list[tuple[int, str, str]]) -> None:
    """Every row must name an existing regular file (stat only: a FIFO or /dev/zero is never opened)."""
    problems = []
    for line, file, _ in entries:
        try:
            check_user_file(path.parent / file, what="image")
        except UserFileError as exc:
            problems.append(f"line {line} '{file}' ({exc.reason})")
    if problems:
        shown = "; ".join(problems[:3]) + (f"; and {len(problems) - 3} more" if len(problems) > 3 else "")
        raise CnnlabError(
            f"CSV '{path}' names {len(problems)} file{'s' if len(problems) > 1 else ''} that cannot be read "
            f"(relative paths are taken from '{path.parent}'): {shown}. Fix or remove those lines."
        )
