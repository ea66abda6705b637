"""`opsmetrics initiatives list|impact`: improvement initiatives and their measured impact, from
the running server (`--url`, `--token`; GET /api/v1/initiatives and /{name}/impact)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from opsmetrics.cli.importer import UrlOpt
from opsmetrics.cli.kpi import JsonOpt, TokenOpt, api_get
from opsmetrics.client.transport import DEFAULT_URL

app = typer.Typer(help="Improvement initiatives and their measured impact.", no_args_is_help=True)
console = Console()
_VERDICT_STYLE = {"improved": "green", "worsened": "red", "too early": "dim"}


@app.command("list")
def list_initiatives(
    url: UrlOpt = DEFAULT_URL, token: TokenOpt = None, as_json: JsonOpt = False
) -> None:
    """Every initiative: owner, start and end, the KPIs it should move."""
    response = api_get(url, token, "/api/v1/initiatives", {})
    if as_json:
        typer.echo(json.dumps(response))
        return
    table = Table("name", "title", "owner", "start", "end", "KPIs")
    for i in response["data"]:
        kpis = ", ".join(f"{k['kpi']} {'↑' if k['direction'] == 'up' else '↓'}" for k in i["kpis"])
        table.add_row(
            i["name"], i["title"], i["owner"], _day(i["start_ms"]), _day(i["end_ms"]), kpis
        )
    console.print(table)


@app.command("impact")
def impact(
    name: Annotated[str, typer.Argument(help="The initiative's name.")],
    pre: Annotated[str | None, typer.Option("--pre", help="Pre-period, e.g. 56d.")] = None,
    url: UrlOpt = DEFAULT_URL,
    token: TokenOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """The effect on each KPI after the start: absolute and %, 95% interval, verdict."""
    params = {"pre": pre} if pre else {}
    response = api_get(url, token, f"/api/v1/initiatives/{name}/impact", params)
    if as_json:
        typer.echo(json.dumps(response))
        return
    console.print(_impact_table(response["data"]))


def _impact_table(d: dict[str, Any]) -> Table:
    table = Table("KPI", "expected", "effect", "95% interval", "verdict", "method", "points",
                  title=f"{d['title']} ({d['name']}), from {_day(d['start_ms'])}")  # fmt: skip
    for k in d["impact"]:
        style = _VERDICT_STYLE.get(k["verdict"], "")
        effect = f"{_num(k['effect'])} ({_pct(k['relative'])})"
        interval = f"{_pct(k['relative_low'])} to {_pct(k['relative_high'])}"
        points = f"{k['pre_points']} + {k['post_points']}"
        verdict = f"[{style}]{k['verdict']}[/]" if style else k["verdict"]
        table.add_row(k["kpi"], _pct(k["expected"]), effect, interval, verdict, k["method"], points)
    return table


def _day(ms: int | None) -> str:
    return "—" if ms is None else datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d")


def _num(x: float | None) -> str:
    return "—" if x is None else f"{x:+.4g}"


def _pct(x: float | None) -> str:
    return "—" if x is None else f"{x * 100:+.1f}%"
