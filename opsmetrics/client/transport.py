"""HTTP to the opsmetrics API with retries: 429, 5xx and connection errors are retried with
exponential backoff and full jitter (or the server's Retry-After); other 4xx are not."""

from __future__ import annotations

import logging
import random
import threading
from collections.abc import Callable
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Any

import httpx
import msgspec

from opsmetrics.errors import InternalError, UserError

log = logging.getLogger(__name__)
DEFAULT_URL = "http://127.0.0.1:8800"


class RejectedError(UserError):
    """The server refused the request (a 4xx other than 429): retrying would not help."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message, reason=f"http_{status}")
        self.status = status


class DeliveryError(InternalError):
    """The request could not be delivered: the server was unreachable or kept failing."""


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    max_retries: int = 8
    backoff: float = 0.2
    max_backoff: float = 30.0

    def delay(self, attempt: int, retry_after: float | None) -> float:
        if retry_after is not None:
            return min(retry_after, self.max_backoff)
        return random.uniform(0, min(self.max_backoff, self.backoff * 2**attempt))


@dataclass(frozen=True, slots=True)
class _Failure:
    message: str
    retry_after: float | None = None


class Transport:
    """A thin, thread-safe httpx client for one server. `stop` aborts waits between retries."""

    def __init__(
        self,
        url: str,
        token: str | None = None,
        *,
        timeout: float = 10.0,
        policy: RetryPolicy | None = None,
    ) -> None:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.url = url.rstrip("/")
        self.policy = policy or RetryPolicy()
        self.stop = threading.Event()
        self._http = httpx.Client(base_url=self.url, headers=headers, timeout=timeout)

    def post(self, path: str, content: bytes, content_type: str) -> dict[str, Any]:
        headers = {"Content-Type": content_type}
        return self._with_retries(lambda: self._http.post(path, content=content, headers=headers))

    def get(self, path: str, params: dict[str, str]) -> dict[str, Any]:
        return self._with_retries(lambda: self._http.get(path, params=params))

    def close(self) -> None:
        self.stop.set()
        self._http.close()

    def _with_retries(self, send: Callable[[], httpx.Response]) -> dict[str, Any]:
        failure = _Failure("not sent")
        for attempt in range(self.policy.max_retries + 1):
            result = self._attempt(send)
            if not isinstance(result, _Failure):
                return result
            failure = result
            if attempt == self.policy.max_retries:
                break
            delay = self.policy.delay(attempt, failure.retry_after)
            log.warning("%s; retrying in %.2fs", failure.message, delay)
            if self.stop.wait(delay):
                raise DeliveryError(f"stopped while retrying: {failure.message}")
        raise DeliveryError(
            f"gave up after {self.policy.max_retries + 1} attempts: {failure.message}"
        )

    def _attempt(self, send: Callable[[], httpx.Response]) -> dict[str, Any] | _Failure:
        try:
            response = send()
        except httpx.TransportError as exc:
            return _Failure(f"cannot reach {self.url}: {exc!r}")
        if response.is_success:
            return _json(response)
        message = error_message(response)
        if response.status_code == 429 or response.status_code >= 500:
            return _Failure(f"{response.status_code}: {message}", retry_after(response))
        raise RejectedError(response.status_code, f"{response.status_code}: {message}")


def _json(response: httpx.Response) -> dict[str, Any]:
    if not response.content:
        return {}
    data = msgspec.json.decode(response.content)
    return data if isinstance(data, dict) else {"data": data}


def error_message(response: httpx.Response) -> str:
    """The `error` of the API's JSON error body, else the raw text."""
    try:
        body = msgspec.json.decode(response.content)
    except msgspec.DecodeError:
        return response.text[:500] or response.reason_phrase
    if isinstance(body, dict) and isinstance(body.get("error"), str):
        return str(body["error"])
    return response.text[:500]


def retry_after(response: httpx.Response) -> float | None:
    """Retry-After in seconds or as an HTTP date."""
    raw = response.headers.get("Retry-After")
    if raw is None:
        return None
    try:
        return max(float(raw), 0.0)
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(raw)
    except (TypeError, ValueError):
        return None
    date = response.headers.get("Date")
    now = parsedate_to_datetime(date) if date else None
    return max((when - now).total_seconds(), 0.0) if now else None
