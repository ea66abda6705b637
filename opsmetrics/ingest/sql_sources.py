"""The SQL source collector: runs each source's query on its interval, writes its rows as events
or samples through the ingestor, and advances the cursor only after a batch is durable, so a
crash re-reads a batch (harmless: event ids are idempotent) and never skips one.

One run (`SourceRunner.run`) is synchronous and runs in a thread: read a batch, convert it
(ingest/sql_rows.py), write it and wait for the commit, store the cursor, read the next.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import zlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector, CollectorRegistry

from opsmetrics.catalog.sources import SourceSet, SqlSource, cursor_text, cursor_value
from opsmetrics.clock import Clock
from opsmetrics.errors import BadDataError, OpsMetricsError
from opsmetrics.ingest.decoded import DecodedSamples
from opsmetrics.ingest.pipeline import WriteRequest, WriteResult
from opsmetrics.ingest.sql_columns import event_converter, ordered_cursor
from opsmetrics.ingest.sql_rows import Columns, Row, as_datetime, as_int, sample_converter
from opsmetrics.model import (
    METRIC_NAME,
    MetricMetadata,
    MetricType,
    SampleBatchBuilder,
    make_labels,
)
from opsmetrics.storage.base import StateStore
from opsmetrics.storage.external import (
    CursorBound,
    SourceBatch,
    SourceConnection,
    SourceQueryError,
    read_batches,
)
from opsmetrics.storage.source_records import SourceCursor, SourceRun

log = logging.getLogger(__name__)

Write = Callable[[WriteRequest], WriteResult]
#: A failing source is retried after its interval doubled per failure, at most this long.
MAX_BACKOFF_MS = 5 * 60_000
HELP = {
    "opsmetrics_source_up": "1 if the SQL source's last run succeeded, 0 if it failed",
    "opsmetrics_source_rows_total": "Rows the SQL source has stored, over all runs",
    "opsmetrics_source_lag_seconds": "Run time minus the newest cursor timestamp stored",
    "opsmetrics_source_last_success_timestamp_seconds": "When the last run succeeded",
}
METADATA = [
    MetricMetadata(name, MetricType.COUNTER if name.endswith("_total") else MetricType.GAUGE, text)
    for name, text in HELP.items()
]


def source_password(source: SqlSource, env: Mapping[str, str]) -> str | None:
    spec = source.spec
    if spec.password_env:
        if spec.password_env not in env:
            raise BadDataError(
                f"source {source.name}: password_env {spec.password_env} is not set in the "
                "server's environment; export it before starting opsmetrics"
            )
        return env[spec.password_env]
    if spec.password_file:
        return (source.base_dir / spec.password_file).read_text(encoding="utf-8").strip()
    return None


def source_connection(
    source: SqlSource, env: Mapping[str, str], data_dir: Path | None = None
) -> SourceConnection:
    spec = source.spec
    return SourceConnection(
        source.driver, spec.url, source_password(source, env), spec.timeout,
        str(source.base_dir), None if data_dir is None else str(data_dir),
    )  # fmt: skip


@dataclass(slots=True)
class _Progress:
    """Where a run is: its cursor, rows stored, and the last row's cursor value."""

    cursor: CursorBound
    rows: int = 0
    cap_reached: bool = False


