"""At-least-once delivery: retries with capped, jittered exponential backoff.

Retried: 5xx, 429 (after its Retry-After when given), timeouts and connection errors.
Not retried: any other 4xx — the receiver said the request itself is wrong.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field

from opsmetrics.alerting.notifiers.base import Batch, DeliveryResult, Notifier
from opsmetrics.clock import pause


@dataclass(frozen=True)
class RetryPolicy:
    max_retries: int = 5
    base_s: float = 0.5
    cap_s: float = 60.0
    sleep: Callable[[float], None] = field(default=pause, compare=False)

    def delay(self, attempt: int, retry_after_s: float | None) -> float:
        """Seconds to wait after failed attempt number `attempt` (0-based)."""
        if retry_after_s is not None:
            return min(retry_after_s, self.cap_s)
        backoff: float = min(self.cap_s, self.base_s * 2.0**attempt)
        return backoff * random.uniform(0.5, 1.0)  # jitter, not security


@dataclass(frozen=True, slots=True)
class Outcome:
    result: DeliveryResult
    attempts: int

    @property
    def status(self) -> str:
        return "delivered" if self.result.ok else "failed"


def deliver(notifier: Notifier, batch: Batch, policy: RetryPolicy) -> Outcome:
    attempt = 0
    while True:
        try:
            result = notifier.send(batch)
        except Exception as exc:  # a notifier bug must not lose the notification silently
            result = DeliveryResult(False, retryable=True, detail=f"notifier error: {exc!r}")
        if result.ok or not result.retryable or attempt >= policy.max_retries:
            return Outcome(result, attempt + 1)
        policy.sleep(policy.delay(attempt, result.retry_after_s))
        attempt += 1
