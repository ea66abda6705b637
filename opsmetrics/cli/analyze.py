"""`opsmetrics analyze trend|anomalies|forecast|capacity|outlook`: series analysis as tables.

Each command asks the running server (`--url`, like `opsmetrics query`), or with `--data DIR`
reads a local data directory directly (the server must be stopped: it owns the file) by running
the routes' requests (opsmetrics.analysis.series_api) in process. The statistics commands
(correlate, experiment, sample-size, ab) come from opsmetrics.cli.analyze_stats when it is
installed.
"""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import msgspec
import typer
from rich.console import Console
from rich.table import Table

from opsmetrics.cli.importer import UrlOpt, quiet_http_log
from opsmetrics.cli.kpi import JsonOpt, TokenOpt
from opsmetrics.client.transport import DEFAULT_URL, RetryPolicy, Transport

analyze_app = typer.Typer(
    help="Analyse a KPI or PromQL series: trend, anomalies, forecast, capacity, outlook.",
    no_args_is_help=True,
)
console = Console()

KpiOpt = Annotated[str | None, typer.Option("--kpi", help="A catalog KPI name.")]
QueryOpt = Annotated[str | None, typer.Option("--query", help="A PromQL expression.")]
StartOpt = Annotated[str | None, typer.Option("--start", help="RFC 3339 or Unix seconds.")]
EndOpt = Annotated[str | None, typer.Option("--end", help="RFC 3339 or Unix seconds.")]
StepOpt = Annotated[str | None, typer.Option("--step", help="A duration, e.g. 5m or 1d.")]
SeasonOpt = Annotated[int | None, typer.Option("--season", help="Season length in steps.")]
HorizonOpt = Annotated[
    str | None, typer.Option("--horizon", help="Steps (48) or a duration (2d) to forecast.")
]
DataOpt = Annotated[
    Path | None,
    typer.Option("--data", help="Read this data directory directly (server stopped)."),
]
ConfigOpt = Annotated[
    Path | None, typer.Option("--config", help="Config directory (KPIs), with --data.")
]


def _params(**given: Any) -> dict[str, str]:
    return {k: str(v) for k, v in given.items() if v is not None}


def _get(name: str, params: dict[str, str], url: str, token: str | None, data: Path | None,
         config: Path | None) -> dict[str, Any]:  # fmt: skip
    if data is not None:
        return _local(name, params, data, config)
    quiet_http_log()
    transport = Transport(url, token, policy=RetryPolicy(max_retries=2, max_backoff=2.0))
    try:
        return transport.get(f"/api/v1/analysis/{name}", params)
    finally:
        transport.close()


def _local(name: str, params: dict[str, str], data: Path, config: Path | None) -> dict[str, Any]:
    """The route's request, run in process over the local data directory."""
    from opsmetrics.analysis.series_api import REQUESTS
    from opsmetrics.clock import SystemClock
    from opsmetrics.params import Params
    from opsmetrics.services import open_services
    from opsmetrics.settings import Settings

    settings = Settings.from_env(os.environ, data_dir=data, config_dir=config)
    services = open_services(settings, SystemClock())
    try:
        got = REQUESTS[name](
            Params(list(params.items())), services.storage, services.catalog, services.clock
        )
    finally:
        services.close()
    # Through JSON and back, so that --json prints what the server would send.
    body: dict[str, Any] = msgspec.json.decode(
        msgspec.json.encode({"status": "success", "data": got})
    )
    return body


def _when(ms: int | None) -> str:
    if ms is None:
        return "—"
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M")


def _num(x: float | None) -> str:
    if x is None:
        return "—"
    return f"{x:,.4g}" if abs(x) < 1000 else f"{x:,.0f}"


def _pct(x: float | None) -> str:
    return "—" if x is None else f"{x * 100:+.2f}%"


def _emit(response: dict[str, Any], as_json: bool, render: Any) -> None:
    if as_json:
        typer.echo(json.dumps(response))
        return
    for item in render(response["data"]):
        console.print(item)


