"""Gather what the monitors need from the stores and judge every source (analysis/quality.py).

Sources: every event name stored; every metric, except those whose series all come from a job
of scrape.yaml, which belong to that job (`scrape:<job>`); our own output is left out. Windows:
volume compares the last complete hour with the previous 15 days (event counts in 5-minute
buckets give the arrival gaps too); completeness and drift compare the last hour's events with
the day before it. Metric cadence is learned from the freshest series of each source over the
last 6 hours; a scrape job's from its scrape interval. Hourly sample counts of closed hours are
kept between passes, so each pass counts only the hours since the last.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace

import numpy as np

from opsmetrics.analysis import quality_checks as checks
from opsmetrics.analysis.quality import Check, QualityReport, SourceReport, Status
from opsmetrics.analysis.quality_kpis import KpiReads, SourceRef, kpi_reads
from opsmetrics.analysis.series import DAY_MS, HOUR_MS, Series
from opsmetrics.catalog.kpis import Catalog
from opsmetrics.catalog.quality import Monitor, QualityConfig, SourceRules
from opsmetrics.model import Matcher
from opsmetrics.storage.base import Storage
from opsmetrics.storage.quality_records import NameCount, PropProfile

LOOKBACK_MS = 15 * DAY_MS
BUCKET_MS = 300_000
RECENT_MS = HOUR_MS
BASELINE_MS = DAY_MS
CADENCE_WINDOW_MS = 6 * HOUR_MS
#: Hours this recent may still receive late samples: counted again on every pass.
SETTLE_MS = 2 * HOUR_MS
#: What the monitors and alerting write themselves: not sources.
OWN_METRICS = frozenset(
    {
        "ALERTS",
        "ALERTS_FOR_STATE",
        "opsmetrics_quality_status",
        "opsmetrics_source_age_seconds",
        "opsmetrics_source_expected_freshness_seconds",
    }
)
#: Self-metrics of the SQL sources (judged as sql:<name>) and of these monitors.
OWN_PREFIXES = ("opsmetrics_source_", "opsmetrics_quality_")
#: The series a scrape writes about itself; they arrive even when the target is down.
SCRAPE_REPORTS = frozenset(
    {
        "up",
        "scrape_duration_seconds",
        "scrape_samples_scraped",
        "scrape_samples_post_metric_relabeling",
        "scrape_series_added",
    }
)


@dataclass(slots=True)
class _MetricSource:
    kind: str
    name: str
    metrics: set[str] = field(default_factory=set)
    heads: dict[int, int] = field(default_factory=dict)  # series id → newest ts (data series)


@dataclass(frozen=True, slots=True)
class SqlSourceInfo:
    """A SQL source of config/sources/ (catalog/sources.py): judged by its runs."""

    name: str
    interval_ms: int
    emits: str  # the source id of what it writes: event:<name> or metric:<name>


class HourlySampleCounts:
    """Samples per metric and hour; closed hours are counted once and kept."""

    def __init__(self) -> None:
        self._hours: dict[int, dict[str, int]] = {}

    def counts(self, storage: Storage, start_ms: int, end_ms: int) -> dict[str, dict[int, int]]:
        settled = (end_ms - SETTLE_MS) // HOUR_MS * HOUR_MS
        self._hours = {h: c for h, c in self._hours.items() if start_ms <= h < settled}
        first = start_ms
        while first in self._hours:
            first += HOUR_MS
        fresh: dict[int, dict[str, int]] = {}
        for row in storage.sample_counts(first, end_ms, HOUR_MS):
            fresh.setdefault(row.bucket, {})[row.name] = row.count
        for hour in range(first, settled, HOUR_MS):
            self._hours[hour] = fresh.get(hour, {})
        out: dict[str, dict[int, int]] = {}
        for hour, by_metric in {**self._hours, **fresh}.items():
            for metric, n in by_metric.items():
                out.setdefault(metric, {})[hour] = n
        return out


class QualityAssessor:
    def __init__(
        self,
        storage: Storage,
        catalog: Catalog,
        config: QualityConfig,
        scrape_intervals: Mapping[str, int],
        duplicates: Callable[[], Mapping[str, int]],
        sql_sources: Sequence[SqlSourceInfo] = (),
    ) -> None:
        self._storage = storage
        self._catalog = catalog
        self.config = config
        self._scrape = dict(scrape_intervals)
        self._duplicates = duplicates
        self._samples = HourlySampleCounts()
        self._sql = list(sql_sources)

    def assess(self, now_ms: int) -> QualityReport:
        reads = kpi_reads(self._catalog)
        hour_end = now_ms // HOUR_MS * HOUR_MS
        events = self._event_sources(now_ms, hour_end, reads)
        metrics, owners = self._metric_sources(now_ms, hour_end, reads)
        sql = self._sql_sources(now_ms, events + metrics)
        return QualityReport(now_ms, tuple(sql + events + metrics), owners)

    # --- SQL sources ----------------------------------------------------------------------
    def _sql_sources(self, now: int, others: list[SourceReport]) -> list[SourceReport]:
        """Each SQL source's freshness is that of its last successful run; what it writes is
        judged as its own source (`emits`), whose volume and KPIs it shows too."""
        if not self._sql:
            return []
        runs = {r.source: r for r in self._storage.source_runs()}
        emitted = {s.id: s for s in others}
        out = []
        for src in self._sql:
            rules = self.config.rules_for(f"sql:{src.name}")
            expected = checks.expected_freshness_ms(np.array([src.interval_ms], float), rules)
            run = runs.get(src.name)
            last = run.last_success_ms if run is not None else None
            fresh = checks.freshness(last, expected, now)
            if run is not None and run.error:
                failed = f"last run failed: {run.error}"
                fresh = replace(fresh, detail=f"{fresh.detail}; {failed}")
                if last is None:  # it has never worked: not "no data yet", a problem
                    fresh = Check(Monitor.FRESHNESS, Status.CRITICAL, f"no run succeeded; {failed}")
            written = emitted.get(src.emits)
            found = _apply([fresh, _written_volume(src.emits, written)], rules)
            kpis = written.kpis if written is not None else ()
            out.append(SourceReport("sql", src.name, last, expected, found, kpis))
        return out

    # --- events ---------------------------------------------------------------------------
    def _event_sources(self, now: int, hour_end: int, reads: KpiReads) -> list[SourceReport]:
        s = self._storage
        newest = s.event_names_newest()
        if not newest:
            return []
        start = hour_end - LOOKBACK_MS
        buckets = _by_name(s.event_counts(start, now, BUCKET_MS))
        recent = s.event_prop_profile(now - RECENT_MS, now)
        baseline = s.event_prop_profile(now - RECENT_MS - BASELINE_MS, now - RECENT_MS)
        dupes = self._duplicates()
        return [
            self._event_source(name, newest[name], buckets.get(name, {}), (recent, baseline),
                               dupes.get(name, 0), reads, (now, start, hour_end))
            for name in sorted(newest)
        ]  # fmt: skip

    def _event_source(
        self,
        name: str,
        last_seen: int,
        buckets: dict[int, int],
        profiles: tuple[PropProfile, PropProfile],
        dupes: int,
        reads: KpiReads,
        times: tuple[int, int, int],
    ) -> SourceReport:
        now, start, hour_end = times
        rules = self.config.rules_for(f"event:{name}")
        expected = checks.expected_freshness_ms(np.diff(sorted(buckets)), rules)
        hourly: dict[int, int] = {}
        for b, n in buckets.items():
            hour = start + (b - start) // HOUR_MS * HOUR_MS
            hourly[hour] = hourly.get(hour, 0) + n
        series = checks.hourly_series(name, hourly, start, hour_end)
        recent, baseline = profiles
        props = reads.props.get(name, {})
        found = [
            checks.freshness(last_seen, expected, now),
            checks.volume(series, rules.volume_threshold),
            checks.completeness(name, recent, baseline, props, rules.completeness_tolerance),
            checks.schema_drift(name, recent, baseline),
            checks.duplicates(dupes),
        ]
        kpis = tuple(reads.kpis_of(SourceRef("event", name)))
        stats = checks.prop_stats(name, recent, props)
        return SourceReport("event", name, last_seen, expected, _apply(found, rules), kpis, stats)

    # --- metrics and scrape jobs ----------------------------------------------------------
    def _metric_sources(
        self, now: int, hour_end: int, reads: KpiReads
    ) -> tuple[list[SourceReport], dict[str, str]]:
        groups, owners = self._groups()
        if not groups:
            return [], owners
        start = hour_end - LOOKBACK_MS
        counts = self._samples.counts(self._storage, start, now)
        gaps = self._cadence_gaps(groups, now)
        out = []
        for key in sorted(groups):
            g = groups[key]
            hourly: dict[int, int] = {}
            for metric in g.metrics:
                for hour, n in counts.get(metric, {}).items():
                    if hour < hour_end:
                        hourly[hour] = hourly.get(hour, 0) + n
            refs = [SourceRef("metric", m) for m in sorted(g.metrics)]
            kpis = sorted({k for r in refs for k in reads.kpis_of(r)})
            series = checks.hourly_series(key, hourly, start, hour_end)
            out.append(self._metric_source(g, gaps.get(key, np.empty(0)), series, now, kpis))
        return out, owners

    def _metric_source(
        self, g: _MetricSource, gaps: np.ndarray, series: Series, now: int, kpis: list[str]
    ) -> SourceReport:
        rules = self.config.rules_for(f"{g.kind}:{g.name}")
        if g.kind == "scrape" and rules.freshness_ms is None:
            gaps = np.array([self._scrape[g.name]], dtype=np.float64)
        expected = checks.expected_freshness_ms(gaps, rules)
        last_seen = max(g.heads.values()) if g.heads else None
        found = [
            checks.freshness(last_seen, expected, now),
            checks.volume(series, rules.volume_threshold),
        ]
        return SourceReport(g.kind, g.name, last_seen, expected, _apply(found, rules), tuple(kpis))

    def _groups(self) -> tuple[dict[str, _MetricSource], dict[str, str]]:
        """Series by source; and each metric's source id."""
        found = self._storage.select_series([Matcher.of("__name__", "=~", ".+")])
        series = [s for s in found if not _own(_metric(s.labels))]
        ids = np.array([s.id for s in series], dtype=np.int64)
        heads, _ = self._storage.series_heads(ids)
        scraped_only: dict[str, str | None] = {}
        for s in series:
            job = dict(s.labels).get("job")
            owner = job if job in self._scrape else None
            metric = _metric(s.labels)
            scraped_only[metric] = owner if scraped_only.get(metric, owner) == owner else None
        groups: dict[str, _MetricSource] = {}
        for s, head in zip(series, heads.tolist(), strict=True):
            metric = _metric(s.labels)
            job = scraped_only[metric]
            kind, name = ("scrape", job) if job is not None else ("metric", metric)
            g = groups.setdefault(f"{kind}:{name}", _MetricSource(kind, name))
            g.metrics.add(metric)
            if head > np.iinfo(np.int64).min and (kind == "metric" or metric not in SCRAPE_REPORTS):
                g.heads[s.id] = int(head)
        owners = {m: f"{g.kind}:{g.name}" for g in groups.values() for m in g.metrics}
        return groups, owners

    def _cadence_gaps(self, groups: dict[str, _MetricSource], now: int) -> dict[str, np.ndarray]:
        """Arrival gaps of each source's freshest series over the last hours."""
        freshest = {key: max(g.heads, key=g.heads.__getitem__) for key, g in groups.items()
                    if g.heads and g.kind == "metric"}  # fmt: skip
        if not freshest:
            return {}
        rows = self._storage.read_samples(sorted(freshest.values()), now - CADENCE_WINDOW_MS, now)
        out = {}
        for key, sid in freshest.items():
            ts = rows.ts[rows.series_ids == sid]
            out[key] = np.diff(ts).astype(np.float64)
        return out


