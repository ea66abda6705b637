"""The one error tree. Services raise these; web/errors.py and cli/ translate them in one place.

A message says what is wrong, where, and how to fix it.
"""

from __future__ import annotations


class OpsMetricsError(Exception):
    """Base of every error opsmetrics raises on purpose."""

    #: Prometheus API errorType for the JSON error body.
    error_type = "internal"
    #: Short machine-readable cause, used as the `reason` label of reject counters.
    reason = "error"

    def __init__(self, message: str, *, reason: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if reason is not None:
            self.reason = reason


class UserError(OpsMetricsError):
    """Bad input: the caller can fix it. Maps to 4xx; retrying the same request will not help."""

    error_type = "bad_data"
    reason = "bad_data"


class BadDataError(UserError):
    """A request body or parameter that cannot be decoded or is invalid."""


class LimitExceededError(UserError):
    """A configured limit (labels per series, series per metric, samples per request…)."""

    reason = "limit"


class ConflictingSampleError(UserError):
    """A sample for an existing (series, timestamp) with a different value."""

    reason = "duplicate_timestamp"


class OutOfBoundsError(UserError):
    """A timestamp too far in the future, or older than the late-data window."""

    reason = "out_of_bounds"


class PayloadTooLargeError(UserError):
    reason = "too_large"


class UnsupportedMediaTypeError(UserError):
    reason = "unsupported_media_type"


class RequestTimeoutError(UserError):
    """The client sent its request too slowly (408); the connection is closed."""

    reason = "timeout"


class TooManyAttemptsError(UserError):
    """Too many failed attempts (wrong tokens) from one client address (429)."""

    error_type = "rate_limited"
    reason = "rate_limited"

    def __init__(self, message: str, retry_after_s: int) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class NotFoundError(UserError):
    error_type = "not_found"
    reason = "not_found"


class AuthenticationError(UserError):
    error_type = "unauthorized"
    reason = "unauthorized"


class PermissionDeniedError(UserError):
    error_type = "forbidden"
    reason = "forbidden"


class ConfigError(UserError):
    """A definition file problem; the message starts with `file:line: field:`."""

    reason = "config"


class InternalError(OpsMetricsError):
    """Our fault or the environment's. Maps to 5xx; the client may retry."""


class OverloadedError(InternalError):
    """The write queue is full; the client should back off and retry (429)."""

    error_type = "unavailable"
    reason = "overloaded"


class StorageUnavailableError(InternalError):
    error_type = "unavailable"
    reason = "storage_unavailable"


class InsufficientStorageError(StorageUnavailableError):
    """The data directory's filesystem is full (or below its reserve): nothing was written,
    and writes resume by themselves once space is freed (507 with Retry-After)."""

    reason = "disk_full"


class CorruptDataError(InternalError):
    """The data directory is damaged; we refuse to start rather than serve wrong data."""

    reason = "corrupt"