@analyze_app.command("trend")
def trend(
    kpi: KpiOpt = None, query: QueryOpt = None,
    view: Annotated[str | None, typer.Option("--view", help="short (24h) or long (90d).")] = None,
    start: StartOpt = None, end: EndOpt = None, step: StepOpt = None, season: SeasonOpt = None,
    url: UrlOpt = DEFAULT_URL, token: TokenOpt = None, data: DataOpt = None,
    config: ConfigOpt = None, as_json: JsonOpt = False,
) -> None:  # fmt: skip
    """Growth rates (period over period, compound), slope, and the STL decomposition."""
    p = _params(kpi=kpi, query=query, view=view, start=start, end=end, step=step, season=season)
    _emit(_get("trend", p, url, token, data, config), as_json, _trend_tables)


def _trend_tables(d: dict[str, Any]) -> list[Any]:
    g = d["growth"]
    table = Table("measure", "value", title=f"trend of {d['name']} (step {d['step']:g}s)")
    table.add_row("points", str(len(d["points"])))
    table.add_row("latest", _num(g["latest"]))
    table.add_row("period over period", _pct(g["period_over_period"]))
    table.add_row("compound growth / period", _pct(g["compound_rate"]))
    table.add_row("slope per day", _num(g["slope_per_day"]))
    dec = d["decomposition"]
    if dec:
        seasonal = [v for v in dec["seasonal"] if v is not None]
        table.add_row("STL season (steps)", str(dec["period"]))
        table.add_row("seasonal amplitude", _num(max(seasonal) - min(seasonal)))
        trend_vals = [v for v in dec["trend"] if v is not None]
        table.add_row("trend first → last", f"{_num(trend_vals[0])} → {_num(trend_vals[-1])}")
    else:
        table.add_row("decomposition", str(d["decomposition_error"]))
    return [table]


@analyze_app.command("anomalies")
def anomalies(
    kpi: KpiOpt = None, query: QueryOpt = None,
    start: StartOpt = None, end: EndOpt = None, step: StepOpt = None,
    threshold: Annotated[float | None, typer.Option("--threshold", help="Robust z.")] = None,
    url: UrlOpt = DEFAULT_URL, token: TokenOpt = None, data: DataOpt = None,
    config: ConfigOpt = None, as_json: JsonOpt = False,
) -> None:  # fmt: skip
    """Points outside their seasonal band (hour-of-day × day-of-week), and level shifts."""
    p = _params(kpi=kpi, query=query, start=start, end=end, step=step, threshold=threshold)
    _emit(_get("anomalies", p, url, token, data, config), as_json, _anomalies)


def _anomalies(d: dict[str, Any]) -> list[Any]:
    table = Table("time (UTC)", "value", "score", "explanation",
                  title=f"anomalies in {d['name']}: {len(d['anomalies'])}")  # fmt: skip
    for a in d["anomalies"]:
        table.add_row(_when(a["ts"]), _num(a["value"]), f"{a['score']:+.1f}", a["explanation"])
    shifts = Table("time (UTC)", "before", "after", "explanation", title="level shifts")
    for c in d["change_points"]:
        shifts.add_row(_when(c["ts"]), _num(c["before"]), _num(c["after"]), c["explanation"])
    now = d["now"]
    verdict = "ANOMALOUS" if now["anomalous"] else "normal"
    return [table, shifts, f"latest point: {verdict} — {now['explanation']}"]


@analyze_app.command("forecast")
def forecast(
    kpi: KpiOpt = None, query: QueryOpt = None,
    start: StartOpt = None, end: EndOpt = None, step: StepOpt = None,
    horizon: HorizonOpt = None, season: SeasonOpt = None,
    url: UrlOpt = DEFAULT_URL, token: TokenOpt = None, data: DataOpt = None,
    config: ConfigOpt = None, as_json: JsonOpt = False,
) -> None:  # fmt: skip
    """Forecast with a prediction interval; the method is chosen by backtest (MASE shown)."""
    p = _params(kpi=kpi, query=query, start=start, end=end, step=step, horizon=horizon,
                season=season)  # fmt: skip
    _emit(_get("forecast", p, url, token, data, config), as_json, _forecast)


