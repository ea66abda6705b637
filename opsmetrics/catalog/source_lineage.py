"""Lineage past the events: the SQL sources (config/sources/) whose rows a KPI's inputs are,
and the tables their queries read, so a KPI page shows where its numbers come from."""

from __future__ import annotations

from dataclasses import dataclass

from opsmetrics.catalog.kpi_lineage import InputKind, Lineage
from opsmetrics.catalog.sources import SourceSet, SqlSource


@dataclass(frozen=True, slots=True)
class SourceUpstream:
    #: The KPI input the source feeds: an event name or a series selector.
    input: str
    source: SqlSource


def _metric(selector: str) -> str:
    return selector.split("{", 1)[0]


def _feeds(source: SqlSource, kind: InputKind, name: str) -> bool:
    emit = source.spec.emit
    if kind is InputKind.EVENT:
        return emit.events is not None and emit.events.name == name
    if kind is InputKind.SERIES and emit.samples is not None:
        metric, columns = emit.samples.metric, emit.samples.value_columns()
        names = [f"{metric}_{c}" for c in columns] if len(columns) > 1 else [metric]
        return _metric(name) in names
    return False


def upstream_sources(lineage: Lineage, sources: SourceSet) -> list[SourceUpstream]:
    """Each (input, source) pair where a source's rows are what the KPI reads."""
    return [
        SourceUpstream(i.name, s)
        for i in lineage.inputs
        for s in sources.sources
        if _feeds(s, i.kind, i.name)
    ]
