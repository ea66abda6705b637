"""`opsmetrics validate --data DIR`: the catalog's definitions checked against the stored data.

A definition can be valid and still read nothing: `nps` reads `props.score`, the responses
carry the score as their value, and every response is excluded. For each KPI this asks storage
what its event formulas would leave out over the last `window_ms` (exclusions.py) and names
each field that events lack or hold as something other than a number, with a hint when the
events carry a value instead and a parameter names the property.
"""

from __future__ import annotations

from collections.abc import Iterator

from opsmetrics.catalog.kpi_library import LIBRARY
from opsmetrics.catalog.kpi_library_base import StandardKpi
from opsmetrics.catalog.kpi_model import (
    CumulativeFormula,
    EventFormula,
    ExprFormula,
    KpiDefinition,
    LibraryFormula,
    Operand,
    RatioFormula,
)
from opsmetrics.catalog.kpis import Catalog
from opsmetrics.query import events as ev
from opsmetrics.query.kpi import sources
from opsmetrics.query.kpi.context import EvalContext
from opsmetrics.query.kpi.exclusions import InputExclusions, merged, of_buckets
from opsmetrics.query.kpi.formulas import expand
from opsmetrics.query.kpi.model import KpiQueryError
from opsmetrics.storage.base import Storage
from opsmetrics.storage.exclusion_records import Reason, exclusion_checks

DAY_MS = 86_400_000
WINDOW_MS = 30 * DAY_MS


def data_problems(
    storage: Storage, catalog: Catalog, now_ms: int, window_ms: int = WINDOW_MS
) -> list[str]:
    """`file:line: kpi reads … but N of M … events in the last 30 days have no …` lines."""
    problems: list[str] = []
    for kpi in catalog:
        ctx = EvalContext(storage, catalog, now_ms, kpi.grain, ev.UTC)
        try:
            found = _exclusions(ctx, kpi, now_ms - window_ms, now_ms)
        except KpiQueryError:
            continue  # a formula evaluation cannot run reports that itself
        for entry in found:
            problems += _lines(ctx, kpi, entry, window_ms, now_ms)
    return problems


def event_leaves(f: Operand) -> Iterator[EventFormula]:
    """The event formulas inside `f` (another KPI it names is checked on its own)."""
    match f:
        case EventFormula():
            yield f
        case LibraryFormula():
            yield from event_leaves(expand(f))
        case RatioFormula():
            yield from event_leaves(f.numerator)
            yield from event_leaves(f.denominator)
        case ExprFormula():
            for _, bound in f.bindings:
                yield from event_leaves(bound)
        case CumulativeFormula():
            yield from event_leaves(f.of)


def _exclusions(
    ctx: EvalContext, kpi: KpiDefinition, start: int, end: int
) -> tuple[InputExclusions, ...]:
    entries = []
    for leaf in event_leaves(kpi.formula):
        q = sources._aggregate(ctx, leaf, start, end, None)  # as the evaluation builds it
        checks = exclusion_checks(q)
        if checks:
            entries.append(of_buckets(leaf.name, checks, ctx.storage.event_exclusions(q)))
    return merged(entries)


def _lines(
    ctx: EvalContext, kpi: KpiDefinition, e: InputExclusions, window_ms: int, now_ms: int
) -> list[str]:
    days = f"in the last {window_ms // DAY_MS} days"
    at = f"{kpi.source}: {kpi.name} reads"
    lines = []
    for field, n in e.by_reason(Reason.MISSING_PROPERTY).items():
        hint = _value_hint(ctx, kpi, e.event, field, n, window_ms, now_ms)
        counted = f"{n} of {e.of} {e.event} events {days}"
        lines.append(f"{at} {field} but {counted} have no `{field}`{hint}")
    for field, n in e.by_reason(Reason.WRONG_TYPE).items():
        lines.append(
            f"{at} {field} as a number but {n} of {e.of} {e.event} events {days} hold "
            "something else there"
        )
    return lines


def _value_hint(
    ctx: EvalContext, kpi: KpiDefinition, event: str, field: str, n: int, window: int, now: int
) -> str:
    """ "; they carry `value` — set `score: value`" when the events have values instead."""
    if not field.startswith("props."):
        return ""
    q = ev.EventAggregate(event, ev.Agg.SUM, now - window, now, None)
    with_value = sum(b.sample_size for b in ev.aggregate(ctx.storage, q))
    if with_value < n:
        return ""
    param = _param_naming(kpi, field)
    fix = f" — set `{param}: value`" if param else ""
    return f"; they carry `value`{fix}"


def _param_naming(kpi: KpiDefinition, field: str) -> str | None:
    """The standard KPI's parameter (defaults included) whose value is `field`, if any."""
    f = kpi.formula
    entry = LIBRARY.get(f.name) if isinstance(f, LibraryFormula) else None
    if not isinstance(entry, StandardKpi) or not isinstance(f, LibraryFormula):
        return None
    given = dict(f.params)
    named = [p.name for p in entry.params if given.get(p.name, p.default) == field]
    return named[0] if named else None