def _forecast(d: dict[str, Any]) -> list[Any]:
    mase = "n/a (too little history to backtest)" if d["mase"] is None else f"{d['mase']:.3f}"
    title = f"forecast of {d['name']}: {d['method']}, MASE {mase}, {d['level']:.0%} interval"
    table = Table("time (UTC)", "mean", "lower", "upper", title=title)
    for t, mean, low, high in d["points"]:
        table.add_row(_when(t), _num(mean), _num(low), _num(high))
    return [table]


@analyze_app.command("capacity")
def capacity(
    limit: Annotated[float, typer.Option("--limit", help="The capacity limit.")],
    kpi: KpiOpt = None, query: QueryOpt = None,
    start: StartOpt = None, end: EndOpt = None, step: StepOpt = None,
    horizon: HorizonOpt = None, season: SeasonOpt = None,
    url: UrlOpt = DEFAULT_URL, token: TokenOpt = None, data: DataOpt = None,
    config: ConfigOpt = None, as_json: JsonOpt = False,
) -> None:  # fmt: skip
    """When the series will cross --limit, with an interval from the forecast's bounds."""
    p = _params(kpi=kpi, query=query, start=start, end=end, step=step, horizon=horizon,
                season=season, limit=limit)  # fmt: skip
    _emit(_get("capacity", p, url, token, data, config), as_json, _capacity)


def _capacity(d: dict[str, Any]) -> list[Any]:
    table = Table("measure", "value", title=f"capacity of {d['name']}")
    table.add_row("current", _num(d["current"]))
    table.add_row("limit", f"{_num(d['limit'])} ({d['direction']})")
    table.add_row("expected crossing", _when(d["eta"]))
    table.add_row("earliest", _when(d["earliest"]))
    table.add_row("latest", _when(d["latest"]))
    table.add_row("method", d["forecast"]["method"])
    return [table, d["explanation"]]


@analyze_app.command("outlook")
def outlook(
    kpi: KpiOpt = None, query: QueryOpt = None,
    target: Annotated[float | None, typer.Option("--target", help="Default: the KPI's.")] = None,
    period: Annotated[str, typer.Option("--period", help="month or quarter.")] = "month",
    agg: Annotated[str, typer.Option("--agg", help="last, sum or mean of the period.")] = "last",
    url: UrlOpt = DEFAULT_URL, token: TokenOpt = None, data: DataOpt = None,
    config: ConfigOpt = None, as_json: JsonOpt = False,
) -> None:  # fmt: skip
    """The probability that the KPI meets its target by the end of this month or quarter."""
    p = _params(kpi=kpi, query=query, target=target, period=period, agg=agg)
    _emit(_get("outlook", p, url, token, data, config), as_json, _outlook)


def _outlook(d: dict[str, Any]) -> list[Any]:
    table = Table("measure", "value", title=f"outlook of {d['name']} ({d['agg']} of the period)")
    table.add_row("period", f"{_when(d['period_start'])} → {_when(d['period_end'])}")
    table.add_row("target", f"{_num(d['target'])} ({d['direction']})")
    table.add_row("observed so far", _num(d["observed"]))
    table.add_row("expected", f"{_num(d['expected'])} ({_num(d['low'])} – {_num(d['high'])})")
    prob = d["probability"]
    table.add_row("probability of meeting it", "—" if prob is None else f"{prob:.0%}")
    return [table]


# Imported last and plainly: a broken install fails here instead of losing the commands.
from opsmetrics.cli import analyze_stats  # noqa: E402

analyze_stats.register(analyze_app)
