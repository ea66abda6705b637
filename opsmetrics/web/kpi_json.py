"""The JSON shapes of the KPI API (docs/api.md#kpis): definitions, points, versions.

Times go out as RFC 3339 in UTC with a `Z`; values that are not finite go out as null.
"""

from __future__ import annotations

import json
import math
from datetime import UTC, date, datetime
from typing import Any

from opsmetrics.analysis.quality import SourceReport, stale_note
from opsmetrics.catalog.kpi_lineage import Lineage
from opsmetrics.catalog.kpi_model import FORMULA_KEYS, KpiDefinition, Target
from opsmetrics.query.kpi import KpiPoint, KpiSeries
from opsmetrics.query.kpi.exclusions import NOTHING, Excluded, InputExclusions
from opsmetrics.storage.base import KpiVersion
from opsmetrics.storage.exclusion_records import Reason

#: A formula key and the keys that belong with it in the definition as written.
_FORMULA_EXTRAS = {"use": ("params",)}


def rfc3339(ms: int) -> str:
    """`2026-01-01T00:00:00Z`, with `.123` only when there are milliseconds."""
    when = datetime.fromtimestamp(ms / 1000, UTC)
    text = when.isoformat(timespec="milliseconds" if ms % 1000 else "seconds")
    return text.replace("+00:00", "Z")


def number(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None


def target_json(target: Target | None) -> float | list[dict[str, Any]] | None:
    """A constant target as a number; one that changes over time as its steps."""
    if target is None:
        return None
    if len(target.steps) == 1 and target.steps[0].start == date.min:
        return target.steps[0].value
    return [{"from": s.start.isoformat(), "value": s.value} for s in target.steps]


def summary_json(kpi: KpiDefinition) -> dict[str, Any]:
    """What the KPI list shows of each definition."""
    return {
        "name": kpi.name,
        "title": kpi.title,
        "owner": kpi.owner,
        "level": kpi.level.value,
        "indicator": kpi.indicator.value,
        "unit": kpi.unit.value,
        "currency": kpi.display.currency,
        "decimals": kpi.display.decimals,
        "direction": kpi.direction.value,
        "cadence": kpi.cadence.value,
        "grain": kpi.grain.value,
        "target": target_json(kpi.target),
        "thresholds": {"warning": kpi.thresholds.warning, "critical": kpi.thresholds.critical},
        "tags": list(kpi.tags),
    }


def current_json(
    point: KpiPoint | None, error: str | None, excluded: Excluded = NOTHING
) -> dict[str, Any]:
    """The current value of a KPI in the list; `error` says why there is none, `note` why a
    value is null although the KPI evaluated, `excluded` what its evaluation left out."""
    if point is None:
        return {"current": None, "status": "unknown", "error": error}
    current = {"t": rfc3339(point.start_ms), "value": number(point.value)}
    current |= {"target": number(point.target), "note": point.note}
    meta = {"excluded": excluded_json(excluded)}
    return {"current": current, "status": point.status.value, "error": None, "meta": meta}


def formula_as_written(kpi: KpiDefinition) -> dict[str, Any]:
    """The formula key (and `params` of `use`) exactly as the file wrote it."""
    raw: dict[str, Any] = json.loads(kpi.definition_json)
    found: dict[str, Any] = {}
    for key in FORMULA_KEYS:
        if key in raw:
            found[key] = raw[key]
            found |= {extra: raw[extra] for extra in _FORMULA_EXTRAS.get(key, ()) if extra in raw}
    return found


def lineage_json(lineage: Lineage) -> dict[str, Any]:
    return {
        "inputs": [{"kind": i.kind.value, "name": i.name} for i in lineage.inputs],
        "dependents": [
            {"kind": d.kind, "name": d.name, "source": d.source} for d in lineage.dependents
        ],
    }


def version_json(version: KpiVersion) -> dict[str, Any]:
    return {
        "version": version.version,
        "hash": version.hash,
        "recorded": rfc3339(version.recorded_ms),
        "author": version.author,
        "diff": version.diff,
    }


def definition_json(
    kpi: KpiDefinition, lineage: Lineage, latest: KpiVersion | None
) -> dict[str, Any]:
    """Everything about one KPI: the summary fields, formula, source, lineage, latest version."""
    return summary_json(kpi) | {
        "description": kpi.description,
        "dimensions": list(kpi.dimensions),
        "formula": formula_as_written(kpi),
        "source": str(kpi.source),
        "hash": kpi.hash,
        "lineage": lineage_json(lineage),
        "version": version_json(latest) if latest is not None else None,
        "definition": json.loads(kpi.definition_json),
    }


def point_json(point: KpiPoint) -> dict[str, Any]:
    ci = None
    if point.ci_low is not None and point.ci_high is not None:
        ci = [number(point.ci_low), number(point.ci_high)]
    return {
        "t": rfc3339(point.start_ms),
        "value": number(point.value),
        "target": number(point.target),
        "status": point.status.value,
        "compare": number(point.compare),
        "change": number(point.change),
        "attainment": number(point.attainment),
        "sample_size": point.sample_size,
        "ci": ci,
        "group": dict(point.group),
        "note": point.note,
    }


def _reasons(source: Excluded | InputExclusions) -> dict[str, dict[str, int]]:
    return {r.value: source.by_reason(r) for r in Reason}


def excluded_json(excluded: Excluded) -> dict[str, Any]:
    """What the evaluation left out (docs/api.md#what-a-kpi-left-out): events in scope (`of`),
    those left out for a missing property or wrong type (`total`), counts per reason and
    field, the same per event, and one warning line per event with a data problem."""
    return {
        "total": excluded.total,
        "of": excluded.of,
        **_reasons(excluded),
        "events": [
            {"event": i.event, "total": i.total, "of": i.of, **_reasons(i)} for i in excluded.inputs
        ],
        "warnings": excluded.warnings(),
    }


def series_json(series: KpiSeries) -> dict[str, Any]:
    freshness = series.freshness_ms
    return {
        "kpi": series.kpi.name,
        "grain": series.grain.value,
        "tz": series.tz,
        "version": series.version,
        "freshness": rfc3339(freshness) if freshness is not None else None,
        "points": [point_json(p) for p in series.points],
        "meta": {"excluded": excluded_json(series.excluded)},
    }


def stale_json(stale: list[SourceReport]) -> list[dict[str, Any]]:
    """The stale sources a KPI reads: its value is not current (analysis/quality.py)."""
    return [
        {
            "source": s.id,
            "since": rfc3339(s.stale_since_ms or 0),
            "last_seen": rfc3339(s.last_seen_ms) if s.last_seen_ms is not None else None,
            "note": stale_note(s),
        }
        for s in stale
    ]