class SourceRunner:
    """Runs one source: `run()` pulls from the cursor and stores, `preview()` only reads."""

    def __init__(
        self, source: SqlSource, state: StateStore, write: Write, clock: Clock,
        env: Mapping[str, str], data_dir: Path | None = None,
    ) -> None:  # fmt: skip
        self.source, self._state, self._write, self._clock, self._env = (
            source, state, write, clock, env,
        )  # fmt: skip
        #: sqlite:///{data_dir}/… paths are in this directory (the server's data directory).
        self._data_dir = data_dir

    def cursor(self) -> CursorBound:
        """The stored cursor, else the configured initial value (None without a cursor)."""
        spec = self.source.spec.cursor
        if spec is None:
            return None
        stored = self._state.source_cursor(self.source.name)
        return spec.initial if stored is None else cursor_value(stored.value, spec.initial)

    def set_cursor(self, value: datetime | int) -> None:
        """Move the cursor (backfill: `--since`); the next run reads after it."""
        now = self._clock.now_ms()
        self._state.save_source_cursor(SourceCursor(self.source.name, cursor_text(value), now))

    def preview(self, limit: int) -> tuple[list[str], list[Row]]:
        """The first `limit` rows after the cursor (nothing stored), converted to check types."""
        conn = source_connection(self.source, self._env, self._data_dir)
        batches = read_batches(conn, self.source.spec.query, self.cursor(), limit)
        with contextlib.closing(batches):
            batch = next(batches, None)
        if batch is None:
            return [], []
        self._convert(batch.columns, batch.rows, 0)
        return list(batch.columns), batch.rows[:limit]

    def run(self, on_batch: Callable[[int], None] | None = None) -> SourceRun:
        """Pull once: every batch after the cursor up to max_rows, each stored before the next."""
        started = self._clock.now_ms()
        progress = _Progress(self.cursor())
        error = ""
        try:
            self._pull(progress, on_batch)
        except (OpsMetricsError, OSError) as exc:
            error = exc.message if isinstance(exc, OpsMetricsError) else str(exc)
            log.warning("SQL source %s: %s", self.source.name, error)
        finished = self._clock.now_ms()
        lag = None
        if isinstance(progress.cursor, datetime):
            lag = max(0, finished - round(progress.cursor.timestamp() * 1000))
        run = SourceRun(self.source.name, started, finished, progress.rows, error, lag)
        self._state.record_source_run(run)
        return run

    def _pull(self, progress: _Progress, on_batch: Callable[[int], None] | None) -> None:
        spec = self.source.spec
        conn = source_connection(self.source, self._env, self._data_dir)
        batches = read_batches(conn, spec.query, progress.cursor, spec.batch)
        column = spec.cursor.column if spec.cursor is not None else None
        # One batch is written (on the writer thread) while the next is read and converted;
        # a batch's cursor is stored only once its write is durable, and one write at a time.
        with contextlib.closing(batches), ThreadPoolExecutor(1, "sql-source") as writer:
            pending: tuple[Future[WriteResult], SourceBatch] | None = None
            try:
                for batch in _capped(batches, spec.max_rows, column):
                    first = progress.rows + (len(pending[1].rows) if pending else 0)
                    request = self._convert(batch.columns, batch.rows, first)
                    if pending is not None:
                        done, pending = pending, None
                        self._stored(*done, progress, on_batch)
                    pending = writer.submit(self._write, request), batch
            finally:  # a failure reading or converting a batch still stores the one before
                if pending is not None:
                    self._stored(*pending, progress, on_batch)

    def _stored(
        self,
        write: Future[WriteResult],
        batch: SourceBatch,
        progress: _Progress,
        on_batch: Callable[[int], None] | None,
    ) -> None:
        """Wait for a batch's write; then count its rows and move the cursor past them."""
        write.result()
        progress.rows += len(batch.rows)
        if self.source.spec.cursor is not None:
            progress.cursor = self._advance(batch, progress.cursor)
        if on_batch is not None:
            on_batch(len(batch.rows))

    def _advance(self, batch: SourceBatch, previous: CursorBound) -> CursorBound:
        """Check the rows come in cursor order, store the last one's value as the cursor."""
        assert self.source.spec.cursor is not None
        column = self.source.spec.cursor.column
        at = Columns(batch.columns).index(column, "cursor.column")
        kind = datetime if isinstance(self.source.spec.cursor.initial, datetime) else int
        last = ordered_cursor([row[at] for row in batch.rows], previous, kind)
        if last is None:
            last = self._checked_cursor(batch, at, previous)
        self.set_cursor(last)
        return last

    def _checked_cursor(self, batch: SourceBatch, at: int, previous: CursorBound) -> datetime | int:
        """The last row's cursor, each row's checked: the error names the first bad one."""
        assert self.source.spec.cursor is not None
        column = self.source.spec.cursor.column
        last = previous
        for n, row in enumerate(batch.rows):
            value = self._cursor_of(row[at], column, n)
            if last is not None and value < last:  # type: ignore[operator]
                raise SourceQueryError(
                    f"the rows are not in order of the cursor column {column!r} (row {n} of "
                    f"the batch goes back); end the query with ORDER BY {column}",
                    reason="source_order",
                )
            last = value
        assert last is not None
        return last

    def _cursor_of(self, value: object, column: str, n: int) -> datetime | int:
        assert self.source.spec.cursor is not None
        if isinstance(self.source.spec.cursor.initial, datetime):
            return as_datetime(value, f"{column} (the cursor)", n)
        return as_int(value, f"{column} (the cursor)", n)

    def _convert(self, columns: Sequence[str], rows: Sequence[Row], first: int) -> WriteRequest:
        spec, cols = self.source.spec, Columns(columns)
        name = f"sql:{self.source.name}"
        if spec.emit.events is not None:
            return WriteRequest(name, events=event_converter(spec.emit.events, cols)(rows, first))
        assert spec.emit.samples is not None
        builder = SampleBatchBuilder()
        sample_converter(spec.emit.samples, cols)(rows, first, self._clock.now_ms(), builder)
        return WriteRequest(name, samples=DecodedSamples(builder.build()))


