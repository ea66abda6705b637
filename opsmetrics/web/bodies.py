"""A deadline for request bodies, on every route: a body must have arrived in full within the
body read timeout of the request's start, else the handler reading it gets 408 and the
connection is closed.

A client that sends its headers and then trickles the body (slowloris) would otherwise hold
its connection, its handler and the memory read so far for as long as it likes: uvicorn's
keep-alive timeout only covers the time between requests. It is a middleware rather than a
step of one body reader because bodies are read in several ways (the routers' `read_body`,
form parameters of the query API, `request.body()`); the header deadline is in
cli/http_protocol.py.
"""

from __future__ import annotations

import asyncio

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from opsmetrics.errors import RequestTimeoutError


class BodyDeadlineMiddleware:
    def __init__(self, app: ASGIApp, timeout_s: float) -> None:
        self.app = app
        self.timeout_s = timeout_s

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        await self.app(scope, self._bounded(receive), send)

    def _bounded(self, receive: Receive) -> Receive:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.timeout_s
        body_done = False

        async def bounded_receive() -> Message:
            nonlocal body_done
            if body_done:  # after the body only a disconnect can come: no deadline
                return await receive()
            try:
                async with asyncio.timeout_at(deadline):
                    message = await receive()
            except TimeoutError:
                raise RequestTimeoutError(
                    f"the request body did not arrive within {self.timeout_s:g} s; send it at "
                    "once (or raise OPSMETRICS_BODY_READ_TIMEOUT for a slow link)"
                ) from None
            body_done = message["type"] != "http.request" or not message.get("more_body")
            return message

        return bounded_receive
