"""What the server accepts, and how it says no: the upload limits, a request-body cap and a concurrency
limiter, both plain ASGI middleware that answer with a JSON error before any work is done.

Limits (documented in the README and on /docs):
- request body: at most `MAX_BODY_BYTES` (8 MiB), checked on Content-Length and while reading -> 413;
  all of it within `BODY_SECONDS` of the request's start -> else 408 (a slow sender holds no worker);
  announced by Content-Length: a chunked body is refused unread -> 411 (`cnnlab.web.protocol`);
- bodies held at once: every body's announced size is taken from one budget (`BODY_BUDGET_BYTES`) before
  a byte of it is read, and given back when its request is answered; a body the budget cannot take now
  -> 503 at once. The server's memory for request bodies is thus bounded whatever the number of
  connections: the budget (a handful of copies of each body while it is parsed), plus what uvicorn reads
  ahead per connection before it pauses (at most ~64 KiB + one 256 KiB read);
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
BODY_BUDGET_BYTES = 16 * MAX_BODY_BYTES  # request bodies held at once, all connections together
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


# an absolute path quoted as repr() quotes it (cnnlab's messages quote user paths so): spaces and the other
# quote character inside belong to the path
_QUOTED = re.compile("'(/[^'\\n]*/[^'\\n]*)'" + '|"(/[^"\\n]*/[^"\\n]*)"')


def _last_part(path: str) -> str:
    return ".../" + path.rstrip("/").rsplit("/", 1)[-1]


def public_message(message: str, root: Path) -> str:
    """``message`` with server paths hidden: under RUNS_DIR relative to it, anything else by its name
    (a quoted path whole, spaces and quotes in it included)."""
    for prefix in {str(root.resolve()), str(root.absolute()), str(root)}:
        if prefix not in (".", ""):
            message = message.replace(prefix.rstrip("/") + "/", "")
    message = _QUOTED.sub(lambda m: (q := m.group(0)[0]) + _last_part(m.group(1) or m.group(2)) + q, message)
    return _ABSOLUTE.sub(lambda m: _last_part(m.group(0)), message)


def is_chunked(headers) -> bool:
    """Whether a request's (bytes) headers announce a chunked body."""
    return any(k.lower() == b"transfer-encoding" and b"chunked" in v.lower() for k, v in headers)


async def send_error(send, status: int, message: str, headers: dict[str, str] | None = None) -> None:
    """Answer a request with ``{"error": message, "status": status}`` from ASGI middleware."""
    body = json.dumps({"error": message, "status": status}).encode()
    raw = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    raw += [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body})


class BodyBudget:
    """Bytes of request bodies held at once, across every connection: taken before a body is read, given
    back when its request has been answered. Event-loop only (no lock needed)."""

    def __init__(self, total: int = BODY_BUDGET_BYTES):
        self.total = total
        self.held = 0
        self.peak = 0
        self.refused = 0

    def take(self, n: int) -> bool:
        if self.held + n > self.total:
            self.refused += 1
            return False
        self.held += n
        self.peak = max(self.peak, self.held)
        return True

    def give(self, n: int) -> None:
        self.held -= n


class BodyLimit:
    """Read the whole request body (at most ``max_bytes``, within ``seconds``) before the app sees it: a
    too-large body is refused with 413 as soon as it is known to be too large, one that arrives too
    slowly with 408, a chunked one with 411 (unread), and no handler ever waits on a slow upload. The
    body's announced size is taken from ``budget`` before it is read (503 when the budget cannot take
    it) and given back when the request is answered."""

    def __init__(
        self,
        app,
        max_bytes: int = MAX_BODY_BYTES,
        seconds: float = BODY_SECONDS,
        budget: BodyBudget | None = None,
    ):
        self.app = app
        self.max_bytes = max_bytes
        self.seconds = seconds
        self.budget = budget if budget is not None else BodyBudget()

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = scope.get("headers") or []
        if is_chunked(headers):  # never parsed (see cnnlab.web.protocol): refused, the connection closed
            return await send_error(
                send,
                411,
                "chunked request bodies are not accepted; send the body with a Content-Length",
                {"Connection": "close"},
            )
        if scope["method"] in ("GET", "HEAD", "OPTIONS"):
            return await self.app(scope, receive, send)
        declared = dict(headers).get(b"content-length")
        if declared is not None:
            if not declared.strip().isdigit():
                return await send_error(send, 400, "invalid Content-Length header")
            if int(declared) > self.max_bytes:
                limit = f"{self.max_bytes:,} bytes ({self.max_bytes // 2**20} MiB)"
                return await send_error(send, 413, f"the request body is over the limit of {limit}")
        size = int(declared) if declared is not None else self.max_bytes
        if not self.budget.take(size):
            return await send_error(
                send,
                503,
                "the server is receiving as many uploads as it can hold; try again in a moment",
                {"Retry-After": "1", "Connection": "close"},
            )
        try:
            return await self._read_then_call(scope, receive, send)
        finally:
            self.budget.give(size)

    async def _read_then_call(self, scope, receive, send):
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
            limit = f"{self.max_bytes:,} bytes ({self.max_bytes // 2**20} MiB)"
            return await send_error(send, 413, f"the request body is over the limit of {limit}")
        whole = bytes(body)
        del body[:]  # one copy of the body is held, not two
        replayed = False

        async def replay():
            nonlocal replayed, whole
            if not replayed:
                replayed = True
                message = {"type": "http.request", "body": whole, "more_body": False}
                whole = b""
                return message
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
