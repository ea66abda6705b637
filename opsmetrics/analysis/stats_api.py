"""Requests of the statistics API shared by HTTP and the CLI: a correlation of two series given
as numbers or as PromQL / KPI sources over [start, end] at a step; experiment summaries."""

from __future__ import annotations

from typing import Any

import msgspec
import numpy as np

from opsmetrics.analysis.correlation import Labels, correlate
from opsmetrics.analysis.series import fetch_series
from opsmetrics.catalog.experiments import Experiment
from opsmetrics.catalog.kpis import Catalog
from opsmetrics.clock import Clock
from opsmetrics.durations import parse_duration_ms, parse_time_ms
from opsmetrics.errors import BadDataError
from opsmetrics.storage.base import Storage

Number = float | None


class Source(msgspec.Struct, forbid_unknown_fields=True):
    query: str | None = None
    kpi: str | None = None


class LabelsJSON(msgspec.Struct, forbid_unknown_fields=True):
    a: str | None = None
    b: str | None = None
    unit_a: str = ""
    unit_b: str = ""
    per: float | None = None


class CorrelationBody(msgspec.Struct, forbid_unknown_fields=True):
    a: list[Number] | Source
    b: list[Number] | Source
    start: str | float | None = None
    end: str | float | None = None
    step: str | float | None = None
    period: int | None = None
    max_lag: int = 24
    alpha: float = 0.05
    labels: LabelsJSON | None = None


def decode_correlation(raw: bytes) -> CorrelationBody:
    try:
        return msgspec.json.decode(raw, type=CorrelationBody)
    except msgspec.ValidationError as exc:
        raise BadDataError(f"invalid correlation body: {exc}") from None
    except msgspec.DecodeError as exc:
        raise BadDataError(f"invalid correlation body: not JSON ({exc})") from None


def correlation_request(raw: bytes, storage: Storage, catalog: Catalog, clock: Clock) -> Any:
    return run_correlation(decode_correlation(raw), storage, catalog, clock)


def _source_text(src: Source, field: str, catalog: Catalog) -> str:
    if (src.query is None) == (src.kpi is None):
        raise BadDataError(f'"{field}" needs exactly one of "query" (PromQL) or "kpi" (a name)')
    if src.kpi is not None and src.kpi not in catalog:
        raise BadDataError(f'"{field}.kpi": no KPI named {src.kpi!r} in the catalog')
    return src.query if src.query is not None else str(src.kpi)


def _time(v: str | float | None, field: str) -> int:
    if v is None:
        raise BadDataError(f'"{field}" is required when a series is a query or a KPI')
    return parse_time_ms(str(v), field=field)


def run_correlation(body: CorrelationBody, storage: Storage, catalog: Catalog, clock: Clock) -> Any:
    lb = body.labels or LabelsJSON()
    if isinstance(body.a, list) and isinstance(body.b, list):
        a = np.array([np.nan if v is None else v for v in body.a], dtype=np.float64)
        b = np.array([np.nan if v is None else v for v in body.b], dtype=np.float64)
        step = parse_duration_ms(str(body.step), field="step") if body.step is not None else 0
        start = _time(body.start, "start") if body.start is not None else 0
        ts = start + np.arange(len(a), dtype=np.int64) * np.int64(max(step, 1))
        deseason = step > 0 or body.period is not None
        names = (lb.a or "a", lb.b or "b")
    elif isinstance(body.a, Source) and isinstance(body.b, Source):
        start, end = _time(body.start, "start"), _time(body.end, "end")
        if body.step is None:
            raise BadDataError('"step" is required when a series is a query or a KPI (e.g. "1h")')
        step = parse_duration_ms(str(body.step), field="step")
        sa = fetch_series(
            storage, catalog, clock, _source_text(body.a, "a", catalog), start, end, step
        )
        sb = fetch_series(
            storage, catalog, clock, _source_text(body.b, "b", catalog), start, end, step
        )
        if len(sa) != len(sb):
            raise BadDataError(f'"a" has {len(sa)} points but "b" has {len(sb)} over the range')
        a, b, ts, deseason = sa.values, sb.values, sa.ts, True
        step = sa.step_ms
        names = (lb.a or sa.name, lb.b or sb.name)
    else:
        raise BadDataError('"a" and "b" must both be number lists or both be {query|kpi} sources')
    labels = Labels(names[0], names[1], lb.unit_a, lb.unit_b, lb.per)
    result = correlate(
        a,
        b,
        ts,
        max(step, 1),
        max_lag=body.max_lag,
        period=body.period,
        alpha=body.alpha,
        labels=labels,
        deseason=deseason,
    )
    return result.to_dict()


def experiment_summary(e: Experiment) -> dict[str, object]:
    return {
        "name": e.name,
        "title": e.title,
        "hypothesis": e.hypothesis,
        "owner": e.owner,
        "variants": [v.name for v in e.variants],
        "expected_split": e.split,
        "primary": e.primary.name,
        "guardrails": [g.name for g in e.guardrails],
        "sequential": e.sequential,
        "cuped": e.cuped.pre_period if e.cuped else None,
        "start": e.start.isoformat() if e.start else None,
        "end": e.end.isoformat() if e.end else None,
    }
