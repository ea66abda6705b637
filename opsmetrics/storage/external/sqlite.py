"""A SQLite source: the file opened read-only (`mode=ro`), the timeout enforced with a
progress handler, since SQLite has no statement timeout of its own."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

from opsmetrics.storage.external.base import (
    CURSOR_PLACEHOLDER,
    CursorBound,
    SourceBatch,
    SourceConnection,
    SourceQueryError,
    SourceTimeoutError,
    SourceUnavailableError,
    cursor_params,
    timeout_message,
)

PREFIX = "sqlite:///"
#: sqlite:///{data_dir}/shop.db: a file in the server's data directory (the demo's database).
DATA_DIR = "{data_dir}"
#: SQLite VM instructions between deadline checks.
PROGRESS_STEPS = 10_000


def sqlite_path(url: str, base_dir: str, data_dir: str | None = None) -> Path:
    """sqlite:///relative.db (to the config directory), sqlite:////absolute.db, or
    sqlite:///{data_dir}/file.db (in the data directory)."""
    text = url[len(PREFIX) :]
    if text.startswith(DATA_DIR + "/"):
        if data_dir is None:
            raise SourceUnavailableError(f"{url}: no data directory is known to this command")
        return Path(data_dir) / text[len(DATA_DIR) + 1 :]
    path = Path(text)
    return path if path.is_absolute() else Path(base_dir) / path


def _bound(value: object) -> object:
    # Timestamps compare as text in SQLite: bind them in its own format, `YYYY-MM-DD HH:MM:SS`.
    if isinstance(value, datetime):
        return value.astimezone(UTC).replace(tzinfo=None).isoformat(sep=" ")
    return value


class SqliteSession:
    def __init__(self, conn: SourceConnection) -> None:
        self._timeout_ms = conn.timeout_ms
        path = sqlite_path(conn.url, conn.base_dir, conn.data_dir)
        if not path.is_file():
            raise SourceUnavailableError(f"the SQLite file {path} does not exist")
        try:
            self._db = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
        except sqlite3.Error as exc:
            raise SourceUnavailableError(f"cannot open {path}: {exc}") from None
        self._deadline = 0.0
        self._db.set_progress_handler(self._past_deadline, PROGRESS_STEPS)

    def _past_deadline(self) -> int:
        return 1 if time.monotonic() > self._deadline else 0

    def batches(self, query: str, cursor: CursorBound, size: int) -> Iterator[SourceBatch]:
        params = [_bound(v) for v in cursor_params(query, cursor)]
        self._deadline = time.monotonic() + self._timeout_ms / 1000
        try:
            cur = self._db.execute(query.replace(CURSOR_PLACEHOLDER, "?"), params)
            columns = tuple(c[0] for c in cur.description or ())
            while rows := cur.fetchmany(size):
                yield SourceBatch(columns, rows)
        except sqlite3.OperationalError as exc:
            if "interrupted" in str(exc):
                raise SourceTimeoutError(timeout_message(self._timeout_ms)) from None
            raise SourceQueryError(f"the query failed on the SQLite source: {exc}") from None
        except sqlite3.Error as exc:
            raise SourceQueryError(f"the query failed on the SQLite source: {exc}") from None

    def close(self) -> None:
        self._db.close()
