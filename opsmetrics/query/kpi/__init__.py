"""KPI evaluation: catalog KPIs as values per calendar period, with target attainment, status,
period comparisons, Wilson intervals for rates, freshness and version (docs/kpi_evaluation.md).

This is the interface web/ and cli/ code against:

    evaluator = KpiEvaluator(storage, catalog, clock)
    evaluator.series(name, start_ms, end_ms, grain=, tz=, compare=, by=) -> KpiSeries
    evaluator.current(name, tz=) -> KpiPoint
    evaluator.record_manual(name, ts_ms, value, author, note)
"""

from opsmetrics.query.kpi.evaluator import KpiEvaluator
from opsmetrics.query.kpi.model import (
    Compare,
    Group,
    KpiPoint,
    KpiQueryError,
    KpiSeries,
    Status,
)

__all__ = [
    "Compare",
    "Group",
    "KpiEvaluator",
    "KpiPoint",
    "KpiQueryError",
    "KpiSeries",
    "Status",
]
