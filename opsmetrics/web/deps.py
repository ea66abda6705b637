"""Request helpers shared by routers: the services, auth by scope, bounded body reading."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from fastapi import Request

from opsmetrics.errors import PayloadTooLargeError
from opsmetrics.services import Services
from opsmetrics.storage.token_records import Scope


def services(request: Request) -> Services:
    svc: Services = request.app.state.services
    return svc


def require(scope: Scope) -> Callable[[Request], Awaitable[None]]:
    """A dependency that checks the bearer token has `scope` (or admin)."""

    async def check(request: Request) -> None:
        services(request).tokens.check(request.headers.get("authorization"), scope)

    return check


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, refusing (413) as soon as it passes `limit` bytes."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise _too_large(limit)
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise _too_large(limit)
        chunks.append(chunk)
    return b"".join(chunks)


def _too_large(limit: int) -> PayloadTooLargeError:
    return PayloadTooLargeError(
        f"request body larger than {limit} bytes; send smaller batches or raise "
        "OPSMETRICS_MAX_BODY_BYTES"
    )
