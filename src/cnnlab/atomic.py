"""Atomic file writes, the one way cnnlab writes files a reader (or a crash) must never see half-written.

- `atomic_path(target)`: a temp path beside `target` to write (or stream) into; renamed over `target` on a
  clean exit, removed otherwise. `write_atomic` writes bytes or text through it.
- `atomic_files(folder)`: a set of files that appear all together or not at all (staged in a hidden
  folder inside the target, moved into place at the end).
- `new_folders(folder)`: create a folder; if the block fails, remove the folders it created that are
  still empty, so a failed download or run leaves no empty folders behind.

A leaf module (os, tempfile, shutil): runs, export, plots, explain, datasets and the filter playground all
write through it.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

from cnnlab.errors import CnnlabError, shortened

__all__ = ["FileStage", "atomic_files", "atomic_path", "new_folders", "write_atomic"]


def _umask() -> int:
    """The process umask, read without changing it where Linux shows it (os.umask is process-wide)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


@contextmanager
def atomic_path(target: Path) -> Iterator[Path]:
    """Yield a temp path beside ``target``; on a clean exit it replaces ``target``, else it is removed.

    Beside the target, so the final rename never crosses file systems. Raising inside the block (a
    checksum that does not match, a write that fails, Ctrl-C) leaves ``target`` as it was. The temp
    file gets the mode any new file would (mkstemp's own 0600 would make run files private).
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    tmp = Path(name)
    os.close(fd)
    try:
        yield tmp
        os.chmod(tmp, 0o666 & ~_umask())  # after writing: some writers (safetensors) recreate the file
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


def write_atomic(path: Path, data: bytes | str, *, fsync: bool = True) -> None:
    """Write ``data`` to ``path`` atomically (flushed to disk before the rename unless ``fsync=False``,
    for files that can be rebuilt, such as caches)."""
    with atomic_path(Path(path)) as tmp, open(tmp, "wb") as f:
        f.write(data.encode() if isinstance(data, str) else data)
        if fsync:
            f.flush()
            os.fsync(f.fileno())


def write_json(path: Path, obj) -> None:
    """``obj`` as indented JSON (values JSON cannot hold as their ``str``), written atomically."""
    write_atomic(path, json.dumps(obj, indent=2, default=str) + "\n")


def _remove_empty(folders: list[Path]) -> None:
    """Remove each of ``folders`` (innermost first) and its sub-folders, where they hold no file."""
    for folder in sorted(folders, key=lambda p: len(p.parts), reverse=True):
        for dirpath, _, _ in sorted(os.walk(folder), key=lambda w: len(w[0]), reverse=True):
            with suppress(OSError):  # not empty (someone else's file, or ours from a finished step)
                os.rmdir(dirpath)


@contextmanager
def new_folders(folder: str | os.PathLike[str]) -> Iterator[Path]:
    """Create ``folder`` (and its parents); if the block raises, remove the ones this call created
    that are empty by then. Files written inside stay (a verified download is kept for next time)."""
    folder = Path(folder)
    created = [p for p in (folder, *folder.parents) if not p.exists()]
    folder.mkdir(parents=True, exist_ok=True)
    try:
        yield folder
    except BaseException:
        _remove_empty(created)
        raise


class FileStage:
    """Collects files under a temporary folder; `commit` moves them to the target."""

    def __init__(self, out: Path, tmp: Path) -> None:
        self.out, self.tmp = out, tmp
        self.names: list[str] = []

    def write(self, name: str, content: bytes) -> Path:
        """Stage `content` as `out/name` (name may contain sub-folders); returns the final path. The file
        goes to disk at once, so memory stays bounded however many files are staged."""
        path = self.tmp / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)
        self.names.append(name)
        return self.out / name

    def commit(self) -> list[Path]:
        done = []
        try:
            for name in self.names:
                dst = self.out / name
                dst.parent.mkdir(parents=True, exist_ok=True)
                os.replace(self.tmp / name, dst)  # atomic per file
                done.append(dst)
        except BaseException:
            for path in done:
                path.unlink(missing_ok=True)
            raise
        return done


@contextmanager
def atomic_files(out_dir: str | os.PathLike[str]) -> Iterator[FileStage]:
    """Stage files inside the block; they appear in `out_dir` only if the block succeeds.

    A failure at any point (bad input found late, disk full, Ctrl-C) leaves no partial outputs: the
    staging folder is removed, and so are the folders this call created.

    Example:
        >>> d = tempfile.mkdtemp()
        >>> with atomic_files(d) as stage:
        ...     _ = stage.write("a.txt", b"hi")
        >>> sorted(p.name for p in Path(d).iterdir())
        ['a.txt']
    """
    out = Path(out_dir)
    try:
        if out.exists() and not out.is_dir():
            raise CnnlabError(f"output path '{shortened(str(out))}' exists and is not a folder")
        created = [p for p in (out, *out.parents) if not p.exists()]
        out.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=".cnnlab-tmp-", dir=out))
    except OSError as exc:  # no permission, a name too long, ...
        raise CnnlabError(
            f"cannot create output folder '{shortened(str(out))}': {exc.strerror or exc}"
        ) from None
    stage = FileStage(out, tmp)
    ok = False
    try:
        yield stage
        stage.commit()
        ok = True
    except OSError as exc:
        raise CnnlabError(f"cannot write to '{shortened(str(out))}': {exc.strerror or exc}") from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        if not ok:
            _remove_empty(created)  # nothing of ours is left in them
