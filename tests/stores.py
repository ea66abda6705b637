"""Storage for tests where the backend is not the point: opened the way the product opens it.

`open_store(data_dir, now_ms)` goes through `opsmetrics.storage.open.open_stores` with the
settings a server on `data_dir` has by default (no OPSMETRICS_STORAGE_URL or STATE_URL), so a
test reads what a server wrote, or prepares what it will read, through the same path and
backend choice. Backend-specific tests build their backend directly instead.
"""

from __future__ import annotations

from pathlib import Path

from opsmetrics.clock import FakeClock
from opsmetrics.settings import Settings
from opsmetrics.storage.base import Storage
from opsmetrics.storage.open import open_stores


def open_store(data_dir: Path, now_ms: int) -> Storage:
    """The Storage of the data directory, its clock standing at `now_ms`."""
    return open_stores(Settings(data_dir=data_dir), FakeClock(now_ms))