def _capped(
    batches: Iterator[SourceBatch], max_rows: int, cursor_column: str | None
) -> Iterator[SourceBatch]:
    """The batches up to max_rows rows; past it, only rows whose cursor equals the last kept
    one, so a run never stops inside a group of rows sharing a cursor value (the next run
    starts after that value and would skip the rest of the group)."""
    seen = 0
    for batch in batches:
        if seen + len(batch.rows) <= max_rows:
            seen += len(batch.rows)
            yield batch
            continue
        rows = batch.rows[: max(1, max_rows - seen)]
        if cursor_column not in batch.columns:
            yield SourceBatch(batch.columns, rows)
            return
        at = batch.columns.index(str(cursor_column))
        last = rows[-1][at]
        rest = batch.rows[len(rows) :]
        while rest and rest[0][at] == last:
            same = [r for r in rest if r[at] == last]
            rows += same
            if len(same) < len(rest):
                break
            rest = next(batches, SourceBatch(batch.columns, [])).rows
        yield SourceBatch(batch.columns, rows)
        return


# --- the collector -------------------------------------------------------------------------------


@dataclass(slots=True)
class _Status:
    up: bool = True
    rows_total: int = 0
    lag_ms: int | None = None
    last_success_ms: int | None = None
    failures: int = 0


