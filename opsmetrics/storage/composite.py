"""Three stores behind the one `Storage` object the services use.

`open_stores` (storage/open.py) builds a SplitStorage when samples and events live in one
backend (ClickHouse, or DuckDB) and state in another (PostgreSQL, or a DuckDB file); when both
URLs name the same DuckDB file it uses that backend alone.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Protocol

import numpy as np

from opsmetrics.errors import StorageUnavailableError
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
from opsmetrics.storage.base import (
    EventStore,
    KpiVersion,
    RetentionPolicy,
    RetentionResult,
    RollupRows,
    SampleStore,
    StateStore,
    StorageStats,
    WriteBatch,
)
from opsmetrics.storage.diskspace import DiskGuard, DiskStatus
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
from opsmetrics.storage.initiative_records import InitiativeRecord
from opsmetrics.storage.kpi_records import (
    ConversionQuery,
    ConversionRow,
    ManualKpiValue,
    SqlResult,
    StateQuery,
    StateRow,
)
from opsmetrics.storage.quality_records import NameCount, PropProfile
from opsmetrics.storage.report_records import ReportDelivery, ReportRun, Trigger
from opsmetrics.storage.review_records import KpiReview
from opsmetrics.storage.source_records import SourceCursor, SourceRun
from opsmetrics.storage.spool import Spool, SpoolStats
from opsmetrics.storage.timeline_records import ActionClaim, TimelineEntry
from opsmetrics.storage.token_records import TokenRecord


class DataStore(SampleStore, EventStore, Protocol):
    """Samples and events in one backend: a write batch carries both, atomically."""


class SplitStorage:
    """The Storage protocol over a data store and a state store (each closed with it)."""

    def __init__(
        self,
        data: DataStore,
        state: StateStore,
        spool: Spool | None = None,
        disks: Sequence[DiskGuard] = (),
    ) -> None:
        self._data = data
        self._state = state
        self._spool = spool
        self._disks = tuple(disks)  # the local directories written to: DuckDB files, spool

    @property
    def data(self) -> DataStore:
        return self._data

    @property
    def state(self) -> StateStore:
        return self._state

    @property
    def idempotent_writes(self) -> bool:
        return self._data.idempotent_writes

    def spool_stats(self) -> SpoolStats:
        return self._spool.stats() if self._spool is not None else SpoolStats()

    def disk_status(self) -> list[DiskStatus]:
        return [d.status() for d in self._disks]

    def close(self) -> None:
        try:
            if self._spool is not None:
                self._spool.close()
            self._data.close()
        finally:
            self._state.close()

    # --- the ingest path keeps working while a spooled data store is down ---------------

    def lookup_series(self, labels: Sequence[Labels]) -> list[int | None]:
        try:
            return self._data.lookup_series(labels)
        except StorageUnavailableError:
            if self._spool is None:
                raise
            # Series ids are label hashes: writing a known series as new is harmless.
            return [None] * len(labels)

    def allocate_series_ids(self, labels: Sequence[Labels]) -> list[int]:
        return self._data.allocate_series_ids(labels)

    def series_count(self, metric: str) -> int:
        try:
            return self._data.series_count(metric)
        except StorageUnavailableError:
            if self._spool is None:
                raise
            return 0  # the per-metric series limit is checked again once the store is back

    def labels_of(self, series_id: int) -> Labels:
        return self._data.labels_of(series_id)

    def labels_of_many(self, series_ids: Sequence[int]) -> list[Labels]:
        return self._data.labels_of_many(series_ids)

    def select_series(
        self, matchers: Sequence[Matcher], start_ms: int | None = None, end_ms: int | None = None
    ) -> list[Series]:
        return self._data.select_series(matchers, start_ms, end_ms)

    def label_names(self) -> list[str]:
        return self._data.label_names()

    def label_values(self, name: str) -> list[str]:
        return self._data.label_values(name)

    def series_heads(self, series_ids: Int64Array) -> tuple[Int64Array, Float64Array]:
        try:
            return self._data.series_heads(series_ids)
        except StorageUnavailableError:
            if self._spool is None:
                raise
            n = len(series_ids)  # unknown heads: no late-data check during the outage
            return np.full(n, np.iinfo(np.int64).min, np.int64), np.full(n, np.nan)

    def write(self, batch: WriteBatch) -> None:
        if self._spool is not None:
            self._spool.write(batch)
        else:
            self._data.write(batch)

    def existing_samples(
        self, series_ids: Int64Array, ts: Int64Array
    ) -> tuple[np.ndarray, Float64Array]:
        return self._data.existing_samples(series_ids, ts)

    def read_samples(self, series_ids: Sequence[int], start_ms: int, end_ms: int) -> SampleRows:
        return self._data.read_samples(series_ids, start_ms, end_ms)

    def metadata(self, metric: str | None = None) -> list[MetricMetadata]:
        return self._data.metadata(metric)

    def read_annotations(self, start_ms: int, end_ms: int) -> list[Annotation]:
        return self._data.read_annotations(start_ms, end_ms)

    def compact(self, now_ms: int) -> int:
        return self._data.compact(now_ms)

    def read_rollups(
        self, series_ids: Sequence[int], start_ms: int, end_ms: int, width_ms: int
    ) -> RollupRows:
        return self._data.read_rollups(series_ids, start_ms, end_ms, width_ms)

    def rollup_spans(self) -> list[tuple[int, int]]:
        return self._data.rollup_spans()

    def apply_retention(self, now_ms: int, policy: RetentionPolicy) -> RetentionResult:
        return self._data.apply_retention(now_ms, policy)

    def stats(self) -> StorageStats:
        return self._data.stats()

    def read_events(
        self, name: str | None, start_ms: int, end_ms: int, limit: int | None = None
    ) -> list[Event]:
        return self._data.read_events(name, start_ms, end_ms, limit)

    def event_aggregate(self, q: EventAggregate) -> list[Bucket]:
        return self._data.event_aggregate(q)

    def event_exclusions(self, q: EventAggregate) -> list[ExclusionBucket]:
        return self._data.event_exclusions(q)

    def event_rolling_unique(self, q: RollingUnique) -> list[Bucket]:
        return self._data.event_rolling_unique(q)

    def event_funnel(self, q: Funnel) -> list[FunnelRow]:
        return self._data.event_funnel(q)

    def event_retention(self, q: Retention) -> list[RetentionRow]:
        return self._data.event_retention(q)

    def arm_moments(self, q: ArmMoments) -> list[ArmMomentsRow]:
        return self._data.arm_moments(q)

    def kpi_state(self, q: StateQuery) -> list[StateRow]:
        return self._data.kpi_state(q)

    def kpi_conversion(self, q: ConversionQuery) -> list[ConversionRow]:
        return self._data.kpi_conversion(q)

    def newest_event_ms(self, names: Sequence[str]) -> int | None:
        return self._data.newest_event_ms(names)

    def kpi_sql(self, query: str, params: Mapping[str, int]) -> SqlResult:
        return self._data.kpi_sql(query, params)

    # --- what the data-quality monitors read (storage/quality_records.py) -------------------
    def event_counts(self, start_ms: int, end_ms: int, width_ms: int) -> list[NameCount]:
        return self._data.event_counts(start_ms, end_ms, width_ms)

    def event_names_newest(self) -> dict[str, int]:
        return self._data.event_names_newest()

    def event_prop_profile(self, start_ms: int, end_ms: int) -> PropProfile:
        return self._data.event_prop_profile(start_ms, end_ms)

    def sample_counts(self, start_ms: int, end_ms: int, width_ms: int) -> list[NameCount]:
        return self._data.sample_counts(start_ms, end_ms, width_ms)

    def save_token(self, token: TokenRecord) -> None:
        self._state.save_token(token)

    def tokens(self) -> list[TokenRecord]:
        return self._state.tokens()

    def record_kpi_version(self, version: KpiVersion) -> None:
        self._state.record_kpi_version(version)

    def kpi_versions(self, name: str) -> list[KpiVersion]:
        return self._state.kpi_versions(name)

    def kpi_names(self) -> list[str]:
        return self._state.kpi_names()

    def record_manual_kpi_value(self, value: ManualKpiValue) -> None:
        self._state.record_manual_kpi_value(value)

    def manual_kpi_values(self, kpi: str, start_ms: int, end_ms: int) -> list[ManualKpiValue]:
        return self._state.manual_kpi_values(kpi, start_ms, end_ms)

    def manual_kpi_period_values(
        self, kpi: str, starts: Sequence[int], ends: Sequence[int]
    ) -> dict[int, float]:
        return self._state.manual_kpi_period_values(kpi, starts, ends)

    def newest_manual_kpi_ms(self, kpi: str) -> int | None:
        return self._state.newest_manual_kpi_ms(kpi)

    def record_notifications(self, recs: Sequence[NotificationRecord]) -> None:
        self._state.record_notifications(recs)

    def finish_notifications(self, outcomes: Sequence[NotificationOutcome]) -> None:
        self._state.finish_notifications(outcomes)

    def notifications(self, f: NotificationFilter) -> list[NotificationRecord]:
        return self._state.notifications(f)

    def pending_notifications(self) -> list[NotificationRecord]:
        return self._state.pending_notifications()

    def recent_notifications(self, since_ms: int) -> list[NotificationRecord]:
        return self._state.recent_notifications(since_ms)

    def prune_alert_log(self, before_ms: int) -> int:
        return self._state.prune_alert_log(before_ms)

    def save_silence(self, s: SilenceRow) -> None:
        self._state.save_silence(s)

    def silences(self) -> list[SilenceRow]:
        return self._state.silences()

    def save_ack(self, ack: AckRow) -> None:
        self._state.save_ack(ack)

    def delete_ack(self, fingerprint: str) -> None:
        self._state.delete_ack(fingerprint)

    def acks(self) -> list[AckRow]:
        return self._state.acks()

    def record_timeline(self, entries: Sequence[TimelineEntry]) -> int:
        return self._state.record_timeline(entries)

    def timeline(self, fingerprint: str) -> list[TimelineEntry]:
        return self._state.timeline(fingerprint)

    def timeline_entries(self, kinds: Sequence[str], since_ms: int) -> list[TimelineEntry]:
        return self._state.timeline_entries(kinds, since_ms)

    def claim_action(self, claim: ActionClaim) -> bool:
        return self._state.claim_action(claim)

    def finish_action(self, key: str, status: str, at_ms: int) -> None:
        self._state.finish_action(key, status, at_ms)

    def save_initiative(self, record: InitiativeRecord) -> bool:
        return self._state.save_initiative(record)

    def initiatives(self) -> list[InitiativeRecord]:
        return self._state.initiatives()

    def record_review(self, review: KpiReview) -> None:
        self._state.record_review(review)

    def kpi_reviews(self, kpi: str, limit: int) -> list[KpiReview]:
        return self._state.kpi_reviews(kpi, limit)

    def latest_reviews(self, kpis: Sequence[str]) -> dict[str, KpiReview]:
        return self._state.latest_reviews(kpis)

    def source_cursor(self, source: str) -> SourceCursor | None:
        return self._state.source_cursor(source)

    def save_source_cursor(self, cursor: SourceCursor) -> None:
        self._state.save_source_cursor(cursor)

    def record_source_run(self, run: SourceRun) -> None:
        self._state.record_source_run(run)

    def source_runs(self) -> list[SourceRun]:
        return self._state.source_runs()

    def claim_report_run(self, run: ReportRun, deliveries: Sequence[ReportDelivery]) -> bool:
        return self._state.claim_report_run(run, deliveries)

    def update_report_run(self, run: ReportRun) -> None:
        self._state.update_report_run(run)

    def update_report_delivery(self, delivery: ReportDelivery) -> None:
        self._state.update_report_delivery(delivery)

    def report_run(self, run_id: str) -> ReportRun | None:
        return self._state.report_run(run_id)

    def report_deliveries(self, run_ids: Sequence[str]) -> list[ReportDelivery]:
        return self._state.report_deliveries(run_ids)

    def report_runs(self, report: str, limit: int) -> list[ReportRun]:
        return self._state.report_runs(report, limit)

    def latest_report_runs(
        self, reports: Sequence[str], trigger: Trigger | None = None
    ) -> dict[str, ReportRun]:
        return self._state.latest_report_runs(reports, trigger)

    def unfinished_report_runs(self, now_ms: int) -> list[ReportRun]:
        return self._state.unfinished_report_runs(now_ms)

    def report_schedule_since(self, report: str, now_ms: int) -> int:
        return self._state.report_schedule_since(report, now_ms)

    def hold_lease(self, name: str, holder: str, now_ms: int, ttl_ms: int) -> bool:
        return self._state.hold_lease(name, holder, now_ms, ttl_ms)

    def release_lease(self, name: str, holder: str) -> None:
        self._state.release_lease(name, holder)
