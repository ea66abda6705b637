"""The background loop both rule managers share: evaluate what is due, sleep until the next tick.

The loop looks at the injectable clock at least once a second, so a clock that jumps (a fake
clock in tests, a suspended machine) is noticed promptly.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

from opsmetrics.clock import Clock

log = logging.getLogger(__name__)
#: The loop looks at the clock at least this often (seconds).
MAX_SLEEP_S = 1.0


class DueLoop:
    """Runs `evaluate_due` in a worker thread whenever `next_due_ms` has come."""

    def __init__(
        self,
        name: str,
        clock: Clock,
        evaluate_due: Callable[[], object],
        next_due_ms: Callable[[], int],
    ) -> None:
        self._name = name
        self._clock = clock
        self._evaluate_due = evaluate_due
        self._next_due_ms = next_due_ms
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name=self._name)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _run(self) -> None:
        while True:
            try:
                await asyncio.to_thread(self._evaluate_due)
            except Exception:  # one bad pass must not stop the loop
                log.exception("%s: evaluation failed", self._name)
            await asyncio.sleep(self.sleep_s())

    def sleep_s(self) -> float:
        wait_ms = self._next_due_ms() - self._clock.now_ms()
        return min(max(wait_ms / 1000, 0.01), MAX_SLEEP_S)
