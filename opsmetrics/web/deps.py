"""Request helpers shared by routers: the services, auth by scope (with a limit on wrong
tokens per client address), bounded body reading."""

from __future__ import annotations

import logging
import math
from collections.abc import Awaitable, Callable
from typing import TypeVar

from fastapi import Request

from opsmetrics.auth import TokenFailureLimiter
from opsmetrics.errors import (
    AuthenticationError,
    PayloadTooLargeError,
    TooManyAttemptsError,
)
from opsmetrics.ingest.json_depth import check_json_depth
from opsmetrics.services import Services
from opsmetrics.storage.token_records import Scope, TokenRecord

log = logging.getLogger(__name__)
T = TypeVar("T")


def services(request: Request) -> Services:
    svc: Services = request.app.state.services
    return svc


def require(scope: Scope) -> Callable[[Request], Awaitable[None]]:
    """A dependency that checks the bearer token has `scope` (or admin)."""

    async def check(request: Request) -> None:
        check_token(request, request.headers.get("authorization"), scope)

    return check


def client_address(request: Request) -> str:
    return request.client.host if request.client else ""


def check_token(request: Request, authorization: str | None, scope: Scope) -> TokenRecord | None:
    """`TokenVerifier.check`, refused (429) for an address that sent too many wrong tokens."""
    tokens = services(request).tokens
    return limit_token_failures(request, authorization, lambda: tokens.check(authorization, scope))


def limit_token_failures(request: Request, presented: str | None, check: Callable[[], T]) -> T:
    """`check()` of the `presented` token, unless this client address has sent too many wrong
    ones (429); a wrong one is counted against the address and logged."""
    svc = services(request)
    limiter = _token_failures(request)
    address, now = client_address(request), svc.clock.now_ms()
    wait_s = limiter.wait_s(address, now)
    if wait_s:
        raise TooManyAttemptsError(
            f"too many wrong tokens from {address}: try again in {math.ceil(wait_s)} s with a "
            "valid token (OPSMETRICS_MAX_TOKEN_FAILURES_PER_MIN)",
            math.ceil(wait_s),
        )
    try:
        return check()
    except AuthenticationError:
        if presented:  # a token was presented and is wrong; a missing one guesses nothing
            blocked = limiter.failed(address, now)
            log.warning(
                "wrong bearer token from %s on %s %s%s",
                address,
                request.method,
                request.url.path,
                ": refusing that address for a while" if blocked else "",
            )
        raise


def _token_failures(request: Request) -> TokenFailureLimiter:
    limiter: TokenFailureLimiter | None = getattr(request.app.state, "token_failures", None)
    if limiter is None:
        per_min = services(request).settings.limits.max_token_failures_per_min
        limiter = request.app.state.token_failures = TokenFailureLimiter(per_min)
    return limiter


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, refusing (413) as soon as it passes `limit` bytes. (How long it may
    take to arrive is bounded for every route by web/bodies.py.)"""
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


async def read_json_body(request: Request, limit: int) -> bytes:
    """`read_body` for a JSON body, refused (400) when nested too deep to decode safely."""
    body = await read_body(request, limit)
    check_json_depth(body)
    return body


def _too_large(limit: int) -> PayloadTooLargeError:
    return PayloadTooLargeError(
        f"request body larger than {limit} bytes; send smaller batches or raise "
        "OPSMETRICS_MAX_BODY_BYTES"
    )
