"""The one table from error class to HTTP status, and Prometheus's JSON error shape."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from opsmetrics import errors
from opsmetrics.query.promql.values import (
    QueryExecutionError,
    QueryLimitError,
    QueryTimeoutError,
)

log = logging.getLogger(__name__)

# Most specific first: the first class an error is an instance of decides its status.
STATUS: list[tuple[type[errors.OpsMetricsError], int]] = [
    (errors.AuthenticationError, 401),
    (errors.PermissionDeniedError, 403),
    (errors.NotFoundError, 404),
    (errors.RequestTimeoutError, 408),
    (errors.PayloadTooLargeError, 413),
    (errors.UnsupportedMediaTypeError, 415),
    (QueryLimitError, 422),  # Prometheus errorType "execution"
    (QueryExecutionError, 422),
    (QueryTimeoutError, 503),  # Prometheus errorType "timeout"
    (errors.TooManyAttemptsError, 429),
    (errors.UserError, 400),
    (errors.OverloadedError, 429),
    (errors.InsufficientStorageError, 507),  # the data directory's disk is full
    (errors.StorageUnavailableError, 503),
    (errors.InternalError, 500),
    (errors.OpsMetricsError, 500),
]


#: A full disk is not freed in a second: senders are asked to wait longer.
DISK_FULL_RETRY_AFTER_S = 10
#: OTLP/HTTP senders retry only 429, 502, 503 and 504 (and drop the data on any other code).
RETRY_ONLY_ON_503 = frozenset({"/v1/metrics"})


def status_for(exc: errors.OpsMetricsError, path: str = "") -> int:
    status = next(code for cls, code in STATUS if isinstance(exc, cls))
    return 503 if status == 507 and path in RETRY_ONLY_ON_503 else status


def error_response(status: int, error_type: str, message: str) -> JSONResponse:
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    if status in (429, 503):
        headers = {"Retry-After": "1"}
    if status == 507:
        headers = {"Retry-After": str(DISK_FULL_RETRY_AFTER_S)}
    return JSONResponse(
        {"status": "error", "errorType": error_type, "error": message},
        status_code=status,
        headers=headers,
    )


def install(app: FastAPI) -> None:
    @app.exception_handler(errors.OpsMetricsError)
    async def _ours(request: Request, exc: errors.OpsMetricsError) -> JSONResponse:
        status = status_for(exc, request.url.path)
        # A full disk is logged once by storage/diskspace.py, not with every refused request.
        if status >= 500 and not isinstance(exc, errors.InsufficientStorageError):
            log.error("%s %s: %s", request.method, request.url.path, exc.message)
        response = error_response(status, exc.error_type, exc.message)
        if isinstance(exc, errors.TooManyAttemptsError):
            response.headers["Retry-After"] = str(exc.retry_after_s)
        if status == 408:  # the rest of a slow body would keep the connection busy
            response.headers["Connection"] = "close"
        return response

    @app.exception_handler(RequestValidationError)
    async def _params(request: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first.get("loc", ()))
        return error_response(400, "bad_data", f"{where}: {first.get('msg', 'invalid')}")

    @app.exception_handler(HTTPException)
    async def _http(request: Request, exc: HTTPException) -> JSONResponse:
        kind = "not_found" if exc.status_code == 404 else "bad_data"
        return error_response(exc.status_code, kind, str(exc.detail))
