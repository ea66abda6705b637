"""The browser SDK: its built files, and the events endpoint that web pages send to with a
publishable key (CORS for the key's origins, a rate per key and client address).

The key comes in the query string (`?key=`), because `navigator.sendBeacon` cannot set
headers; a bearer header works too. Events go through the same handler as
`POST /api/v1/events`, so they are validated with the same limits and messages.
"""

from __future__ import annotations

import functools
import math
from pathlib import Path

from fastapi import APIRouter, Request, Response

from opsmetrics.auth import KeyRateLimiter, check_origin
from opsmetrics.errors import OpsMetricsError, TooManyAttemptsError
from opsmetrics.storage.token_records import TokenRecord
from opsmetrics.web.backpressure import guard
from opsmetrics.web.deps import limit_token_failures, services
from opsmetrics.web.errors import error_response, status_for
from opsmetrics.web.routers import ingest

router = APIRouter(tags=["sdk"])
SDK_DIR = Path(__file__).resolve().parent.parent / "sdk"
EVENTS_PATH = "/api/v1/sdk/events"
_FILES = {"opsmetrics.js": "text/javascript", "opsmetrics.mjs": "text/javascript"}
#: How long a browser may reuse a preflight answer, in seconds.
PREFLIGHT_MAX_AGE_S = 600
#: The events handler of POST /api/v1/events, with the SDK endpoint's own admission slots.
_accept_events = guard("sdk_events")(ingest.accept_events)


@functools.cache
def sdk_file(name: str) -> bytes:
    return (SDK_DIR / name).read_bytes()


@router.get("/sdk/{name}", summary="The browser SDK (opsmetrics.js script, opsmetrics.mjs module)")
async def sdk(name: str) -> Response:
    if name not in _FILES:
        return error_response(404, "not_found", f"no SDK file {name!r}; try /sdk/opsmetrics.js")
    headers = {
        "Cache-Control": "public, max-age=300",
        # An ES module imported by a page on another origin is fetched with CORS.
        "Access-Control-Allow-Origin": "*",
    }
    return Response(sdk_file(name), media_type=_FILES[name], headers=headers)


def _limiter(request: Request) -> KeyRateLimiter:
    limiter: KeyRateLimiter | None = getattr(request.app.state, "sdk_limiter", None)
    if limiter is None:
        limiter = request.app.state.sdk_limiter = KeyRateLimiter()
    return limiter


def _presented_key(request: Request) -> str | None:
    key = request.query_params.get("key")
    auth = request.headers.get("authorization") or ""
    if not key and auth.lower().startswith("bearer "):
        key = auth[7:]
    return key


def _cors(response: Response, origin: str) -> Response:
    response.headers["Access-Control-Allow-Origin"] = origin
    response.headers["Access-Control-Expose-Headers"] = "Retry-After"
    response.headers["Vary"] = "Origin"
    return response


@router.options(EVENTS_PATH, include_in_schema=False)
async def preflight(request: Request) -> Response:
    """Allowed only for the origins of the key in the URL (or of any key, without one)."""
    svc = services(request)
    origin = request.headers.get("origin")
    key: TokenRecord | None = None
    try:
        if request.query_params.get("key"):
            key = svc.tokens.publishable(request.query_params["key"])
    except OpsMetricsError as exc:
        return error_response(status_for(exc), exc.error_type, exc.message)
    if origin is None or not svc.tokens.origin_allowed(origin, key):
        return error_response(403, "forbidden", f"origin {origin!r} may not send events here")
    response = Response(status_code=204)
    response.headers["Access-Control-Allow-Methods"] = "POST"
    response.headers["Access-Control-Allow-Headers"] = "Content-Type, Authorization"
    response.headers["Access-Control-Max-Age"] = str(PREFLIGHT_MAX_AGE_S)
    return _cors(response, origin)


@router.post(EVENTS_PATH, summary="Events from web pages, with a publishable key")
async def sdk_events(request: Request) -> Response:
    svc = services(request)
    origin = request.headers.get("origin")
    presented = _presented_key(request)
    try:
        # Counted like wrong bearer tokens: this route tells a valid token of another scope
        # from an unknown one, so it must not be a way to guess tokens faster.
        key = limit_token_failures(request, presented, lambda: svc.tokens.publishable(presented))
        check_origin(origin, key)
    except OpsMetricsError as exc:
        svc.telemetry.rejected.labels(exc.reason).inc()
        refused = error_response(status_for(exc), exc.error_type, exc.message)
        if isinstance(exc, TooManyAttemptsError):
            refused.headers["Retry-After"] = str(exc.retry_after_s)
        return refused
    assert origin is not None  # check_origin refuses a request without one
    address = request.client.host if request.client else ""
    wait_s = _limiter(request).take(key, address, svc.clock.now_ms())
    if wait_s:
        svc.telemetry.rejected.labels("rate_limited").inc()
        return _cors(_rate_limited(key, wait_s), origin)
    try:
        response = await _accept_events(request)
    except OpsMetricsError as exc:
        # Answered here rather than by the app's handler, so the page can read the status
        # (and Retry-After): without CORS headers the browser hides the answer.
        response = error_response(status_for(exc), exc.error_type, exc.message)
    return _cors(response, origin)


def _rate_limited(key: TokenRecord, wait_s: float) -> Response:
    response = error_response(
        429,
        "rate_limited",
        f"publishable key {key.id!r} allows {key.rate_per_min} requests per minute from one "
        "address; send bigger batches less often, or create a key with a higher --rate",
    )
    response.headers["Retry-After"] = str(max(1, math.ceil(wait_s)))
    return response
