"""One plain sentence per anomaly or level shift in a report's window, from the analysis layer:
its size, when (in the report's time zone), the dimension value that moved most, and the
annotation it coincided with. Executive wording has no jargon; engineering has every number.

The series analysed is hourly over the two weeks before the slot for windows up to a week,
else daily over 120 days, so that the seasonal baseline (analysis/baseline.py) has history.
A run of flagged points is one event, told at its peak.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from opsmetrics.analysis.anomalies import Anomaly, detect
from opsmetrics.analysis.changepoints import ChangePoint
from opsmetrics.analysis.series import Series
from opsmetrics.catalog.kpi_model import Grain, KpiDefinition
from opsmetrics.dashboards.format import Format
from opsmetrics.errors import OpsMetricsError
from opsmetrics.query.kpi import KpiEvaluator
from opsmetrics.reports.figures import DAY_MS, HOUR_MS, local_text

#: Events told per KPI (the largest first), dimensions tried per event.
MAX_EVENTS = 3
MAX_DIMENSIONS = 3
Annotation = dict[str, Any]


@dataclass(frozen=True, slots=True)
class Explanation:
    kind: str  # anomaly | change
    ts: int
    sentence: str
    #: (dimension, value) that moved most, if the KPI has dimensions.
    top: tuple[str, str] | None = None
    annotation: str | None = None


@dataclass(frozen=True, slots=True)
class Scope:
    """What an explanation is about: a KPI over [start, end), analysed at `grain`."""

    evaluator: KpiEvaluator
    kpi: KpiDefinition
    start_ms: int
    end_ms: int
    tz: str
    grain: Grain
    technical: bool  # engineering wording

    @property
    def step_ms(self) -> int:
        return HOUR_MS if self.grain is Grain.HOUR else DAY_MS


def analysis_scope(
    evaluator: KpiEvaluator, kpi: KpiDefinition, window: tuple[int, int], tz: str, technical: bool
) -> Scope:
    grain = Grain.HOUR if window[1] - window[0] <= 7 * DAY_MS else Grain.DAY
    return Scope(evaluator, kpi, window[0], window[1], tz, grain, technical)


def explain(scope: Scope, annotations: Sequence[Annotation]) -> list[Explanation]:
    """The anomalies and level shifts inside the window, each told in one sentence."""
    series = _series(scope)
    if series is None:
        return []
    try:
        found = detect(series)
    except OpsMetricsError:
        return []
    inside = [a for a in _peaks(found.anomalies, scope.step_ms) if _within(scope, a.ts)]
    shifts = [c for c in _lasting(found.change_points, scope.end_ms) if _within(scope, c.ts)]
    inside = sorted(inside, key=lambda a: -abs(a.score))[:MAX_EVENTS]
    shifts = sorted(shifts, key=lambda c: -abs(c.delta))[: max(0, MAX_EVENTS - len(inside))]
    told = [_anomaly(scope, a, annotations) for a in inside]
    told += [_shift(scope, c, annotations) for c in shifts]
    return sorted(told, key=lambda e: e.ts)


def _within(scope: Scope, ts: int) -> bool:
    return scope.start_ms <= ts < scope.end_ms


def _lasting(shifts: Sequence[ChangePoint], end_ms: int) -> list[ChangePoint]:
    """The shifts whose new level holds: a shift undone by the next one before the window
    ends is a blip (the anomalies tell those), not a new level."""
    kept: list[ChangePoint] = []
    undone = False
    for c, after in zip(shifts, [*shifts[1:], None], strict=False):
        if undone:
            undone = False
            continue
        if after is not None and after.ts < end_ms and after.delta * c.delta < 0:
            undone = True
            continue
        kept.append(c)
    return kept


def _series(scope: Scope) -> Series | None:
    history = 14 * DAY_MS if scope.grain is Grain.HOUR else 120 * DAY_MS
    start = scope.end_ms - history
    got = scope.evaluator.series(scope.kpi.name, start, scope.end_ms, grain=scope.grain,
                                 tz=scope.tz)  # fmt: skip
    points = [p for p in got.points if not p.group and p.end_ms <= scope.end_ms]
    if len(points) < 8:
        return None
    ts = np.array([p.start_ms for p in points], dtype=np.int64)
    values = np.array([math.nan if p.value is None else p.value for p in points])
    return Series(ts, values, scope.kpi.name, scope.kpi.unit.value, scope.step_ms)


def _peaks(found: Sequence[Anomaly], step_ms: int) -> list[Anomaly]:
    """One anomaly per run of flagged points (at most a step apart): the largest."""
    runs: list[list[Anomaly]] = []
    for a in sorted(found, key=lambda x: x.ts):
        if runs and a.ts - runs[-1][-1].ts <= step_ms:
            runs[-1].append(a)
        else:
            runs.append([a])
    return [max(run, key=lambda x: abs(x.score)) for run in runs]


def _anomaly(scope: Scope, a: Anomaly, annotations: Sequence[Annotation]) -> Explanation:
    fmt = Format.of(scope.kpi)
    top = _top_dimension(scope, a.ts, a.value - a.expected)
    note = coincided(annotations, a.ts, scope.step_ms)
    when = local_text(a.ts, scope.tz)
    pct = f", {(a.value / a.expected - 1) * 100:+.0f}%" if a.expected else ""
    if scope.technical:
        text = (
            f"{scope.kpi.name}: {fmt(a.value)} at {when} {_zone(scope)}, {a.score:+.1f}σ from "
            f"the seasonal baseline (expected {fmt(a.expected_low)}–{fmt(a.expected_high)})"
        )
    else:
        high = "high" if a.value > a.expected else "low"
        text = (f"{scope.kpi.title} was unusually {high} on {when} ({fmt(a.value)} against about "
                f"{fmt(a.expected)} expected{pct})")  # fmt: skip
    text += _top_words(scope, top, fmt) + _note_words(scope, note) + "."
    return Explanation("anomaly", a.ts, text, top[:2] if top else None, _title(note))


def _shift(scope: Scope, c: ChangePoint, annotations: Sequence[Annotation]) -> Explanation:
    fmt = Format.of(scope.kpi)
    top = _top_dimension(scope, c.ts, c.delta, before_after=True)
    note = coincided(annotations, c.ts, scope.step_ms)
    when = local_text(c.ts, scope.tz)
    pct = f" ({(c.after / c.before - 1) * 100:+.0f}%)" if c.before else ""
    if scope.technical:
        text = (
            f"{scope.kpi.name}: level shift at {when} {_zone(scope)} from "
            f"{fmt(c.before)} to {fmt(c.after)}{pct} (change point, deseasonalised)"
        )
    else:
        way = "rose" if c.delta > 0 else "fell"
        text = (f"{scope.kpi.title} {way} to a new level from {when}: about {fmt(c.after)}, "
                f"against {fmt(c.before)} before{pct}")  # fmt: skip
    text += _top_words(scope, top, fmt) + _note_words(scope, note) + "."
    return Explanation("change", c.ts, text, top[:2] if top else None, _title(note))


def _zone(scope: Scope) -> str:
    return scope.tz


def _top_words(scope: Scope, top: tuple[str, str, float, float] | None, fmt: Format) -> str:
    if top is None:
        return ""
    dim, value, delta, share = top
    if scope.technical:
        part = f", {share * 100:.0f}% of the deviation" if 0 < share <= 1.5 else ""
        return f"; top dimension {dim}={value} ({fmt.signed(delta)} vs its usual{part})"
    return f"; most of the change came from {dim} {value}"


def _note_words(scope: Scope, note: Annotation | None) -> str:
    if note is None:
        return ""
    kind = note.get("kind") or "annotation"
    if scope.technical:
        at = local_text(int(note["ts"]), scope.tz)
        return f"; coincided with {kind} annotation '{note.get('title', '')}' at {at}"
    return f"; it coincided with the {kind} “{note.get('title', '')}”"


def _title(note: Annotation | None) -> str | None:
    return None if note is None else str(note.get("title", ""))


def coincided(annotations: Sequence[Annotation], ts: int, step_ms: int) -> Annotation | None:
    """The annotation at the event: one spanning it, else the nearest within two steps
    before or one after (deploys and incidents first)."""
    near = []
    for a in annotations:
        start, end = int(a["ts"]), a.get("end_ts")
        if end is not None and start <= ts <= int(end):
            near.append((0, 0, a))
        elif ts - 2 * step_ms <= start <= ts + step_ms:
            rank = 0 if a.get("kind") in ("deploy", "incident") else 1
            near.append((1 + rank, abs(ts - start), a))
    return min(near, key=lambda x: (x[0], x[1]))[2] if near else None


def _top_dimension(
    scope: Scope, ts: int, deviation: float, *, before_after: bool = False
) -> tuple[str, str, float, float] | None:
    """(dimension, value, its change, its share of the deviation) of the group that moved
    most in the direction of the event: an anomaly against the same hour (day) of the week
    before, a level shift by its mean after against before."""
    best: tuple[str, str, float, float] | None = None
    for dim in scope.kpi.dimensions[:MAX_DIMENSIONS]:
        for value, delta in _group_deltas(scope, dim, ts, before_after).items():
            if delta * deviation <= 0:
                continue
            if best is None or abs(delta) > abs(best[2]):
                best = (dim, value, delta, delta / deviation if deviation else 0.0)
    return best


def _group_deltas(scope: Scope, dim: str, ts: int, before_after: bool) -> dict[str, float]:
    step = scope.step_ms
    span = (24 if before_after else 7 * DAY_MS // step if step < DAY_MS else 28) * step
    end = min(ts + (span if before_after else step), scope.end_ms)
    got = scope.evaluator.series(scope.kpi.name, ts - span, end, grain=scope.grain,
                                 tz=scope.tz, by=(dim,))  # fmt: skip
    groups: dict[str, dict[int, float]] = {}
    for p in got.points:
        if p.group and p.value is not None:
            groups.setdefault(dict(p.group)[dim], {})[p.start_ms] = p.value
    cycle = DAY_MS if step < DAY_MS else 7 * DAY_MS
    out = {}
    for value, by_ts in groups.items():
        delta = _delta(by_ts, ts, cycle, before_after)
        if delta is not None:
            out[value] = delta
    return out


def _delta(by_ts: dict[int, float], ts: int, cycle: int, before_after: bool) -> float | None:
    if before_after:
        before = [v for t, v in by_ts.items() if t < ts]
        after = [v for t, v in by_ts.items() if t >= ts]
        if not before or not after:
            return None
        return statistics.fmean(after) - statistics.fmean(before)
    usual = [v for t, v in by_ts.items() if t < ts and (ts - t) % cycle == 0]
    if ts not in by_ts or not usual:
        return None
    return by_ts[ts] - statistics.median(usual)
