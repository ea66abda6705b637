"""The five monitors as functions of what the stores answered (analysis/quality_assess.py
gathers it): each returns a `Check`."""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np

from opsmetrics.analysis.anomalies import is_anomalous_now
from opsmetrics.analysis.quality import Check, PropStat, Status
from opsmetrics.analysis.series import HOUR_MS, Series
from opsmetrics.catalog.quality import Monitor, SourceRules
from opsmetrics.durations import format_duration_ms
from opsmetrics.storage.quality_records import PropProfile

#: Fewer events than this in a window: too few to judge completeness or drift.
MIN_EVENTS = 10
#: A property on at least this share of the baseline's events is expected in the recent ones.
EXPECTED_SHARE = 0.5


def expected_freshness_ms(gaps_ms: np.ndarray, rules: SourceRules) -> int:
    """The set freshness, else the 99th percentile arrival gap × the factor (with a floor)."""
    if rules.freshness_ms is not None:
        return rules.freshness_ms
    if not len(gaps_ms):
        return rules.min_freshness_ms
    learned = float(np.percentile(gaps_ms, 99)) * rules.freshness_factor
    return max(rules.min_freshness_ms, int(learned))


def freshness(last_seen_ms: int | None, expected_ms: int, now_ms: int) -> Check:
    if last_seen_ms is None:
        return Check(Monitor.FRESHNESS, Status.UNKNOWN, "no data yet")
    age = max(0, now_ms - last_seen_ms)
    within = f"expected within {format_duration_ms(expected_ms)}"
    if age > expected_ms:
        text = f"no data for {_rounded(age)}; {within}"
        return Check(Monitor.FRESHNESS, Status.CRITICAL, text, age / 1000)
    return Check(Monitor.FRESHNESS, Status.OK, f"last data {_ago(age)}; {within}", age / 1000)


def _ago(age_ms: int) -> str:
    return "just now" if age_ms < 1000 else f"{_rounded(age_ms)} ago"


def _rounded(ms: int) -> str:
    """To the second; past an hour, to the minute."""
    unit = 60_000 if ms >= 3_600_000 else 1000
    return format_duration_ms(ms // unit * unit)


def hourly_series(name: str, counts: Mapping[int, int], start_ms: int, end_ms: int) -> Series:
    """Counts per hour in [start, end); hours before the first count are gaps (NaN)."""
    ts = np.arange(start_ms, end_ms, HOUR_MS, dtype=np.int64)
    values = np.array([counts.get(int(t), 0) for t in ts], dtype=np.float64)
    seen = np.flatnonzero(values)
    values[: seen[0] if len(seen) else len(values)] = np.nan
    return Series(ts, values, name, "", HOUR_MS)


def volume(series: Series, threshold: float) -> Check:
    """The last hour of `series` (the last complete one) against its seasonal baseline."""
    if not len(series.ts) or math.isnan(series.values[-1]):
        return Check(Monitor.VOLUME, Status.UNKNOWN, "no rows counted yet")
    flagged, score, text = is_anomalous_now(series, int(series.ts[-1]), threshold=threshold)
    value = float(series.values[-1])
    if math.isnan(score):
        return Check(Monitor.VOLUME, Status.UNKNOWN, text, value)
    status = Status.WARNING if flagged else Status.OK
    return Check(Monitor.VOLUME, status, f"{int(value)} in the last hour; {text}", value)


def prop_stats(
    name: str, recent: PropProfile, kpi_props: Mapping[str, set[str]]
) -> tuple[PropStat, ...]:
    """Every property seen on the recent events, and every one a KPI reads."""
    total = recent.totals.get(name, 0)
    by_prop: dict[str, dict[str, int]] = {p: {} for p in kpi_props}
    for row in recent.props:
        if row.name == name:
            by_prop.setdefault(row.prop, {})[row.kind] = row.count
    out = []
    for prop, kinds in sorted(by_prop.items()):
        nulls = kinds.get("null", 0)
        values = sum(kinds.values()) - nulls
        types = tuple(sorted(k for k in kinds if k != "null"))
        used = tuple(sorted(kpi_props.get(prop, ())))
        out.append(PropStat(prop, _share(values, total), _share(nulls, total), types, used))
    return tuple(out)


def _share(n: int, total: int) -> float:
    return n / total if total else 0.0


def completeness(
    name: str,
    recent: PropProfile,
    baseline: PropProfile,
    kpi_props: Mapping[str, set[str]],
    tolerance: float,
) -> Check:
    """Each property a KPI reads: its recent share against the baseline's (or all events)."""
    if not kpi_props:
        return Check(Monitor.COMPLETENESS, Status.OK, "no KPI reads a property of it")
    if recent.totals.get(name, 0) < MIN_EVENTS:
        return Check(Monitor.COMPLETENESS, Status.UNKNOWN, "too few events in the last hour")
    now = {p.prop: p.present for p in prop_stats(name, recent, kpi_props)}
    before = {p.prop: p.present for p in prop_stats(name, baseline, kpi_props)}
    enough = baseline.totals.get(name, 0) >= MIN_EVENTS
    low = []
    for prop in sorted(kpi_props):
        expected = before.get(prop, 0.0) if enough else 1.0
        if now.get(prop, 0.0) < expected - tolerance:
            low.append(f"{prop} on {now.get(prop, 0.0):.0%} (was {expected:.0%})")
    worst = min(now.get(p, 0.0) for p in kpi_props)
    if low:
        text = "KPI properties missing more often: " + "; ".join(low)
        return Check(Monitor.COMPLETENESS, Status.WARNING, text, worst)
    return Check(Monitor.COMPLETENESS, Status.OK, f"KPI properties on {worst:.0%} or more", worst)


def schema_drift(name: str, recent: PropProfile, baseline: PropProfile) -> Check:
    """Properties the day before carried that are gone now, or now of another type."""
    if baseline.totals.get(name, 0) < MIN_EVENTS:
        return Check(Monitor.SCHEMA_DRIFT, Status.UNKNOWN, "no baseline yet (a day of events)")
    if recent.totals.get(name, 0) < MIN_EVENTS:
        return Check(Monitor.SCHEMA_DRIFT, Status.UNKNOWN, "too few events in the last hour")
    before = {p.prop: p for p in prop_stats(name, baseline, {})}
    now = {p.prop: p for p in prop_stats(name, recent, {})}
    changes = []
    for prop, was in sorted(before.items()):
        got = now.get(prop)
        if got is None and was.present + was.null >= EXPECTED_SHARE:
            changes.append(f"{prop} disappeared")
        elif got is not None and was.types and set(got.types) - set(was.types):
            new = ", ".join(sorted(set(got.types) - set(was.types)))
            changes.append(f"{prop} changed type: {', '.join(was.types)} → now also {new}")
    if changes:
        return Check(Monitor.SCHEMA_DRIFT, Status.WARNING, "; ".join(changes), len(changes))
    return Check(Monitor.SCHEMA_DRIFT, Status.OK, f"{len(now)} properties as before", 0)


def duplicates(count: int) -> Check:
    text = f"{count} duplicate events refused since this node started"
    return Check(Monitor.DUPLICATES, Status.OK, text, float(count))
