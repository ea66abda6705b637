"""The injectable clock. No code reads the wall clock directly; tests drive a FakeClock.

A server process can be started at another instant for end-to-end tests: OPSMETRICS_FAKE_NOW
(RFC 3339 or Unix seconds) moves its clock there, running at real speed from then on. It is
refused unless OPSMETRICS_ALLOW_FAKE_NOW=1 is set too, so it cannot be left on by accident.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Mapping
from typing import Protocol

from opsmetrics.durations import parse_time_ms
from opsmetrics.errors import ConfigError

FAKE_NOW_ENV = "OPSMETRICS_FAKE_NOW"
ALLOW_FAKE_NOW_ENV = "OPSMETRICS_ALLOW_FAKE_NOW"
log = logging.getLogger(__name__)


class Clock(Protocol):
    def now_ms(self) -> int:
        """Milliseconds since the Unix epoch, UTC."""
        ...


class SystemClock:
    def now_ms(self) -> int:
        return time.time_ns() // 1_000_000


class FakeClock:
    """A clock that moves only when told to."""

    def __init__(self, start_ms: int = 1_700_000_000_000) -> None:
        self._now = start_ms
        self._lock = threading.Lock()

    def now_ms(self) -> int:
        with self._lock:
            return self._now

    def set(self, ms: int) -> None:
        with self._lock:
            self._now = ms

    def advance(self, ms: int) -> None:
        with self._lock:
            self._now += ms


class ShiftedClock:
    """The system clock moved so that it read `start_ms` when made; it runs at real speed."""

    def __init__(self, start_ms: int) -> None:
        self._offset = start_ms - time.time_ns() // 1_000_000

    def now_ms(self) -> int:
        return time.time_ns() // 1_000_000 + self._offset


def clock_from_env(env: Mapping[str, str]) -> Clock:
    """The system clock, or a ShiftedClock where the test-only OPSMETRICS_FAKE_NOW is allowed."""
    text = env.get(FAKE_NOW_ENV, "").strip()
    if not text:
        return SystemClock()
    if env.get(ALLOW_FAKE_NOW_ENV) != "1":
        raise ConfigError(
            f"{FAKE_NOW_ENV} is a test-only setting that moves the server's clock; unset it, "
            f"or set {ALLOW_FAKE_NOW_ENV}=1 as well if you really mean it"
        )
    start = parse_time_ms(text, field=FAKE_NOW_ENV)
    log.warning("%s: the clock starts at %s ms, not at the real time", FAKE_NOW_ENV, start)
    return ShiftedClock(start)


def pause(seconds: float) -> None:
    """Wait like time.sleep, but on a condition variable rather than clock_nanosleep.

    CI runs the clock tests under libfaketime with the monotonic clock left real, where
    Python's time.sleep fails with EINVAL (tests/README.md); a timed wait works there.
    """
    threading.Event().wait(max(0.0, seconds))
