"""Opening files a user names: the one helper every user-supplied path goes through.

A path from a user (an image to predict, a CSV row, a file in a class folder, an IDX or CIFAR file, a
kernel file, a run's config.json) may be anything: `/dev/zero` (endless), a FIFO (a read blocks
forever), a socket, a folder, a symlink to any of these, a 300 MB "config", or a small gzip file that
expands to gigabytes. Here:

- only regular files are opened, judged after following symlinks, by `stat` before opening and again by
  `fstat` on the open descriptor (opened with `O_NONBLOCK`, so even a FIFO swapped in between cannot
  block); anything else is one `UserFileError` line naming the path and what it is;
- the size is checked on the open file against `max_bytes`, and the returned file never reads past
  `max_bytes` (a file that grows, or a /proc file that reports size 0, is refused when it passes it);
- `limit_output` caps what a decompressor may produce, so a gzip or tar bomb is refused after
  `max_bytes` of output, in bounded memory and time.

Infrastructure: imports nothing from cnnlab but its errors.

Example:
    >>> try:
    ...     read_user_bytes("/dev/zero", max_bytes=1024, what="image")
    ... except UserFileError as exc:
    ...     print(exc)
    cannot read image '/dev/zero': it is a character device, not a regular file
"""

from __future__ import annotations

import io
import os
import stat
from typing import BinaryIO

from cnnlab.errors import CnnlabError, NotFoundError, shortened

__all__ = [
    "UserFileError",
    "check_user_file",
    "format_size",
    "limit_output",
    "open_user_file",
    "read_user_bytes",
    "read_user_text",
]

_CHUNK = 1 << 20


class UserFileError(CnnlabError):
    """A user's path that cannot be read: `path` and `reason` are kept apart, so a caller can name the
    file its own way (a server names no absolute path to its clients)."""

    def __init__(self, path: str | os.PathLike[str], reason: str, *, what: str = "file") -> None:
        self.path, self.reason, self.what = os.fspath(path), reason, what
        super().__init__(f"cannot read {what} {shortened(self.path)!r}: {reason}")


class UserFileNotFound(UserFileError, NotFoundError):
    """The path does not exist (HTTP 404)."""


