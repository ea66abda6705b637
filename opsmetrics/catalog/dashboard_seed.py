"""The seed's JSON dashboard form, translated to the dashboard schema (docs/dashboards.md).

`{"dashboard_config": {"refresh_interval": 300, "sections": [{"name", "widgets": [{"type",
"metric", "metrics", "comparison", "format", "timeframe", "thresholds"}]}]}}` becomes `refresh:
300s`, section `title`, widget `kpi`/`kpis`, `compare`, `unit`, `range`. Line numbers move with
the keys, so problems still point at the line the user wrote.
"""

from __future__ import annotations

from typing import Any

from opsmetrics.catalog.yamlfile import LinePath

SEED_KEY = "dashboard_config"
#: Widget types that show several KPIs: their `metric` becomes a one-item `kpis`.
MULTI_KPI = ("trend_chart", "status_grid", "table")
_COMPARE = {
    "previous_month": "previous_period",
    "previous_week": "previous_period",
    "previous_day": "previous_period",
    "previous_quarter": "previous_period",
    "previous_period": "previous_period",
    "previous_year": "previous_year",
    "none": "none",
}
_TIMEFRAME_UNITS = {"minutes": "m", "hours": "h", "days": "d", "weeks": "w", "years": "y"}


def translate_seed(
    data: dict[str, Any], lines: dict[LinePath, int]
) -> tuple[dict[str, Any], dict[LinePath, int]]:
    """The seed form as a dashboard document, with the line of each translated key."""
    root = data[SEED_KEY]
    if not isinstance(root, dict):
        return {"sections": root}, {}
    moved: dict[LinePath, int] = {}
    out: dict[str, Any] = {}
    for key, value in root.items():
        new_key = "refresh" if key == "refresh_interval" else key
        if key == "sections" and isinstance(value, list):
            value = [_section(s, (SEED_KEY, key, i), lines, moved) for i, s in enumerate(value)]
        out[new_key] = value
        _move(lines, moved, (SEED_KEY, key), (new_key,))
    for key in data:
        if key != SEED_KEY:
            out[key] = data[key]
            _move(lines, moved, (key,), (key,))
    return out, moved


def _section(raw: Any, at: LinePath, lines: dict[LinePath, int], moved: dict[LinePath, int]) -> Any:
    if not isinstance(raw, dict):
        return raw
    new_at = at[1:]
    out: dict[str, Any] = {}
    for key, value in raw.items():
        new_key = "title" if key == "name" else key
        if key == "widgets" and isinstance(value, list):
            value = [
                _widget(w, (*at, key, j), (*new_at, key, j), lines, moved)
                for j, w in enumerate(value)
            ]
        out[new_key] = value
        _move(lines, moved, (*at, key), (*new_at, new_key))
    _move(lines, moved, at, new_at)
    return out


def _widget(
    raw: Any,
    at: LinePath,
    new_at: LinePath,
    lines: dict[LinePath, int],
    moved: dict[LinePath, int],
) -> Any:
    if not isinstance(raw, dict):
        return raw
    out: dict[str, Any] = {}
    for key, value in raw.items():
        new_key, new_value = _widget_key(str(raw.get("type")), key, value)
        out[new_key] = new_value
        _move(lines, moved, (*at, key), (*new_at, new_key))
    _move(lines, moved, at, new_at)
    return out


def _widget_key(kind: str, key: str, value: Any) -> tuple[str, Any]:
    if key == "metric":
        return ("kpis", [value]) if kind in MULTI_KPI else ("kpi", value)
    if key == "metrics":
        return "kpis", value
    if key == "comparison":
        return "compare", _COMPARE.get(str(value), value)
    if key == "format":
        return "unit", value
    if key == "timeframe":
        return "range", _timeframe(value)
    return key, value


def _timeframe(value: Any) -> Any:
    """`30_days` → `30d`; anything else is left for the duration check to report."""
    if not isinstance(value, str) or "_" not in value:
        return value
    count, _, unit = value.partition("_")
    suffix = _TIMEFRAME_UNITS.get(unit) or _TIMEFRAME_UNITS.get(unit + "s")
    return f"{count}{suffix}" if count.isdigit() and suffix else value


def _move(
    lines: dict[LinePath, int], moved: dict[LinePath, int], old: LinePath, new: LinePath
) -> None:
    """Copy the line of `old` and of everything under it to the same place under `new`."""
    for path, line in lines.items():
        if path[: len(old)] == old:
            moved.setdefault((*new, *path[len(old) :]), line)
