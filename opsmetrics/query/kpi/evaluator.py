"""KpiEvaluator: a catalog KPI's values over calendar periods, with targets, status,
comparisons, Wilson intervals for rates, freshness and the definition version.

Semantics (docs/kpi_evaluation.md): periods are calendar-aligned in `tz`; a period that starts
after now has no value; the current period holds the value so far (promql: evaluated at now).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from opsmetrics.catalog.kpi_model import Grain, KpiDefinition, ManualFormula, Unit
from opsmetrics.catalog.kpis import Catalog
from opsmetrics.clock import Clock
from opsmetrics.errors import BadDataError
from opsmetrics.query.events import check_tz
from opsmetrics.query.kpi import periods as cal
from opsmetrics.query.kpi.compare import compare_period
from opsmetrics.query.kpi.context import EvalContext, SharedValues
from opsmetrics.query.kpi.exclusions import Excluded
from opsmetrics.query.kpi.formulas import compute
from opsmetrics.query.kpi.freshness import newest_input_ms
from opsmetrics.query.kpi.model import (
    Cell,
    Compare,
    Group,
    KpiPoint,
    KpiSeries,
    Period,
    Values,
)
from opsmetrics.query.kpi.stats import wilson
from opsmetrics.query.kpi.status import attainment_of, change_of, status_of
from opsmetrics.storage.base import Storage
from opsmetrics.storage.kpi_records import ManualKpiValue

_RATE_UNITS = (Unit.PERCENT, Unit.RATIO)


class KpiEvaluator:
    def __init__(self, storage: Storage, catalog: Catalog, clock: Clock) -> None:
        self._storage = storage
        self._catalog = catalog
        self._clock = clock

    def series(
        self,
        name: str,
        start_ms: int,
        end_ms: int,
        *,
        grain: Grain | None = None,
        tz: str = "UTC",
        compare: Compare | None = None,
        by: Sequence[str] = (),
        shared: SharedValues | None = None,
    ) -> KpiSeries:
        """Values of the periods overlapping [start_ms, end_ms), sorted by (start, group).

        `shared` (get-or-compute by key) lets a caller that evaluates many KPIs at once share
        the values of a KPI that several formulas read (a dashboard: revenue, orders and
        revenue / orders), for the time the caller keeps them."""
        kpi = self._catalog.get(name)
        grain = grain or kpi.grain
        check_tz(tz)
        _check_by(kpi, by)
        now = self._clock.now_ms()
        ctx = EvalContext(self._storage, self._catalog, now, grain, tz, tuple(by), shared)
        periods = cal.periods(start_ms, end_ms, grain, tz)

        def of(ps: Sequence[Period]) -> Values:
            return ctx.kpi_values(name, ps, lambda: compute(ctx, kpi.formula, ps, name))

        values = of(periods)
        compared = None
        if compare is not None:
            earlier = [compare_period(p, compare, grain, tz) for p in periods]
            compared = _masked(of(earlier), earlier, ctx.now_ms)
        points = _points(kpi, periods, _masked(values, periods, ctx.now_ms), compared, tz)
        freshness = newest_input_ms(self._storage, self._catalog, kpi)
        excluded = Excluded(values.excluded)
        return KpiSeries(kpi, grain, tz, points, freshness, self._version(name), excluded)

    def current(self, name: str, *, tz: str = "UTC") -> KpiPoint:
        """The latest complete period at the KPI's grain, compared with the one before."""
        return self.current_series(name, tz=tz).points[0]

    def current_series(self, name: str, *, tz: str = "UTC") -> KpiSeries:
        """`current` as a one-point series, with what its evaluation excluded."""
        kpi = self._catalog.get(name)
        check_tz(tz)
        now = self._clock.now_ms()
        start = cal.add(cal.floor(now, kpi.grain, tz), kpi.grain, -1, tz)
        return self.series(name, start, start + 1, tz=tz, compare=Compare.PREVIOUS)

    def record_manual(self, name: str, ts_ms: int, value: float, author: str, note: str) -> None:
        kpi = self._catalog.get(name)
        if not isinstance(kpi.formula, ManualFormula):
            raise BadDataError(f"KPI {name!r} is not a manual KPI; its values are computed")
        if not math.isfinite(value):
            raise BadDataError(f"value: must be a finite number, got {value}")
        if not author.strip():
            raise BadDataError("author: say who entered the value")
        now = self._clock.now_ms()
        self._storage.record_manual_kpi_value(ManualKpiValue(name, ts_ms, value, author, note, now))

    def _version(self, name: str) -> int | None:
        versions = self._storage.kpi_versions(name)
        return versions[-1].version if versions else None


def _check_by(kpi: KpiDefinition, by: Sequence[str]) -> None:
    unknown = [d for d in by if d not in kpi.dimensions]
    if unknown:
        allowed = ", ".join(kpi.dimensions) or "none"
        raise BadDataError(
            f"by: {kpi.name} has no dimension {unknown[0]!r}; its dimensions: {allowed}"
        )
    if len(set(by)) != len(by):
        raise BadDataError("by: a dimension is named twice")


def _masked(values: Values, periods: Sequence[Period], now_ms: int) -> Values:
    """Periods that have not started yet have no value."""
    future = [p.start_ms > now_ms for p in periods]
    cells = {
        g: [Cell(None) if later else c for c, later in zip(cs, future, strict=True)]
        for g, cs in values.cells.items()
    }
    return Values(cells, values.is_count, values.excluded)


def _points(
    kpi: KpiDefinition,
    periods: Sequence[Period],
    values: Values,
    compared: Values | None,
    tz: str,
) -> list[KpiPoint]:
    targets = [_target(kpi, p, tz) for p in periods]
    points = []
    for group, cells in values.cells.items():
        earlier = _compare_cells(compared, group, len(periods))
        for p, cell, target, before in zip(periods, cells, targets, earlier, strict=True):
            points.append(_point(kpi, p, cell, target, before, group))
    points.sort(key=lambda pt: (pt.start_ms, pt.group))
    return points


def _compare_cells(compared: Values | None, group: Group, n: int) -> list[float | None]:
    if compared is None:
        return [None] * n
    cells = compared.cells.get(group) or compared.cells.get(()) or [Cell(None)] * n
    return [c.value for c in cells]


def _target(kpi: KpiDefinition, p: Period, tz: str) -> float | None:
    return None if kpi.target is None else kpi.target.at(cal.local_date(p.start_ms, tz))


def _point(
    kpi: KpiDefinition,
    p: Period,
    cell: Cell,
    target: float | None,
    before: float | None,
    group: Group,
) -> KpiPoint:
    ci = None
    if cell.hits is not None and cell.size and kpi.unit in _RATE_UNITS:
        ci = wilson(cell.hits, cell.size)
    return KpiPoint(
        start_ms=p.start_ms,
        end_ms=p.end_ms,
        value=cell.value,
        target=target,
        status=status_of(cell.value, target, kpi.thresholds, kpi.direction),
        compare=before,
        change=change_of(cell.value, before),
        attainment=attainment_of(cell.value, target, kpi.direction),
        sample_size=cell.size,
        ci_low=ci[0] if ci else None,
        ci_high=ci[1] if ci else None,
        group=group,
        note=cell.note,
    )