def is_text(value: str) -> bool:
    """Whether ``value`` can be written as UTF-8 (a file name of undecodable bytes holds surrogates)."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def printable(value: object) -> str:
    """``str(value)`` made safe for JSON and terminals: undecodable bytes shown as ``\\xNN``."""
    text = str(value)
    return (
        text if is_text(text) else text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    )


def format_size(n: int) -> str:
    """Bytes for a message: `512 bytes`, `1.5 KiB`, `64 MiB`, `1 GiB`."""
    for unit, scale in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= scale:
            return f"{n / scale:.3g} {unit}"
    return f"{n:,} bytes"


def _kind(mode: int) -> str:
    kinds = (
        (stat.S_ISDIR, "a folder"),
        (stat.S_ISFIFO, "a FIFO (named pipe)"),
        (stat.S_ISSOCK, "a socket"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
    )
    return next((name for test, name in kinds if test(mode)), "an unknown kind of file")


def _not_regular(path: str, mode: int, what: str) -> UserFileError:
    link = f"a link to {shortened(os.path.realpath(path))!r}, which is " if os.path.islink(path) else ""
    return UserFileError(path, f"it is {link}{_kind(mode)}, not a regular file", what=what)


def _os_error(path: str, exc: OSError, what: str) -> UserFileError:
    if isinstance(exc, (FileNotFoundError, NotADirectoryError)):
        return UserFileNotFound(path, "no such file", what=what)
    if isinstance(exc, PermissionError):
        return UserFileError(path, "permission denied", what=what)
    return UserFileError(path, exc.strerror or str(exc), what=what)


def check_user_file(path: str | os.PathLike[str], *, what: str = "file") -> os.stat_result:
    """`stat` a user's path (following symlinks) without opening it; refuse anything but a regular file.

    For listing (a class folder, a CSV's rows): a FIFO or device is named as such, never opened.
    """
    p = os.fspath(path)
    try:
        info = os.stat(p)
    except (OSError, ValueError) as exc:  # ValueError: a NUL byte in the name
        if isinstance(exc, ValueError):
            raise UserFileError(p, "the name holds a NUL character", what=what) from None
        raise _os_error(p, exc, what) from None
    if not stat.S_ISREG(info.st_mode):
        raise _not_regular(p, info.st_mode, what)
    return info


class _Capped(io.RawIOBase):
    """A read-only file that refuses to read past `limit` bytes (it raises if there is more)."""

    def __init__(self, raw: io.FileIO, limit: int, path: str, what: str) -> None:
        self._raw, self._limit, self._path, self._what = raw, limit, path, what

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return self._raw.seekable()

    def seek(self, offset: int, whence: int = 0) -> int:
        return self._raw.seek(offset, whence)

    def tell(self) -> int:
        return self._raw.tell()

    def fileno(self) -> int:
        return self._raw.fileno()

    def close(self) -> None:
        self._raw.close()
        super().close()

    def readinto(self, buffer) -> int:
        room = self._limit - self._raw.tell()
        if room <= 0:
            if self._raw.read(1):  # the file grew past what fstat said, or never told (procfs)
                raise UserFileError(
                    self._path, f"it is over the {format_size(self._limit)} limit", what=self._what
                )
            return 0
        view = memoryview(buffer)
        return self._raw.readinto(view[:room] if len(view) > room else view) or 0


def open_user_file(path: str | os.PathLike[str], *, max_bytes: int, what: str = "file") -> BinaryIO:
    """Open a user's file for reading in binary: a regular file (after following symlinks) of at most
    `max_bytes`, checked without blocking; the returned file never reads past `max_bytes`.

    Args:
        path: the user's path.
        max_bytes: the largest file accepted (checked with fstat on the open file, and on every read).
        what: how messages name the file: "image", "CSV", "kernel file", "config.json", ...

    Raises:
        UserFileError: one line naming the path and why (`UserFileNotFound` if it does not exist).
    """
    p = os.fspath(path)
    check_user_file(p, what=what)  # before opening: opening a FIFO for reading would block
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0) | os.O_CLOEXEC
    try:
        fd = os.open(p, flags)
    except OSError as exc:
        raise _os_error(p, exc, what) from None
    try:
        info = os.fstat(fd)  # what was opened, not what the name pointed to a moment ago
        if not stat.S_ISREG(info.st_mode):
            raise _not_regular(p, info.st_mode, what)
        if info.st_size > max_bytes:
            raise UserFileError(
                p,
                f"it is {format_size(info.st_size)}, over the {format_size(max_bytes)} limit for a {what}",
                what=what,
            )
        raw = io.FileIO(fd, "rb", closefd=True)
    except BaseException:
        os.close(fd)
        raise
    return io.BufferedReader(_Capped(raw, max_bytes, p, what))


def read_user_bytes(path: str | os.PathLike[str], *, max_bytes: int, what: str = "file") -> bytes:
    """The bytes of a user's file (see `open_user_file`), read in bounded steps."""
    with open_user_file(path, max_bytes=max_bytes, what=what) as f:
        size = os.fstat(f.fileno()).st_size
        data = f.read(size) if size else b""  # exactly the announced size: no over-allocation
        extra = bytearray()
        while chunk := f.read(_CHUNK):  # more than announced (procfs, a growing file), up to the cap
            extra += chunk
    return data + bytes(extra) if extra else data


def read_user_text(
    path: str | os.PathLike[str], *, max_bytes: int, what: str = "file", encoding: str = "utf-8"
) -> str:
    """The text of a user's file (see `open_user_file`); undecodable bytes are one clear error."""
    data = read_user_bytes(path, max_bytes=max_bytes, what=what)
    try:
        return data.decode(encoding)
    except UnicodeDecodeError as exc:
        raise UserFileError(path, f"it is not {encoding} text (byte {exc.start})", what=what) from None


class _OutputCap(io.RawIOBase):
    def __init__(self, stream, max_bytes: int, error: CnnlabError) -> None:
        self._stream, self._left, self._error = stream, max_bytes, error

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        n = self._stream.readinto(buffer)  # a decompressor produces at most len(buffer) per call
        self._left -= n
        if self._left < 0:
            raise self._error
        return n


def limit_output(stream, *, max_bytes: int, error: CnnlabError) -> BinaryIO:
    """Wrap a decompressing reader (`gzip.GzipFile`, ...) so that producing more than `max_bytes` raises
    `error`: decompression bombs cost at most `max_bytes` of work, in bounded memory."""
    return io.BufferedReader(_OutputCap(stream, max_bytes, error), buffer_size=_CHUNK)
