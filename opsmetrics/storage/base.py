"""The store protocols: the seams between the services and database engines.

`SampleStore` (series, samples, rollups), `EventStore` (business events and their analytics)
and `StateStore` (KPI versions, manual values, tokens, the alert log, leases) each have their
own backends; `Storage` is the three behind one object, as storage/open.py builds it from two
URLs. Every backend passes tests/storage_contract.py. Writes are atomic and durable: when
`write` returns, the batch survives a crash of the process; when it raises, nothing of it is
stored.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

import msgspec
import numpy as np

from opsmetrics.model import (
    Annotation,
    Event,
    Float64Array,
    Int64Array,
    Labels,
    Matcher,
    MetricMetadata,
    SampleRows,
    Series,
)
from opsmetrics.storage.alert_records import (
    AckRow,
    NotificationFilter,
    NotificationOutcome,
    NotificationRecord,
    SilenceRow,
)
from opsmetrics.storage.event_records import (
    Bucket,
    EventAggregate,
    Funnel,
    FunnelRow,
    Retention,
    RetentionRow,
    RollingUnique,
)
from opsmetrics.storage.exclusion_records import ExclusionBucket
from opsmetrics.storage.experiment_records import ArmMoments, ArmMomentsRow
from opsmetrics.storage.initiative_records import InitiativeStore
from opsmetrics.storage.kpi_records import (
    ConversionQuery,
    ConversionRow,
    ManualKpiValue,
    SqlResult,
    StateQuery,
    StateRow,
)
from opsmetrics.storage.quality_records import NameCount, PropProfile
from opsmetrics.storage.report_records import ReportStore
from opsmetrics.storage.review_records import ReviewStore
from opsmetrics.storage.source_records import SourceStore
from opsmetrics.storage.timeline_records import TimelineStore
from opsmetrics.storage.token_records import TokenRecord

if TYPE_CHECKING:
    from opsmetrics.storage.diskspace import DiskStatus
    from opsmetrics.storage.spool import SpoolStats

DAY_MS = 86_400_000
#: Widths of the rollups kept for closed partitions: 5 minutes and 1 hour.
ROLLUP_WIDTHS_MS = (300_000, 3_600_000)


class StoredEvent(msgspec.Struct, frozen=True, gc=False):
    """An event plus its idempotency key (from `id`, else from its content); like `Event`,
    never in a reference cycle, so not tracked by the garbage collector."""

    key: int
    event: Event


@dataclass(slots=True)
class WriteBatch:
    """Everything one group commit writes, in one transaction."""

    new_series: list[Series] = field(default_factory=list)
    series_ids: Int64Array = field(default_factory=lambda: np.empty(0, np.int64))
    ts: Int64Array = field(default_factory=lambda: np.empty(0, np.int64))
    values: Float64Array = field(default_factory=lambda: np.empty(0, np.float64))
    events: list[StoredEvent] = field(default_factory=list)
    annotations: list[Annotation] = field(default_factory=list)
    metadata: list[MetricMetadata] = field(default_factory=list)
    #: Filled in by `write` where the backend can tell (DuckDB): per event name, the events
    #: not stored because one with the same key was stored already or came twice in the batch.
    duplicate_events: dict[str, int] = field(default_factory=dict)

    def is_empty(self) -> bool:
        return not (
            self.new_series or len(self.ts) or self.events or self.annotations or self.metadata
        )


@dataclass(frozen=True, slots=True)
class RetentionPolicy:
    raw_ms: int = 90 * DAY_MS
    rollups_ms: int = 730 * DAY_MS
    events_ms: int = 730 * DAY_MS


@dataclass(frozen=True, slots=True)
class RetentionResult:
    samples_deleted: int
    events_deleted: int
    partitions_dropped: int
    rollups_deleted: int = 0


@dataclass(frozen=True, slots=True)
class RollupRows:
    """Rollup buckets sorted by (series id, bucket start); NaN samples are not included.

    Bucket `b` of width `w` holds the samples with b < ts <= b + w (left-open, as PromQL range
    windows). Only finite samples are aggregated; `nonfinite` counts the NaN (not stale) and
    ±Inf samples left out, so a reader can tell a bucket needs the raw samples. `increase` is the
    counter increase between consecutive samples inside the bucket (a drop is a reset);
    `first`/`last` let buckets be joined: see `increase_over`.
    """

    series_ids: Int64Array
    bucket: Int64Array
    min: Float64Array
    max: Float64Array
    sum: Float64Array
    count: Int64Array
    first: Float64Array
    last: Float64Array
    last_ts: Int64Array
    increase: Float64Array
    first_ts: Int64Array = field(default_factory=lambda: np.empty(0, np.int64))
    nonfinite: Int64Array = field(default_factory=lambda: np.empty(0, np.int64))

    def __len__(self) -> int:
        return int(self.bucket.shape[0])

    @staticmethod
    def empty() -> RollupRows:
        i, f = np.empty(0, np.int64), np.empty(0, np.float64)
        return RollupRows(i, i, f, f, f, i, f, f, i, f, i, i)

    def increase_over(self, rows: slice) -> float:
        """Counter increase across consecutive buckets of one series (no extrapolation)."""
        first, last, inc = self.first[rows], self.last[rows], self.increase[rows]
        if not len(inc):
            return 0.0
        prev, nxt = last[:-1], first[1:]
        across = np.where(nxt >= prev, nxt - prev, nxt)
        return float(inc.sum() + across.sum())


@dataclass(frozen=True, slots=True)
class KpiVersion:
    """One recorded version of a KPI definition (`definition` is its canonical JSON)."""

    name: str
    version: int
    hash: str
    definition: str
    diff: str
    author: str
    recorded_ms: int


@dataclass(frozen=True, slots=True)
class StorageStats:
    """Sizes for /metrics and `opsmetrics status`."""

    bytes_on_disk: int
    wal_bytes: int
    series: int
    samples: int
    samples_head: int
    events: int
    annotations: int
    partitions: int


class SampleStore(Protocol):
    """Series, samples, rollups, metric metadata and annotations."""

    #: True when the backend itself makes a resent sample a no-op (ClickHouse: a
    #: ReplacingMergeTree keyed by series and time, and insert deduplication tokens), so
    #: ingest writes retried samples again instead of reading before writing; a different
    #: value for a stored (series, ts) then replaces it (last write wins). False: ingest
    #: checks `existing_samples` and rejects a changed value (DuckDB).
    @property
    def idempotent_writes(self) -> bool: ...

    # --- series -------------------------------------------------------------------------
    def lookup_series(self, labels: Sequence[Labels]) -> list[int | None]:
        """Ids of known series, None for unknown ones."""
        ...

    def allocate_series_ids(self, labels: Sequence[Labels]) -> list[int]:
        """Ids for new series; they become visible when a `write` carrying them commits.

        A backend shared by several nodes answers `series_id(labels)` (storage/series_id.py),
        so every node names a series alike; the embedded backend hands out compact ids.
        """
        ...

    def series_count(self, metric: str) -> int: ...

    def labels_of(self, series_id: int) -> Labels:
        """Labels of a stored series; KeyError if unknown."""
        ...

    def labels_of_many(self, series_ids: Sequence[int]) -> list[Labels]: ...

    def select_series(
        self, matchers: Sequence[Matcher], start_ms: int | None = None, end_ms: int | None = None
    ) -> list[Series]:
        """Series matching every matcher (and, if given, with samples in [start, end])."""
        ...

    def label_names(self) -> list[str]: ...

    def label_values(self, name: str) -> list[str]: ...

    def series_heads(self, series_ids: Int64Array) -> tuple[Int64Array, Float64Array]:
        """Newest timestamp and value per series (INT64 min / NaN where it has none)."""
        ...

    # --- samples ------------------------------------------------------------------------
    def write(self, batch: WriteBatch) -> None:
        """Atomically and durably store the batch (its events go to the event store)."""
        ...

    def existing_samples(
        self, series_ids: Int64Array, ts: Int64Array
    ) -> tuple[np.ndarray, Float64Array]:
        """For each (series, ts): whether a sample is stored, and its value."""
        ...

    def read_samples(self, series_ids: Sequence[int], start_ms: int, end_ms: int) -> SampleRows:
        """Samples with start <= ts <= end, sorted by (series id, ts); values bit-exact."""
        ...

    def metadata(self, metric: str | None = None) -> list[MetricMetadata]: ...

    def read_annotations(self, start_ms: int, end_ms: int) -> list[Annotation]: ...

    def sample_counts(self, start_ms: int, end_ms: int, width_ms: int) -> list[NameCount]:
        """Samples (not stale markers) per metric name and bucket in [start, end), sorted."""
        ...

    # --- maintenance --------------------------------------------------------------------
    def compact(self, now_ms: int) -> int:
        """Rewrite closed partitions sorted by (series, ts); returns partitions rewritten."""
        ...

    def read_rollups(
        self, series_ids: Sequence[int], start_ms: int, end_ms: int, width_ms: int
    ) -> RollupRows:
        """Buckets of width_ms (one of ROLLUP_WIDTHS_MS) starting in [start, end]."""
        ...

    def rollup_spans(self) -> list[tuple[int, int]]:
        """The [start, end) time spans that rollups cover (closed, compacted partitions)."""
        ...

    def apply_retention(self, now_ms: int, policy: RetentionPolicy) -> RetentionResult: ...

    def stats(self) -> StorageStats: ...

    def close(self) -> None: ...


class EventStore(Protocol):
    """Business events and the analytics over them (funnels, retention, KPI queries)."""

    def read_events(
        self, name: str | None, start_ms: int, end_ms: int, limit: int | None = None
    ) -> list[Event]: ...

    def event_aggregate(self, q: EventAggregate) -> list[Bucket]:
        """Buckets with at least one matching event, sorted by (start, group)."""
        ...

    def event_exclusions(self, q: EventAggregate) -> list[ExclusionBucket]:
        """Per bucket with at least one event in scope (name and time), the events each check
        of `exclusion_checks(q)` left out (storage/exclusion_records.py)."""
        ...

    def event_rolling_unique(self, q: RollingUnique) -> list[Bucket]:
        """One bucket per local day of the range, zeros included."""
        ...

    def event_funnel(self, q: Funnel) -> list[FunnelRow]:
        """Per breakdown group (sorted), one row per step in order."""
        ...

    def event_retention(self, q: Retention) -> list[RetentionRow]:
        """One row per cohort with at least one entity, sorted by cohort start."""
        ...

    def arm_moments(self, q: ArmMoments) -> list[ArmMomentsRow]:
        """Per experiment arm (sorted): units and sums of unit columns and their products."""
        ...

    def kpi_state(self, q: StateQuery) -> list[StateRow]:
        """One row per period end with at least one keyed state before it."""
        ...

    def kpi_conversion(self, q: ConversionQuery) -> list[ConversionRow]:
        """One row per (period, group) with at least one from-event, sorted."""
        ...

    def newest_event_ms(self, names: Sequence[str]) -> int | None:
        """The newest timestamp among events with one of these names."""
        ...

    def kpi_sql(self, query: str, params: Mapping[str, int]) -> SqlResult:
        """Run one read-only SELECT of an `sql:` KPI; BadDataError if refused or failing."""
        ...

    # --- what the data-quality monitors read (storage/quality_records.py) -------------------
    def event_counts(self, start_ms: int, end_ms: int, width_ms: int) -> list[NameCount]:
        """Events per name and bucket (start + k × width) in [start, end), sorted."""
        ...

    def event_names_newest(self) -> dict[str, int]:
        """The newest timestamp of each event name stored."""
        ...

    def event_prop_profile(self, start_ms: int, end_ms: int) -> PropProfile:
        """Events per name in [start, end) and how many carried each property, by type."""
        ...


class StateStore(TimelineStore, InitiativeStore, ReviewStore, SourceStore, ReportStore, Protocol):
    """Small transactional state: KPI versions, manual values, tokens, the alert log (and,
    from TimelineStore, incident timelines; from InitiativeStore, API-created initiatives;
    from ReviewStore, owners' KPI reviews; from SourceStore, SQL source cursors; from
    ReportStore, the scheduled reports' delivery log)."""

    def save_token(self, token: TokenRecord) -> None: ...

    def tokens(self) -> list[TokenRecord]: ...

    # --- KPI definition versions --------------------------------------------------------
    def record_kpi_version(self, version: KpiVersion) -> None:
        """Store a new version; ValueError if (name, version) is already stored."""
        ...

    def kpi_versions(self, name: str) -> list[KpiVersion]:
        """Every recorded version of a KPI, oldest first (empty if it has none)."""
        ...

    def kpi_names(self) -> list[str]:
        """Every KPI with a recorded version or an entered value, sorted (for migrations)."""
        ...

    # --- manual KPI values --------------------------------------------------------------
    def record_manual_kpi_value(self, value: ManualKpiValue) -> None: ...

    def manual_kpi_values(self, kpi: str, start_ms: int, end_ms: int) -> list[ManualKpiValue]:
        """Entered values with start <= ts < end, oldest first."""
        ...

    def manual_kpi_period_values(
        self, kpi: str, starts: Sequence[int], ends: Sequence[int]
    ) -> dict[int, float]:
        """Period index → the last value entered for a moment in [starts[i], ends[i])."""
        ...

    def newest_manual_kpi_ms(self, kpi: str) -> int | None: ...

    # --- alert notifications, silences, acks --------------------------------------------
    def record_notifications(self, recs: Sequence[NotificationRecord]) -> None:
        """Record intents to notify (status pending), durably, in one transaction."""
        ...

    def finish_notifications(self, outcomes: Sequence[NotificationOutcome]) -> None:
        """Record outcomes of recorded intents, in one transaction."""
        ...

    def notifications(self, f: NotificationFilter) -> list[NotificationRecord]:
        """The log, newest first."""
        ...

    def pending_notifications(self) -> list[NotificationRecord]: ...

    def recent_notifications(self, since_ms: int) -> list[NotificationRecord]:
        """`notify` and `escalation` rows since then that did not fail, oldest first."""
        ...

    def prune_alert_log(self, before_ms: int) -> int:
        """Drop finished notifications and ended silences older than then."""
        ...

    def save_silence(self, s: SilenceRow) -> None: ...

    def silences(self) -> list[SilenceRow]: ...

    def save_ack(self, ack: AckRow) -> None: ...

    def delete_ack(self, fingerprint: str) -> None: ...

    def acks(self) -> list[AckRow]: ...

    # --- leases: one rule evaluator / notifier among the nodes sharing this store -------
    def hold_lease(self, name: str, holder: str, now_ms: int, ttl_ms: int) -> bool:
        """Take or renew the lease `name` for `holder` until now + ttl; False if another
        holder has it and it has not expired."""
        ...

    def release_lease(self, name: str, holder: str) -> None:
        """Give the lease up now, if `holder` has it."""
        ...

    def close(self) -> None: ...


class Storage(SampleStore, EventStore, StateStore, Protocol):
    """What the services use: the three stores behind one object (storage/open.py)."""

    def spool_stats(self) -> SpoolStats:
        """What this node holds for a data store that is down (storage/spool.py)."""
        ...

    def disk_status(self) -> list[DiskStatus]:
        """Free space and writability of each local directory written to (diskspace.py)."""
        ...
