"""Backpressure on the ingest endpoints: admission before the body is read, 429 beyond it.

`guard(endpoint)` wraps an ingest handler: the request takes one of its endpoint's slots and
holds its body bytes (ingest/admission.py) until the handler has its answer. The handler gets
a request whose body is counted as it arrives, so a body without `Content-Length` is refused
mid-way once it passes the byte budget. Every refusal for load (the admission's, or the write
queue's) is answered here as 429 with `Retry-After` computed from the writer's backlog, and
counted by endpoint and reason; OTLP senders get the google.rpc.Status body the OTLP/HTTP
specification asks for.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TypeVar

from fastapi import Request, Response
from starlette.types import Message, Receive

from opsmetrics.errors import OverloadedError
from opsmetrics.ingest.admission import IngestAdmission, Ticket
from opsmetrics.ingest.otlp_response import RESOURCE_EXHAUSTED, encode_otlp_status
from opsmetrics.web.deps import services
from opsmetrics.web.errors import error_response

R = TypeVar("R", bound=Response)
Handler = Callable[[Request], Awaitable[R]]
Answer = Callable[[Request, OverloadedError, int], Response]


def json_answer(request: Request, exc: OverloadedError, retry_after_s: int) -> Response:
    """The API's JSON error shape."""
    response = error_response(429, exc.error_type, exc.message)
    response.headers["Retry-After"] = str(retry_after_s)
    return response


def otlp_answer(request: Request, exc: OverloadedError, retry_after_s: int) -> Response:
    """A google.rpc.Status, encoded like the request (protobuf or JSON), as OTLP/HTTP asks."""
    ctype = request.headers.get("content-type")
    payload, media_type = encode_otlp_status(ctype, RESOURCE_EXHAUSTED, exc.message)
    headers = {"Retry-After": str(retry_after_s)}
    return Response(payload, status_code=429, media_type=media_type, headers=headers)


def guard(
    endpoint: str, answer: Answer = json_answer
) -> Callable[[Handler[R]], Callable[[Request], Awaitable[Response]]]:
    """Run the handler only inside its endpoint's admission; overload becomes `answer`."""

    def wrap(handler: Handler[R]) -> Callable[[Request], Awaitable[Response]]:
        @functools.wraps(handler)
        async def guarded(request: Request) -> Response:
            try:
                async with admitted(request, endpoint) as counted:
                    return await handler(counted)
            except OverloadedError as exc:
                return overloaded(request, endpoint, exc, answer)

        return guarded

    return wrap


def overloaded(request: Request, endpoint: str, exc: OverloadedError, answer: Answer) -> Response:
    admission = _admission(request)
    admission.count_throttled(endpoint, exc.reason)
    retry_after_s = getattr(exc, "retry_after_s", None) or admission.retry_after_s()
    return answer(request, exc, retry_after_s)


@contextlib.asynccontextmanager
async def admitted(request: Request, endpoint: str) -> AsyncIterator[Request]:
    """The request, admitted and with its body counted; released however the handler ends."""
    admission = _admission(request)
    ticket = admission.enter(endpoint, _declared_bytes(request))
    try:
        yield Request(request.scope, _counting(request.receive, admission, ticket))
    finally:
        admission.release(ticket)


def _admission(request: Request) -> IngestAdmission:
    return services(request).ingestor.admission


def _declared_bytes(request: Request) -> int:
    """Content-Length, when it is one the body reader will accept (else it answers 413)."""
    declared = request.headers.get("content-length") or ""
    limit = services(request).settings.limits.max_body_bytes
    return int(declared) if declared.isdigit() and int(declared) <= limit else 0


def _counting(receive: Receive, admission: IngestAdmission, ticket: Ticket) -> Receive:
    async def counted() -> Message:
        message = await receive()
        if message["type"] == "http.request":
            admission.received(ticket, len(message.get("body", b"")))
        return message

    return counted
