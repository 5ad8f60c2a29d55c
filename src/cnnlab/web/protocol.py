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
"""

from __future__ import annotations

import json

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

from cnnlab.web.limits import is_chunked

MAX_HEAD_BYTES = 16 * 1024  # the request line and headers together (h11's "incomplete event" limit)


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
        self.transport.close()
