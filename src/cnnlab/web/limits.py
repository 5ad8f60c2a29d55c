"""What the server accepts, and how it says no: the upload limits, a request-body cap and a concurrency
limiter, both plain ASGI middleware that answer with a JSON error before any work is done.

Limits (documented in the README and on /docs):
- request body: at most `MAX_BODY_BYTES` (8 MiB), checked on Content-Length and while reading -> 413;
  all of it within `BODY_SECONDS` of the request's start -> else 408 (a slow sender holds no worker);
- form: see `cnnlab.web.forms` (parts, fields, part headers, boundary) -> 400/413;
- image: PNG, JPEG, GIF, BMP or WebP, recognised by its first bytes (`ALLOWED_FORMATS`) -> else 415;
- image size: at most `MAX_PIXELS` (16 megapixels), read from the header before any pixel is decoded, so
  a decompression bomb (a small file claiming 30000x30000) costs nothing -> 422; at least `MIN_SIDE`
  (8) pixels on each side -> 422;
- work: at most `max_concurrent` requests computed at once (for /api/predict, whose forward passes are
  batched, as many as a batch holds: `cnnlab.web.batching`) and `max_waiting` queued for at most
  `wait_seconds`; beyond that, 503 with Retry-After at once, never an unbounded queue;
- time: parsing, decoding and the model together within `REQUEST_SECONDS` -> else 504
  (`cnnlab.web.compute`).
"""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path

from cnnlab.images import MIN_IMAGE_SIDE

MAX_BODY_BYTES = 8 * 1024 * 1024
BODY_SECONDS = 30.0
REQUEST_SECONDS = 30.0
CLOSE_SECONDS = 2.0  # on shutdown, how long running computations may take to finish
MAX_PIXELS = 16_000_000
MIN_SIDE = MIN_IMAGE_SIDE  # one minimum for every path: the CLI's image loaders enforce the same
ALLOWED_FORMATS = ("PNG", "JPEG", "GIF", "BMP", "WEBP")
ALLOWED_TYPES = ("image/png", "image/jpeg", "image/gif", "image/bmp", "image/webp", "image/x-ms-bmp")


def sniff_format(data: bytes) -> str | None:
    """The image format named by the file's first bytes, if it is one we accept.

    Example:
        >>> sniff_format(b"\\x89PNG\\r\\n\\x1a\\n...."), sniff_format(b"<html>")
        ('PNG', None)
    """
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "PNG"
    if data.startswith(b"\xff\xd8\xff"):
        return "JPEG"
    if data[:6] in (b"GIF87a", b"GIF89a"):
        return "GIF"
    if data.startswith(b"BM"):
        return "BMP"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WEBP"
    return None


# an absolute path of two or more parts (not "image/png", not a URL's path after a host name)
_ABSOLUTE = re.compile(r"(?<![\w.:/~-])/(?:[^\s'\"/,;()]+/)+[^\s'\",;()]*")


def public_message(message: str, root: Path) -> str:
    """``message`` with server paths hidden: under RUNS_DIR relative to it, anything else by its name."""
    for prefix in {str(root.resolve()), str(root.absolute()), str(root)}:
        if prefix not in (".", ""):
            message = message.replace(prefix.rstrip("/") + "/", "")
    return _ABSOLUTE.sub(lambda m: ".../" + m.group(0).rstrip("/").rsplit("/", 1)[-1], message)


async def send_error(send, status: int, message: str, headers: dict[str, str] | None = None) -> None:
    """Answer a request with ``{"error": message, "status": status}`` from ASGI middleware."""
    body = json.dumps({"error": message, "status": status}).encode()
    raw = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    raw += [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body})


class BodyLimit:
    """Read the whole request body (at most ``max_bytes``, within ``seconds``) before the app sees it: a
    too-large body is refused with 413 as soon as it is known to be too large, one that arrives too
    slowly with 408, and no handler ever waits on a slow upload."""

    def __init__(self, app, max_bytes: int = MAX_BODY_BYTES, seconds: float = BODY_SECONDS):
        self.app = app
        self.max_bytes = max_bytes
        self.seconds = seconds

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD", "OPTIONS"):
            return await self.app(scope, receive, send)
        limit = (
            f"the request body is over the limit of {self.max_bytes:,} bytes ({self.max_bytes // 2**20} MiB)"
        )
        headers = dict(scope.get("headers") or [])
        declared = headers.get(b"content-length")
        if declared is not None:
            if not declared.strip().isdigit():
                return await send_error(send, 400, "invalid Content-Length header")
            if int(declared) > self.max_bytes:
                return await send_error(send, 413, limit)
        body = bytearray()

        async def read() -> bool:  # False: the client went away
            while True:
                message = await receive()
                if message["type"] == "http.disconnect":
                    return False
                body.extend(message.get("body", b""))
                if len(body) > self.max_bytes or not message.get("more_body", False):
                    return True

        try:
            if not await asyncio.wait_for(read(), timeout=self.seconds):
                return None
        except asyncio.TimeoutError:
            return await send_error(
                send,
                408,
                f"the request body did not arrive within {self.seconds:g} s",
                {"Connection": "close"},
            )
        if len(body) > self.max_bytes:
            return await send_error(send, 413, limit)
        replayed = False

        async def replay():
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": bytes(body), "more_body": False}
            return await receive()

        return await self.app(scope, replay, send)


class Limiter:
    """At most ``max_concurrent`` requests to ``paths`` at once; up to ``max_waiting`` more wait at most
    ``wait_seconds`` for a slot; anything beyond gets 503 immediately."""

    def __init__(
        self,
        app,
        *,
        paths: tuple[str, ...],
        max_concurrent: int = 4,
        max_waiting: int = 32,
        wait_seconds: float = 5.0,
    ):
        self.app = app
        self.paths = paths
        self.max_concurrent = max_concurrent
        self.max_waiting = max_waiting
        self.wait_seconds = wait_seconds
        self._sem: asyncio.Semaphore | None = None
        self._waiting = 0
        self.active = 0
        self.rejected = 0

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or not scope["path"].startswith(self.paths):
            return await self.app(scope, receive, send)
        if self._sem is None:  # created inside the server's event loop
            self._sem = asyncio.Semaphore(self.max_concurrent)
        busy = {"Retry-After": "1"}
        if self._sem.locked() and self._waiting >= self.max_waiting:
            self.rejected += 1
            return await send_error(send, 503, "the server is at capacity; try again in a moment", busy)
        self._waiting += 1
        try:
            await asyncio.wait_for(self._sem.acquire(), timeout=self.wait_seconds)
        except asyncio.TimeoutError:
            self.rejected += 1
            return await send_error(send, 503, "the server is busy; try again in a moment", busy)
        finally:
            self._waiting -= 1
        self.active += 1
        try:
            return await self.app(scope, receive, send)
        finally:
            self.active -= 1
            self._sem.release()
