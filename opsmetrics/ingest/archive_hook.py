"""Archive before retention deletes (OPSMETRICS_ARCHIVE_BEFORE_RETENTION=1).

Each maintenance pass, before retention runs, the archiver exports every data class that has
rows older than its retention cutoff into a new directory under OPSMETRICS_ARCHIVE_DIR
(`retention-20261207T154000Z/`, a whole archive with its manifest). The cutoffs are moved back
to the UTC midnight before them, so retention deletes exactly the whole days just archived and
each day is archived once. If the export fails, retention deletes nothing in that pass: the
error is logged, `opsmetrics_archive_runs{outcome="failed"}` counts it and
`opsmetrics_retention_held{reason}` is 1 until a pass archives again.
"""

from __future__ import annotations

import errno
import logging
from datetime import UTC, datetime
from pathlib import Path

from prometheus_client import CollectorRegistry, Counter, Gauge

from opsmetrics.clock import Clock
from opsmetrics.errors import ConfigError, InternalError, OpsMetricsError
from opsmetrics.settings import Settings
from opsmetrics.storage.archive import Archivable, DataClass, TimeRange, archivable
from opsmetrics.storage.archive_export import export_archive
from opsmetrics.storage.base import DAY_MS, RetentionPolicy, Storage

log = logging.getLogger(__name__)


class ArchiveFailedError(InternalError):
    """The archive before retention could not be written; retention waits."""


class RetentionArchiver:
    def __init__(self, root: Path, registry: CollectorRegistry) -> None:
        self.root = root
        r = registry
        self.runs = Counter(
            "opsmetrics_archive_runs",
            "Archives written before retention, by outcome",
            ["outcome"],
            registry=r,
        )
        self.rows = Counter(
            "opsmetrics_archive_rows",
            "Rows archived before retention, by data class",
            ["kind"],
            registry=r,
        )
        self.last_success = Gauge(
            "opsmetrics_archive_last_success_timestamp_seconds",
            "When an archive before retention was last written",
            registry=r,
        )
        self.held = Gauge(
            "opsmetrics_retention_held",
            "1 while retention deletes nothing because its archive failed (reason: the error)",
            ["reason"],
            registry=r,
        )

    def policy(self, storage: Storage, now_ms: int, policy: RetentionPolicy) -> RetentionPolicy:
        """Archive what `policy` would delete now; the policy that deletes just that.

        Raises ArchiveFailedError (and counts it) when the archive could not be written."""
        cutoffs = aligned_cutoffs(now_ms, policy)
        store = archivable(storage)
        try:
            ranges = _expiring(store, cutoffs)
            if ranges:
                self._export(store, ranges, now_ms)
        except (OpsMetricsError, OSError) as exc:
            self._failed(exc)
        self.held.clear()
        return RetentionPolicy(
            raw_ms=now_ms - cutoffs[DataClass.SAMPLES],
            rollups_ms=now_ms - cutoffs[DataClass.ROLLUPS],
            events_ms=now_ms - cutoffs[DataClass.EVENTS],
        )

    def _export(self, store: Archivable, ranges: dict[DataClass, TimeRange], now_ms: int) -> None:
        target = self.root / run_name(now_ms)
        result = export_archive(store, target, ranges, now_ms=now_ms)
        for kind in DataClass:
            self.rows.labels(kind.value).inc(result.manifest.rows(kind))
        self.runs.labels("ok").inc()
        self.last_success.set(now_ms / 1000)
        log.info("archived before retention to %s: %d files", target, len(result.manifest.files))

    def _failed(self, exc: BaseException) -> None:
        self.runs.labels("failed").inc()
        self.held.clear()
        self.held.labels(failure_reason(exc)).set(1)
        message = f"retention deletes nothing: archiving to {self.root} failed: {exc}"
        log.error("%s", message)
        raise ArchiveFailedError(message) from exc


def failure_reason(exc: BaseException) -> str:
    if isinstance(exc, OSError):
        return "no_space" if exc.errno == errno.ENOSPC else "io_error"
    return getattr(exc, "reason", None) or "error"


def retention_archiver(
    settings: Settings, storage: Storage, registry: CollectorRegistry
) -> RetentionArchiver | None:
    """The archiver the settings ask for (None: retention deletes without archiving)."""
    if not settings.archive_before_retention:
        return None
    if settings.archive_dir is None:
        raise ConfigError(
            "OPSMETRICS_ARCHIVE_BEFORE_RETENTION=1 needs OPSMETRICS_ARCHIVE_DIR: the directory "
            "the archives are written to"
        )
    if archivable(storage).backend != "duckdb":
        raise ConfigError(
            "OPSMETRICS_ARCHIVE_BEFORE_RETENTION works with the DuckDB data store: ClickHouse "
            "applies retention as a TTL itself, so nothing can run before it deletes. Run "
            "`opsmetrics archive export` on a schedule, ahead of the TTL, instead"
        )
    settings.archive_dir.mkdir(parents=True, exist_ok=True)
    return RetentionArchiver(settings.archive_dir, registry)


def aligned_cutoffs(now_ms: int, policy: RetentionPolicy) -> dict[DataClass, int]:
    """Each class's cutoff, moved back to the UTC midnight at or before it."""
    ages = {
        DataClass.SAMPLES: policy.raw_ms,
        DataClass.EVENTS: policy.events_ms,
        DataClass.ROLLUPS: policy.rollups_ms,
    }
    return {k: (now_ms - age) // DAY_MS * DAY_MS for k, age in ages.items()}


def _expiring(store: Archivable, cutoffs: dict[DataClass, int]) -> dict[DataClass, TimeRange]:
    out = {}
    for kind, cutoff in cutoffs.items():
        oldest = store.archive.oldest_ms(kind)
        if oldest is not None and oldest < cutoff:
            out[kind] = TimeRange(oldest // DAY_MS * DAY_MS, cutoff)
    return out


def run_name(now_ms: int) -> str:
    return "retention-" + datetime.fromtimestamp(now_ms / 1000, UTC).strftime("%Y%m%dT%H%M%SZ")


def archived_maintenance(
    storage: Storage, clock: Clock, policy: RetentionPolicy, archiver: RetentionArchiver
) -> None:
    """One maintenance pass with the archive first: compact, archive, then retention."""
    now = clock.now_ms()
    compacted = storage.compact(now)
    try:
        effective = archiver.policy(storage, now, policy)
    except ArchiveFailedError:
        return  # logged and counted by the archiver; the next pass tries again
    result = storage.apply_retention(now, effective)
    log.info(
        "maintenance: %d partitions compacted; after archiving, %d partitions dropped, "
        "%d events and %d rollup buckets expired",
        compacted,
        result.partitions_dropped,
        result.events_deleted,
        result.rollups_deleted,
    )
