"""`opsmetrics kpi list | show NAME | values NAME`: KPIs of the running server, over its API.

The server owns the database, so these commands talk HTTP like `opsmetrics query`.
"""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer
import yaml
from rich.console import Console
from rich.table import Table

from opsmetrics.cli.importer import UrlOpt, quiet_http_log
from opsmetrics.client.transport import DEFAULT_URL, RetryPolicy, Transport

app = typer.Typer(
    help="KPIs of the running server: list them, show a definition, print values.",
    no_args_is_help=True,
)
console = Console()

TokenOpt = Annotated[
    str | None,
    typer.Option("--token", envvar="OPSMETRICS_TOKEN", help="Bearer token (scope read)."),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print the API response (JSON) as is.")]
_STATUS_STYLE = {"ok": "green", "warning": "yellow", "critical": "red", "unknown": "dim"}
_UNIT_SUFFIX = {
    "ms": " ms",
    "seconds": " s",
    "minutes": " min",
    "hours": " h",
    "days": " d",
    "bytes": " B",
    "per_second": "/s",
    "per_minute": "/min",
}


def api_get(url: str, token: str | None, path: str, params: dict[str, Any]) -> dict[str, Any]:
    quiet_http_log()
    transport = Transport(url, token, policy=RetryPolicy(max_retries=2, max_backoff=2.0))
    try:
        return transport.get(path, params)
    finally:
        transport.close()


@app.command("list")
def list_kpis(url: UrlOpt = DEFAULT_URL, token: TokenOpt = None, as_json: JsonOpt = False) -> None:
    """Every KPI with its owner, level, current value, target and status."""
    response = api_get(url, token, "/api/v1/kpis", {})
    if as_json:
        typer.echo(json.dumps(response))
        return
    console.print(list_table(response["data"]))
    for kpi in response["data"]:
        _print_warnings(kpi.get("meta"), f"{kpi['name']}: ")


@app.command("show")
def show(
    name: Annotated[str, typer.Argument(help="KPI name.")],
    url: UrlOpt = DEFAULT_URL,
    token: TokenOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """One KPI: its definition as written, source file:line, lineage and latest version."""
    response = api_get(url, token, f"/api/v1/kpis/{name}", {})
    if as_json:
        typer.echo(json.dumps(response))
        return
    console.print(show_text(response["data"]), highlight=False, markup=False)


@app.command("values")
def values(
    name: Annotated[str, typer.Argument(help="KPI name.")],
    start: Annotated[
        str | None, typer.Option("--from", help="Start: RFC 3339 or Unix seconds.")
    ] = None,
    end: Annotated[str | None, typer.Option("--to", help="End (default: now).")] = None,
    grain: Annotated[
        str | None, typer.Option("--grain", help="hour, day, week, month, quarter or year.")
    ] = None,
    compare: Annotated[
        str | None, typer.Option("--compare", help="previous, wow, mom, qoq or yoy.")
    ] = None,
    by: Annotated[
        list[str] | None, typer.Option("--by", help="Break down by a dimension (repeatable).")
    ] = None,
    tz: Annotated[str | None, typer.Option("--tz", help="IANA time zone (default UTC).")] = None,
    url: UrlOpt = DEFAULT_URL,
    token: TokenOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """A KPI's values per period (default: the last 30 periods of its grain)."""
    options = {"from": start, "to": end, "grain": grain, "compare": compare, "tz": tz}
    params: dict[str, Any] = {k: v for k, v in options.items() if v is not None}
    if by:
        params["by"] = by
    series = api_get(url, token, f"/api/v1/kpis/{name}/series", params)
    if as_json:
        typer.echo(json.dumps(series))
        return
    kpi = api_get(url, token, f"/api/v1/kpis/{name}", {})["data"]
    console.print(values_table(series["data"], kpi))
    _print_warnings(series["data"].get("meta"))


def _print_warnings(meta: dict[str, Any] | None, prefix: str = "") -> None:
    """The input events the evaluation excluded (meta.excluded), one line per event."""
    excluded = (meta or {}).get("excluded") or {}
    for line in excluded.get("warnings", []):
        console.print(f"warning: {prefix}{line}", highlight=False, markup=False)


# --- rendering --------------------------------------------------------------------------
def format_value(value: float | None, kpi: dict[str, Any]) -> str:
    """A value as people read it: `3.5 %`, `EUR 1,234.50`, `1,200`, `250 ms`."""
    if value is None:
        return "–"
    unit, decimals = kpi.get("unit"), kpi.get("decimals")
    if unit == "percent":
        return f"{value * 100:,.{1 if decimals is None else decimals}f} %"
    if unit == "currency":
        return f"{kpi.get('currency') or ''} {value:,.{2 if decimals is None else decimals}f}"
    if decimals is None:
        decimals = 0 if float(value).is_integer() else 2
    return f"{value:,.{decimals}f}{_UNIT_SUFFIX.get(str(unit), '')}"


def _status(status: str) -> str:
    return f"[{_STATUS_STYLE.get(status, 'dim')}]{status}[/]"


def list_table(kpis: list[dict[str, Any]]) -> Table:
    table = Table("name", "title", "owner", "level", "current", "target", "status")
    table.title = f"KPIs: {len(kpis)}"
    for kpi in kpis:
        current = kpi.get("current") or {}
        table.add_row(
            kpi["name"],
            kpi["title"],
            kpi["owner"],
            kpi["level"],
            format_value(current.get("value"), kpi),
            format_value(current.get("target"), kpi),
            _status(kpi.get("status", "unknown")),
        )
    return table


def show_text(kpi: dict[str, Any]) -> str:
    """The definition, formula and lineage of a KPI as a short report."""
    version = kpi.get("version") or {}
    lines = [f"{kpi['title']} ({kpi['name']})", kpi.get("description") or ""]
    fields = ("owner", "level", "indicator", "unit", "direction", "cadence", "grain")
    lines += [f"{f}: {kpi[f]}" for f in fields]
    lines += [
        f"target: {json.dumps(kpi['target'])}",
        f"thresholds: warning {kpi['thresholds']['warning']}, "
        f"critical {kpi['thresholds']['critical']}",
        f"dimensions: {', '.join(kpi['dimensions']) or '–'}",
        f"tags: {', '.join(kpi['tags']) or '–'}",
        f"source: {kpi['source']}",
        f"version: {version.get('version', '–')} ({version.get('recorded', '')}, "
        f"{version.get('author', '')})",
        "formula:",
        _indent(yaml.safe_dump(kpi["formula"], sort_keys=False, allow_unicode=True).rstrip()),
        "inputs:",
    ]
    lines += [f"  {i['kind']}: {i['name']}" for i in kpi["lineage"]["inputs"]] or ["  –"]
    lines.append("used by:")
    dependents = kpi["lineage"]["dependents"]
    lines += [f"  {d['kind']}: {d['name']} ({d['source']})" for d in dependents] or ["  –"]
    return "\n".join(line for line in lines if line != "")


def _indent(text: str) -> str:
    return "\n".join("  " + line for line in text.splitlines())


def values_table(series: dict[str, Any], kpi: dict[str, Any]) -> Table:
    points = series["points"]
    grouped = any(p["group"] for p in points)
    noted = any(p.get("note") for p in points)
    headers = ["period", *(["group"] if grouped else []), "value", "target", "status"]
    headers += ["compare", "change", *(["note"] if noted else [])]
    table = Table(*headers, title=f"{series['kpi']} by {series['grain']} ({series['tz']})")
    for p in points:
        group = [", ".join(f"{k}={v}" for k, v in p["group"].items())] if grouped else []
        change = p.get("change")
        table.add_row(
            p["t"],
            *group,
            format_value(p["value"], kpi),
            format_value(p["target"], kpi),
            _status(p["status"]),
            format_value(p.get("compare"), kpi),
            "–" if change is None else f"{change * 100:+.1f} %",
            *([p.get("note") or ""] if noted else []),
        )
    return table
