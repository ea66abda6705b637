"""Reading a business database for a SQL source (catalog/sources.py): one module per driver,
each opening a read-only session with a statement timeout and streaming rows in batches."""

from opsmetrics.storage.external.base import (
    CursorBound,
    SourceBatch,
    SourceConnection,
    SourceQueryError,
    SourceTimeoutError,
    SourceUnavailableError,
)
from opsmetrics.storage.external.read import read_batches

__all__ = [
    "CursorBound",
    "SourceBatch",
    "SourceConnection",
    "SourceQueryError",
    "SourceTimeoutError",
    "SourceUnavailableError",
    "read_batches",
]