def _written_volume(emits: str, written: SourceReport | None) -> Check:
    """A SQL source's volume is that of what it writes (its rows per hour), judged there."""
    check = written.check(Monitor.VOLUME) if written is not None else None
    if check is None:
        return Check(Monitor.VOLUME, Status.UNKNOWN, f"nothing written to {emits} yet", None, emits)
    return replace(check, detail=f"{emits}: {check.detail}", judged_at=emits)


def _own(metric: str) -> bool:
    return metric in OWN_METRICS or metric.startswith(OWN_PREFIXES)


def _metric(labels: tuple[tuple[str, str], ...]) -> str:
    return dict(labels).get("__name__", "")


def _by_name(rows: list[NameCount]) -> dict[str, dict[int, int]]:
    out: dict[str, dict[int, int]] = {}
    for r in rows:
        out.setdefault(r.name, {})[r.bucket] = r.count
    return out


def _apply(found: list[Check], rules: SourceRules) -> tuple[Check, ...]:
    """The checks, with the ones quality.yaml switched off for the source marked disabled."""
    return tuple(
        Check(c.monitor, Status.DISABLED, "disabled in quality.yaml")
        if c.monitor in rules.disabled
        else c
        for c in found
    )


__all__ = ["Monitor", "QualityAssessor"]
