"""Download a file over HTTP(S) with a checksum, atomically: a file at `dest` is always complete and verified.

Only the standard library's urllib, so downloading adds no dependency; the file is streamed through
`cnnlab.atomic.atomic_path`, the one atomic writer.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import urllib.error
import urllib.request
from collections.abc import Iterable
from pathlib import Path

from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)

from cnnlab.atomic import atomic_path
from cnnlab.errors import CnnlabError

__all__ = ["check_digest", "download_file"]

_CHUNK = 1 << 20  # 1 MiB: few syscalls, small memory


def check_digest(data: bytes | dict[str, str], *, md5: str | None, sha256: str | None) -> str | None:
    """Describe the first mismatch between `data` and the expected checksums, or return None if all match.

    `data` is either the bytes themselves (only the digests that are expected get computed) or a dict of
    already computed hex digests keyed `"md5"` / `"sha256"`.
    """
    for algo, want in (("sha256", sha256), ("md5", md5)):
        if want is None:
            continue
        got = data[algo] if isinstance(data, dict) else hashlib.new(algo, data).hexdigest()
        if got != want.lower():
            return f"{algo} {got} != expected {want.lower()}"
    return None


def download_file(
    url: str,
    dest: str | os.PathLike[str],
    *,
    md5: str | None = None,
    sha256: str | None = None,
    timeout: float = 30.0,
    progress: bool = False,
) -> Path:
    """Download `url` to `dest`, verifying its checksum before the file appears.

    The body streams to a temp file beside `dest` (`cnnlab.atomic.atomic_path`), the md5/sha256 are
    computed on the way, and only a verified file is renamed onto `dest`. On any failure (HTTP error,
    connection cut, wrong length, checksum mismatch, Ctrl-C) the temp file is deleted and `CnnlabError`
    names the URL. Folders above `dest` are created.

    Args:
        url: `http://`, `https://` or `file://` address.
        dest: where the file ends up.
        md5: expected md5 hex digest, or None.
        sha256: expected sha256 hex digest, or None (both are checked when both are given).
        timeout: seconds to wait for the server on connect and on each read.
        progress: show a rich progress bar on stderr.

    Returns:
        `dest` as a `Path`.

    Example:
        >>> download_file(
        ...     "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/t10k-labels-idx1-ubyte.gz",
        ...     Path("data/t10k-labels-idx1-ubyte.gz"),
        ...     md5="bb300cfdad3c16e7a12a480ee83cd310",
        ... )  # doctest: +SKIP
        PosixPath('data/t10k-labels-idx1-ubyte.gz')
    """
    dest = Path(dest)
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise CnnlabError(f"Cannot create folder '{dest.parent}' for {url}: {exc.strerror or exc}.") from None
    with atomic_path(dest) as part:
        digests = _fetch(url, part, label=dest.name, timeout=timeout, progress=progress)
        mismatch = check_digest(digests, md5=md5, sha256=sha256)
        if mismatch:  # raised inside the block: the temp file goes, `dest` stays as it was
            raise CnnlabError(
                f"Download of {url} does not match its checksum ({mismatch}); the mirror sent a different "
                "or damaged file, nothing was saved."
            )
    return dest


def _fetch(url: str, part: Path, *, label: str, timeout: float, progress: bool) -> dict[str, str]:
    """Stream `url` into `part`; return its digests. Raises CnnlabError naming the URL."""
    md5, sha256 = hashlib.md5(), hashlib.sha256()
    received = 0
    try:
        request = urllib.request.Request(url, headers={"User-Agent": "cnnlab"})
        with urllib.request.urlopen(request, timeout=timeout) as response, part.open("wb") as out:
            length = response.headers.get("Content-Length")
            total = int(length) if length and length.isdigit() else None
            for chunk in _with_progress(_chunks(response), total, label, progress):
                out.write(chunk)
                md5.update(chunk)
                sha256.update(chunk)
                received += len(chunk)
    except urllib.error.HTTPError as exc:
        raise CnnlabError(f"Download of {url} failed: HTTP {exc.code} {exc.reason}.") from None
    except urllib.error.URLError as exc:
        raise CnnlabError(f"Download of {url} failed: {exc.reason}.") from None
    except (OSError, http.client.HTTPException, ValueError) as exc:
        # OSError: timeouts, resets, disk full; HTTPException: IncompleteRead, bad status line;
        # ValueError: a malformed URL.
        reason = str(exc) or type(exc).__name__
        raise CnnlabError(f"Download of {url} failed after {received:,} bytes: {reason}.") from None
    if total is not None and received != total:
        # urllib does not always notice a connection closed early; the announced length does.
        raise CnnlabError(
            f"Download of {url} was cut off: received {received:,} of {total:,} bytes; nothing was saved."
        )
    return {"md5": md5.hexdigest(), "sha256": sha256.hexdigest()}


def _chunks(response: http.client.HTTPResponse) -> Iterable[bytes]:
    while chunk := response.read(_CHUNK):
        yield chunk


def _with_progress(chunks: Iterable[bytes], total: int | None, label: str, show: bool) -> Iterable[bytes]:
    if not show:
        yield from chunks
        return
    # Imported here so that plain downloads (and tests) do not pay for rich.
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=Console(stderr=True), transient=True) as bar:
        task = bar.add_task(label, total=total)
        for chunk in chunks:
            bar.update(task, advance=len(chunk))
            yield chunk
