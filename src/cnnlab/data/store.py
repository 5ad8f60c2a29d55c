"""Where dataset files live and how they get there: the user cache, a data folder the user names, and
published files fetched from their mirrors and checked against the publisher's checksums.

Infrastructure shared by every built-in dataset (`mnist.py`, `cifar.py`) and the folder cache: it imports
no dataset module. Files are looked up in `data_dir`, else `$CNNLAB_DATA_DIR`, else the user cache
folder, which is the only place anything is downloaded to.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cnnlab.atomic import new_folders
from cnnlab.data.download import check_digest, download_file
from cnnlab.errors import CnnlabError
from cnnlab.userfiles import open_user_file, read_user_bytes

__all__ = [
    "RemoteFile",
    "cache_dir",
    "check_file",
    "fetch_files",
    "given_data_dir",
    "how_to_provide",
    "read_checked",
]

_CHUNK = 1 << 20


@dataclass(frozen=True)
class RemoteFile:
    """One published file and its official checksums (at least one of them)."""

    name: str
    md5: str | None = None
    sha256: str | None = None


def cache_dir(name: str) -> Path:
    """Where dataset `name` is downloaded when no data folder is given:
    `$XDG_CACHE_HOME/cnnlab/<name>`, else `~/.cache/cnnlab/<name>`."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "cnnlab" / name


def given_data_dir(data_dir: str | os.PathLike[str] | None) -> tuple[Path, str] | None:
    """The folder the user named for dataset files and where it came from (`"data_dir"` or
    `"$CNNLAB_DATA_DIR"`), or None: use the cache. A named folder is only read, never downloaded into."""
    if data_dir is not None:
        return Path(data_dir).expanduser(), "data_dir"
    if os.environ.get("CNNLAB_DATA_DIR"):
        return Path(os.environ["CNNLAB_DATA_DIR"]).expanduser(), "$CNNLAB_DATA_DIR"
    return None


def how_to_provide(expected: str, mirror: str) -> str:
    """The one way to say where files come from when they cannot be downloaded (offline machines)."""
    return (
        f"download {expected} from {mirror} on a machine with network, put them in a folder DIR and "
        "pass --data-dir DIR (data_dir=DIR in Python) or set CNNLAB_DATA_DIR=DIR"
    )


def fetch_files(
    dataset: str,
    files: Sequence[RemoteFile],
    mirrors: Sequence[str],
    folder: Path,
    *,
    expected: str,
    progress: bool = False,
    timeout: float = 30.0,
) -> None:
    """Download each of `files` into `folder`, trying the mirrors in order; every file is verified
    before it appears. The first file no mirror can serve stops everything with one CnnlabError that
    names every URL tried and says how to provide `expected` (the dataset's files, in words) by hand;
    folders created for the download are removed again if they are left empty."""
    try:
        with new_folders(folder):
            for remote in files:
                errors = []
                for mirror in mirrors:
                    try:
                        download_file(
                            mirror + remote.name,
                            folder / remote.name,
                            md5=remote.md5,
                            sha256=remote.sha256,
                            progress=progress,
                            timeout=timeout,
                        )
                        break
                    except CnnlabError as exc:
                        errors.append(str(exc).rstrip("."))
                else:
                    raise CnnlabError(
                        f"Could not download {dataset} ({'; '.join(errors)}). Offline? "
                        f"Then {how_to_provide(expected, mirrors[0])}."
                    )
    except OSError as exc:  # the cache folder itself cannot be made
        raise CnnlabError(
            f"Cannot create the cache folder '{folder}' ({exc.strerror or exc}); "
            f"{how_to_provide(expected, mirrors[0])}."
        ) from None


def _mismatch_error(path: Path, remote: RemoteFile, dataset: str, mirror: str, mismatch: str) -> CnnlabError:
    return CnnlabError(
        f"'{path}' does not match the official checksum for {dataset} ({mismatch}: another dataset's "
        f"file, or truncated?); replace it with {remote.name} from {mirror}."
    )


def read_checked(path: Path, remote: RemoteFile, *, dataset: str, mirror: str, max_bytes: int) -> bytes:
    """The bytes of `path` (a regular file of at most `max_bytes`), which must match `remote`'s checksums."""
    data = read_user_bytes(path, max_bytes=max_bytes, what=f"{dataset} file")
    mismatch = check_digest(data, md5=remote.md5, sha256=remote.sha256)
    if mismatch:
        raise _mismatch_error(path, remote, dataset, mirror, mismatch)
    return data


def check_file(path: Path, remote: RemoteFile, *, dataset: str, mirror: str, max_bytes: int) -> None:
    """Check a (large) file against `remote`'s checksums, reading it in chunks."""
    md5, sha256 = hashlib.md5(), hashlib.sha256()
    with open_user_file(path, max_bytes=max_bytes, what=f"{dataset} file") as f:
        while chunk := f.read(_CHUNK):
            md5.update(chunk)
            sha256.update(chunk)
    digests = {"md5": md5.hexdigest(), "sha256": sha256.hexdigest()}
    mismatch = check_digest(digests, md5=remote.md5, sha256=remote.sha256)
    if mismatch:
        raise _mismatch_error(path, remote, dataset, mirror, mismatch)