@dataclass
class SqlSourceCollector:
    """Every source on its own task; `running` runs them and stops them on exit."""

    sources: SourceSet
    state: StateStore
    write: Write
    clock: Clock
    env: Mapping[str, str] = field(default_factory=lambda: dict(os.environ))
    #: Whether this node pulls now (the maintenance lease, with several nodes).
    holds_lease: Callable[[], bool] = lambda: True
    #: Our /metrics registry: the self-metrics are in it while the collector runs.
    registry: CollectorRegistry | None = None
    #: The server's data directory, for sqlite:///{data_dir}/… sources.
    data_dir: Path | None = None
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)
    _status: dict[str, _Status] = field(default_factory=dict)
    _slots: dict[str, asyncio.Semaphore] = field(default_factory=dict)
    _metrics: Collector | None = None

    def runner(self, source: SqlSource) -> SourceRunner:
        return SourceRunner(source, self.state, self.write, self.clock, self.env, self.data_dir)

    async def start(self) -> None:
        if self.registry is not None:
            self.registry.register(self.metrics)
        for run in self.state.source_runs():
            self._status[run.source] = _Status(
                run.up, run.rows_total, run.lag_ms, run.last_success_ms
            )
        for source in self.sources.sources:
            self._slots[source.name] = asyncio.Semaphore(source.spec.concurrency)
            self._tasks.append(
                asyncio.create_task(self._loop(source), name=f"source {source.name}")
            )

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()
        if self.registry is not None:
            self.registry.unregister(self.metrics)

    async def run_once(self, source: SqlSource) -> SourceRun:
        """Run now (one of the source's `concurrency` slots) and write the self-metrics."""
        async with self._slots.setdefault(source.name, asyncio.Semaphore(1)):
            run = await asyncio.to_thread(self.runner(source).run)
        self._account(run)
        await asyncio.to_thread(self._write_metrics, source.name, run.finished_ms)
        return run

    async def _loop(self, source: SqlSource) -> None:
        loop = asyncio.get_running_loop()
        interval = source.spec.interval / 1000
        # Spread the sources over their interval so they do not all query at the same moment.
        await asyncio.sleep(zlib.crc32(source.name.encode()) % max(1, source.spec.interval) / 1000)
        while True:
            started = loop.time()
            try:
                if await asyncio.to_thread(self.holds_lease):
                    await self.run_once(source)
            except Exception:
                log.exception("SQL source %s failed", source.name)
            await asyncio.sleep(max(0.0, started + self._delay_s(source, interval) - loop.time()))

    def _delay_s(self, source: SqlSource, interval: float) -> float:
        failures = self._status.get(source.name, _Status()).failures
        if not failures:
            return interval
        return min(
            interval * float(2 ** min(failures - 1, 20)), max(interval, MAX_BACKOFF_MS / 1000)
        )

    def _account(self, run: SourceRun) -> None:
        status = self._status.setdefault(run.source, _Status())
        status.up, status.rows_total = run.up, status.rows_total + run.rows
        status.lag_ms = run.lag_ms if run.lag_ms is not None else status.lag_ms
        status.failures = 0 if run.up else status.failures + 1
        if run.up:
            status.last_success_ms = run.finished_ms

    def _write_metrics(self, name: str, ts: int) -> None:
        """The self-metrics as samples too, so alert rules can use them."""
        builder = SampleBatchBuilder()
        for metric, value in _metric_values(self._status[name]):
            builder.add(make_labels({METRIC_NAME: metric, "source": name}), ts, value)
        try:
            self.write(
                WriteRequest("sql_sources", samples=DecodedSamples(builder.build(), METADATA))
            )
        except OpsMetricsError as exc:
            log.warning("SQL source %s: self-metrics not written: %s", name, exc.message)

    @property
    def metrics(self) -> Collector:
        """The self-metrics for our /metrics registry (one object per collector)."""
        if self._metrics is None:
            self._metrics = _SourceMetrics(self._status)
        return self._metrics


def _metric_values(status: _Status) -> list[tuple[str, float]]:
    out = [
        ("opsmetrics_source_up", 1.0 if status.up else 0.0),
        ("opsmetrics_source_rows_total", float(status.rows_total)),
    ]
    if status.lag_ms is not None:
        out.append(("opsmetrics_source_lag_seconds", status.lag_ms / 1000))
    if status.last_success_ms is not None:
        out.append(
            ("opsmetrics_source_last_success_timestamp_seconds", status.last_success_ms / 1000)
        )
    return out


class _SourceMetrics(Collector):
    def __init__(self, status: Mapping[str, _Status]) -> None:
        self._status = status

    def collect(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        families: dict[str, GaugeMetricFamily | CounterMetricFamily] = {}
        for name, text in HELP.items():
            if name.endswith("_total"):
                families[name] = CounterMetricFamily(
                    name.removesuffix("_total"), text, labels=["source"]
                )
            else:
                families[name] = GaugeMetricFamily(name, text, labels=["source"])
        for source, status in sorted(self._status.items()):
            for metric, value in _metric_values(status):
                families[metric].add_metric([source], value)
        yield from families.values()
