"""Write a set of output files all-or-nothing.

Files are first written to a hidden staging folder inside the target, then renamed into place when
everything has succeeded. A failure at any point (bad input found late, disk full, Ctrl-C) leaves no
partial outputs behind: the staging folder is removed, and so are the folders this call created.
Memory stays bounded: each file goes to disk as soon as it is rendered.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from cnnlab.errors import CnnlabError


class Staging:
    """Collects files under a temporary folder; `commit` moves them to the target."""

    def __init__(self, out: Path, tmp: Path) -> None:
        self.out, self.tmp = out, tmp
        self.names: list[str] = []

    def write(self, name: str, content: bytes) -> Path:
        """Stage `content` as `out/name` (name may contain subfolders); returns the final path."""
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
def staged_output(out_dir: str | os.PathLike) -> Iterator[Staging]:
    """Stage files inside the block; they appear in `out_dir` only if the block succeeds.

    Example:
        >>> import tempfile
        >>> d = tempfile.mkdtemp()
        >>> with staged_output(d) as stage:
        ...     _ = stage.write("a.txt", b"hi")
        >>> sorted(p.name for p in Path(d).iterdir())
        ['a.txt']
    """
    out = Path(out_dir)
    try:
        if out.exists() and not out.is_dir():
            raise CnnlabError(f"output path '{out}' exists and is not a folder")
        created = [p for p in (out, *out.parents) if not p.exists()][::-1]  # outermost first
        out.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=".cnnlab-tmp-", dir=out))
    except OSError as exc:  # no permission, a name too long, ...
        raise CnnlabError(
            f"cannot create output folder '{_short(str(out))}': {exc.strerror or exc}"
        ) from None
    stage = Staging(out, tmp)
    ok = False
    try:
        yield stage
        stage.commit()
        ok = True
    except OSError as exc:
        raise CnnlabError(f"cannot write to '{out}': {exc}") from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        if not ok and created:
            shutil.rmtree(created[0], ignore_errors=True)  # nothing of ours was there before


def _short(text: str, limit: int = 80) -> str:
    return text if len(text) <= limit else f"{text[: limit - 3]}..."


def write_files(out_dir: str | os.PathLike, files: dict[str, bytes]) -> list[Path]:
    """Write `{relative name: content}` under `out_dir`, all or nothing; returns the written paths."""
    with staged_output(out_dir) as stage:
        paths = [stage.write(name, content) for name, content in files.items()]
    return paths
