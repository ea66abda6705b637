"""uvicorn's HTTP/1.1 protocol with a deadline for request headers.

uvicorn closes a connection that stays idle after a response (`timeout_keep_alive`), but a
new connection, or a request whose headers arrive a byte at a time, is held for as long as
the client likes: enough such clients (slowloris) hold every socket the process may open.
Here each request's headers must be complete within the header read timeout of the
connection being opened or of the request's first byte; else the client gets 408 and the
connection is closed. The body has its own deadline, in the body reader (web/deps.py).
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

_408 = (
    b"HTTP/1.1 408 Request Timeout\r\n"
    b"content-type: text/plain; charset=utf-8\r\n"
    b"content-length: %d\r\n"
    b"connection: close\r\n\r\n%s"
)


def header_deadline_protocol(timeout_s: float) -> type[asyncio.Protocol]:
    """The protocol class to give uvicorn.Config(http=...): headers within `timeout_s`."""

    class Protocol(HeaderDeadlineProtocol):
        header_timeout_s = timeout_s

    return Protocol


class HeaderDeadlineProtocol(HttpToolsProtocol):
    header_timeout_s = 10.0
    _header_deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: Any) -> None:
        super().connection_made(transport)
        self._arm()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        if self._header_deadline is None:  # a new connection's deadline runs from its opening
            self._arm()

    def on_headers_complete(self) -> None:
        self._disarm()
        super().on_headers_complete()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _arm(self) -> None:
        self._disarm()
        self._header_deadline = self.loop.call_later(self.header_timeout_s, self._expired)

    def _disarm(self) -> None:
        if self._header_deadline is not None:
            self._header_deadline.cancel()
            self._header_deadline = None

    def _expired(self) -> None:
        self._header_deadline = None
        if self.transport.is_closing():
            return
        if self.cycle is None or self.cycle.response_complete:
            message = f"request headers did not arrive within {self.header_timeout_s:g} s\n"
            self.transport.write(_408 % (len(message), message.encode()))
        self.transport.close()
