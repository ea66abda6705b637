"""SQL source state (catalog/sources.py): each source's cursor and its last run, and the store
protocol that holds them; both state backends do (migration 16 in DuckDB, 7 in PostgreSQL)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol


@dataclass(frozen=True, slots=True)
class SourceCursor:
    source: str
    #: An ISO timestamp in UTC or an integer's digits (catalog/sources.py cursor_text).
    value: str
    updated_ms: int


@dataclass(frozen=True, slots=True)
class SourceRun:
    source: str
    started_ms: int
    finished_ms: int
    #: Rows stored by this run (a failed run may have stored some batches before failing).
    rows: int
    #: Empty when the run succeeded.
    error: str = ""
    #: The run's time minus the cursor's timestamp; None for an id cursor or none yet.
    lag_ms: int | None = None
    #: Filled in by the store: every run's rows, and the last run that succeeded.
    rows_total: int = 0
    last_success_ms: int | None = None

    @property
    def up(self) -> bool:
        return not self.error


def run_params(run: SourceRun) -> list[object]:
    success = None if run.error else run.finished_ms
    return [run.source, run.started_ms, run.finished_ms, run.rows, run.error, run.lag_ms, success]


def run_from_row(row: tuple[Any, ...]) -> SourceRun:
    source, started, finished, rows, error, lag, total, success = row
    return SourceRun(
        str(source), int(started), int(finished), int(rows), str(error),
        None if lag is None else int(lag), int(total), None if success is None else int(success),
    )  # fmt: skip


class SourceStore(Protocol):
    """Part of the StateStore (storage/base.py)."""

    def source_cursor(self, source: str) -> SourceCursor | None:
        """The stored cursor of a source; None before its first stored batch."""
        ...

    def save_source_cursor(self, cursor: SourceCursor) -> None:
        """Store (or replace) a source's cursor."""
        ...

    def record_source_run(self, run: SourceRun) -> None:
        """Keep the run as the source's last; adds its rows to the total, and remembers
        its end as the last success when it has no error."""
        ...

    def source_runs(self) -> list[SourceRun]:
        """The last run of every source that has run, by source name."""
        ...
