"""Storage: the Storage protocol and its backends. The only layer that holds SQL or a driver."""

from opsmetrics.storage.base import (
    RetentionPolicy,
    RetentionResult,
    Storage,
    StorageStats,
    StoredEvent,
    WriteBatch,
)

__all__ = [
    "RetentionPolicy",
    "RetentionResult",
    "Storage",
    "StorageStats",
    "StoredEvent",
    "WriteBatch",
]
