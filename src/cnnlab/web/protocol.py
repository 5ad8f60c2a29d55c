"""uvicorn's h11 HTTP protocol, with its one answer that never reaches the app in our JSON shape.

A request whose framing h11 cannot parse (a bad request line, a header over `MAX_HEAD_BYTES`, a broken
chunked body, a Content-Length that is not a number) is refused by uvicorn itself before any ASGI code
runs, as ``400 text/plain "Invalid HTTP request received."``. `JsonErrorsH11` sends the same 400 as
``{"error": ..., "status": 400}`` instead, so every answer the server gives has the documented shape.
Everything else is uvicorn's own (`uvicorn.protocols.http.h11_impl.H11Protocol`), passed as
``uvicorn.run(..., http=JsonErrorsH11)``, uvicorn's documented way to choose the protocol class.
"""

from __future__ import annotations

import json

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

MAX_HEAD_BYTES = 16 * 1024  # the request line and headers together (h11's "incomplete event" limit)


class JsonErrorsH11(H11Protocol):
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
