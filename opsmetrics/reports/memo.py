"""Results shared by the reports of one burst: 200 reports due in the same minute read the
same KPIs for the same slot, and draw the same charts (docs/reports.md, "Throughput").

A `Memo` keeps the newest `size` results by key, each for at most `ttl_ms` on the injected
clock when given one (KPI figures, so data that arrives later is read by the next burst);
chart SVG and PNG are functions of their input alone and need no time limit.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

from opsmetrics.clock import Clock

V = TypeVar("V")


class Memo(Generic[V]):
    """A bounded, thread-safe memo of `make()` by key. Two threads asking for a missing key
    at once may both make it; the result is the same, and nothing waits behind a lock."""

    def __init__(self, size: int, clock: Clock | None = None, ttl_ms: int = 0) -> None:
        self._size = size
        self._clock = clock
        self._ttl_ms = ttl_ms
        self._lock = threading.Lock()
        self._items: OrderedDict[Hashable, tuple[int, V]] = OrderedDict()

    def get(self, key: Hashable, make: Callable[[], V]) -> V:
        found = self.find(key)
        if found is None:
            found = make()
            self.put(key, found)
        return found

    def find(self, key: Hashable) -> V | None:
        """The value kept for `key`, if it is there and not too old."""
        now = self._now()
        with self._lock:
            found = self._items.get(key)
            if found is None or (self._clock is not None and now - found[0] >= self._ttl_ms):
                return None
            self._items.move_to_end(key)
            return found[1]

    def put(self, key: Hashable, value: V) -> None:
        now = self._now()
        with self._lock:
            self._items[key] = (now, value)
            self._items.move_to_end(key)
            while len(self._items) > self._size:
                self._items.popitem(last=False)

    def _now(self) -> int:
        return self._clock.now_ms() if self._clock is not None else 0

    def __len__(self) -> int:
        with self._lock:
            return len(self._items)
