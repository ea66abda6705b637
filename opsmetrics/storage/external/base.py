"""What every driver module takes and gives: the connection, the rows, the errors."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Literal, Protocol

from opsmetrics.errors import InternalError, UserError

Driver = Literal["postgresql", "mysql", "sqlite", "sqlalchemy"]
#: The value bound for `$cursor`: a timestamp (aware, UTC) or an integer id; None without one.
CursorBound = datetime | int | None
CURSOR_PLACEHOLDER = "$cursor"


@dataclass(frozen=True, slots=True)
class SourceConnection:
    driver: Driver
    #: The URL as configured: it never holds a password (catalog/sources.py refuses one).
    url: str
    password: str | None
    timeout_ms: int
    #: sqlite:/// paths relative to this directory (the config directory).
    base_dir: str = "."
    #: What a sqlite:///{data_dir}/… path starts with: the server's data directory.
    data_dir: str | None = None


@dataclass(frozen=True, slots=True)
class SourceBatch:
    columns: tuple[str, ...]
    rows: list[tuple[object, ...]]


class SourceUnavailableError(InternalError):
    """The source database cannot be reached (or refused the login): retried with backoff."""

    reason = "source_unavailable"


class SourceQueryError(UserError):
    """The query failed on the source database (syntax, permissions, a wrong column type)."""

    reason = "source_query"


class SourceTimeoutError(SourceQueryError):
    """The source database stopped the query at the statement timeout."""

    reason = "source_timeout"


class Session(Protocol):
    def batches(self, query: str, cursor: CursorBound, size: int) -> Iterator[SourceBatch]: ...

    def close(self) -> None: ...


def timeout_message(timeout_ms: int) -> str:
    return (
        f"the query ran longer than the statement timeout ({timeout_ms / 1000:g}s) and the "
        "source database stopped it; make the query cheaper (an index on the cursor column, a "
        "smaller LIMIT) or raise `timeout:`"
    )


def percent_placeholders(query: str) -> str:
    """The query for a %s-style driver: literal % doubled, `$cursor` as %s."""
    return query.replace("%", "%%").replace(CURSOR_PLACEHOLDER, "%s")


def cursor_params(query: str, cursor: CursorBound) -> list[object]:
    """One bound value per `$cursor` in the query: the value is never put in the text."""
    return [cursor] * query.count(CURSOR_PLACEHOLDER)
