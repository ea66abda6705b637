"""A formula's cells with its exclusions applied: the report of what storage left out, and no
value (with a note) for a period whose every in-scope event was left out for a data problem and
that has no input left, instead of a count of 0 (exclusions.py).

Event formulas ask about their own aggregation; state, conversion and rolling-unique formulas
ask about the events they read as an aggregation that reads them the same way (the field, the
key, the filters) would (sources.py). A state's level held from earlier events is kept: it is
an input, and the report says what the period's events did not update."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from opsmetrics.query import events as ev
from opsmetrics.query.kpi.context import EvalContext
from opsmetrics.query.kpi.exclusions import InputExclusions, note, of_buckets, unusable
from opsmetrics.query.kpi.model import Cell, Group, Period
from opsmetrics.storage.exclusion_records import exclusion_checks

GroupOf = Callable[[dict[str, str]], Group]


def apply_exclusions(
    ctx: EvalContext,
    q: ev.EventAggregate,
    cells: dict[Group, list[Cell]],
    periods: Sequence[Period],
    group_of: GroupOf,
    empty: Cell,
) -> tuple[InputExclusions, ...]:
    """Ask storage what `q` left out; empty the cells of periods with no usable event.

    One more storage query per event formula, skipped when nothing can be left out (a count
    without filters)."""
    checks = exclusion_checks(q)
    if not checks:
        return ()
    buckets = ctx.storage.event_exclusions(q)
    index = {p.start_ms: i for i, p in enumerate(periods)}
    name = q.name or "any"
    for b in buckets:
        i = index.get(b.start_ms)
        if i is None or not unusable(checks, b):
            continue
        row = cells.setdefault(group_of(b.group), [empty] * len(periods))
        if not row[i].size:
            row[i] = Cell(None, 0, note=note(name, checks, b))
    return (of_buckets(name, checks, buckets),)


def reported(ctx: EvalContext, q: ev.EventAggregate) -> tuple[InputExclusions, ...]:
    """What `q` left out, for an input whose exclusions change no cell (a conversion's
    to-event: a conversion without it is simply not converted)."""
    checks = exclusion_checks(q)
    if not checks:
        return ()
    return (of_buckets(q.name or "any", checks, ctx.storage.event_exclusions(q)),)
