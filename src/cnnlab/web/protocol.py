"""uvicorn's h11 HTTP protocol, with its one answer that never reaches the app in our JSON shape.

A request whose framing h11 cannot parse (a bad request line, a header over `MAX_HEAD_BYTES`, a broken
chunked body, a Content-Length that is not a number) is refused by uvicorn itself before any ASGI code
runs, as ``400 text/plain "Invalid HTTP request received."``. `JsonErrorsH11` sends the same 400 as
``{"error": ..., "status": 400}`` instead, so every answer the server gives has the documented shape.
Everything else is uvicorn's own (`uvicorn.protocols.http.h11_impl.H11Protocol`), passed as
``uvicorn.run(..., http=JsonErrorsH11)``, uvicorn's documented way to choose the protocol class.

Chunked request bodies are never parsed: h11 decodes a chunked body chunk by chunk in Python, on the event
loop (about 10 us a chunk: a body of 1-byte chunks is an attacker-priced stall), so the connection hands
over the request's head and then no more of its body (`_HeadOnlyForChunked`); the app answers such a
request 411 (send a Content-Length) and the connection is closed (`limits.BodyLimit`).

After its 400 the connection closes the way HTTP servers do when a client may still be sending (Apache's
and nginx's "lingering close"): the answer is sent and the sending side shut, then whatever still arrives
is read and dropped, for at most `LINGER_SECONDS` and `LINGER_BYTES`, before the socket closes. Closed at
once with unread bytes in its buffer, a socket is reset by the kernel, and the reset can overtake the 400
so that the client sees "connection reset" instead of the answer.
"""

from __future__ import annotations

import json

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

from cnnlab.web.limits import is_chunked

MAX_HEAD_BYTES = 16 * 1024  # the request line and headers together (h11's "incomplete event" limit)
LINGER_SECONDS = 2.0  # after a 400: how long what the client still sends is read and dropped
LINGER_BYTES = 1 << 20  # ... and how much of it, at most


class _HeadOnlyForChunked(h11.Connection):
    """h11's connection, except that after the head of a request with a chunked body it parses nothing
    more of that connection: the body's chunks are left unread until the answer (411) closes it."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.refusing = False

    def next_event(self):
        if self.refusing:
            return h11.NEED_DATA
        event = super().next_event()
        if isinstance(event, h11.Request) and is_chunked(event.headers):
            self.refusing = True
        return event

    def receive_data(self, data: bytes) -> None:
        if not self.refusing:  # what follows a refused head is dropped, not buffered
            super().receive_data(data)


class JsonErrorsH11(H11Protocol):
    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        old = self.conn
        self.conn = _HeadOnlyForChunked(h11.SERVER, old._max_incomplete_event_size)
        self.lingering: int | None = None  # after a 400: bytes dropped so far

    def data_received(self, data: bytes) -> None:
        if self.lingering is None:
            super().data_received(data)
            return
        self.lingering += len(data)
        if self.lingering > LINGER_BYTES:
            self.transport.close()

    def send_400_response(self, msg: str) -> None:
        body = json.dumps(
            {"error": "malformed HTTP request (the request line, headers or body framing)", "status": 400}
        ).encode()
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            (b"connection", b"close"),
        ]
        try:
            self.transport.write(self.conn.send(h11.Response(status_code=400, headers=headers)))
            self.transport.write(self.conn.send(h11.Data(data=body)))
            self.transport.write(self.conn.send(h11.EndOfMessage()))
        except h11.LocalProtocolError:  # a response had already begun: nothing more can be said
            pass
        self.linger()

    def linger(self) -> None:
        """Shut the sending side (the answer goes first), drop what still arrives, close within
        `LINGER_SECONDS` or once the client closes its side (the transport then closes itself)."""
        if not self.transport.can_write_eof() or self.transport.is_closing():
            self.transport.close()
            return
        self.lingering = 0
        self.transport.write_eof()
        self.transport.resume_reading()  # the flow control may have paused it on a full buffer
        self.loop.call_later(LINGER_SECONDS, self.transport.close)
