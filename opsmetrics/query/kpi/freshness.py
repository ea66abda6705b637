"""Dataset freshness: the newest timestamp among a KPI's inputs (events, series, manual values),
following other KPIs it reads. `sql:` KPIs read views, whose freshness is not tracked (None)."""

from __future__ import annotations

import numpy as np

from opsmetrics.catalog.kpi_lineage import InputKind, LineageInput, formula_inputs
from opsmetrics.catalog.kpi_model import KpiDefinition
from opsmetrics.catalog.kpis import Catalog
from opsmetrics.query.selectors import parse_selector
from opsmetrics.storage.base import Storage


def newest_input_ms(storage: Storage, catalog: Catalog, kpi: KpiDefinition) -> int | None:
    leaves = leaf_inputs(catalog, kpi)
    events = sorted({i.name for _, i in leaves if i.kind is InputKind.EVENT})
    found = [storage.newest_event_ms(events)]
    found += [_newest_series_ms(storage, i.name) for _, i in leaves if i.kind is InputKind.SERIES]
    manual = {name for name, i in leaves if i.kind is InputKind.MANUAL}
    found += [storage.newest_manual_kpi_ms(name) for name in sorted(manual)]
    known = [t for t in found if t is not None]
    return max(known) if known else None


def leaf_inputs(catalog: Catalog, kpi: KpiDefinition) -> list[tuple[str, LineageInput]]:
    """(owning KPI, input) for every input that is not another KPI, transitively."""
    out: list[tuple[str, LineageInput]] = []
    seen: set[str] = set()
    todo = [kpi]
    while todo:
        current = todo.pop()
        if current.name in seen:
            continue
        seen.add(current.name)
        for item in formula_inputs(current.formula):
            if item.kind is InputKind.KPI and item.name in catalog:
                todo.append(catalog.get(item.name))
            else:
                out.append((current.name, item))
    return out


def _newest_series_ms(storage: Storage, selector: str) -> int | None:
    series = storage.select_series(parse_selector(selector).matchers)
    if not series:
        return None
    heads, _ = storage.series_heads(np.array([s.id for s in series], dtype=np.int64))
    newest = int(heads.max())
    return newest if newest > np.iinfo(np.int64).min else None
