"""`opsmetrics query EXPR`: an instant or range query against the running server, as a table."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from opsmetrics.cli.importer import TokenOpt, UrlOpt, quiet_http_log
from opsmetrics.client.transport import DEFAULT_URL, RetryPolicy, Transport
from opsmetrics.errors import UserError

console = Console()


def query(
    expr: Annotated[str, typer.Argument(help="PromQL expression.")],
    time: Annotated[str | None, typer.Option("--time", help="Evaluation time.")] = None,
    start: Annotated[str | None, typer.Option("--start", help="Range start.")] = None,
    end: Annotated[str | None, typer.Option("--end", help="Range end.")] = None,
    step: Annotated[str | None, typer.Option("--step", help="Range step, e.g. 15s.")] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the API response (Prometheus JSON) as is.")
    ] = False,
    url: UrlOpt = DEFAULT_URL,
    token: TokenOpt = None,
) -> None:
    """Evaluate EXPR now, at --time, or over --start/--end/--step; print the result.

    An instant query prints one row per series; a range query prints each series with its
    points. Errors come back as the server's message (exit code 1).
    """
    path, params = _request(expr, time, start, end, step)
    quiet_http_log()
    transport = Transport(url, token, policy=RetryPolicy(max_retries=2, max_backoff=2.0))
    try:
        response = transport.get(path, params)
    finally:
        transport.close()
    if as_json:
        typer.echo(json.dumps(response))
        return
    console.print(result_table(response.get("data", {})))
    for warning in response.get("warnings", []):
        console.print(f"[yellow]warning:[/yellow] {warning}")


def _request(
    expr: str, time: str | None, start: str | None, end: str | None, step: str | None
) -> tuple[str, dict[str, str]]:
    ranged = [v for v in (start, end, step) if v is not None]
    if not ranged:
        return "/api/v1/query", {"query": expr, **({"time": time} if time else {})}
    if time is not None:
        raise UserError("give either --time or --start/--end/--step, not both")
    if start is None or end is None or step is None:
        raise UserError("a range query needs all of --start, --end and --step")
    return "/api/v1/query_range", {"query": expr, "start": start, "end": end, "step": step}


def series_name(metric: dict[str, str]) -> str:
    labels = {k: v for k, v in metric.items() if k != "__name__"}
    inner = ", ".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    return f"{metric.get('__name__', '')}{{{inner}}}" if inner else metric.get("__name__", "{}")


def _when(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).isoformat(timespec="milliseconds")


def result_table(data: dict[str, Any]) -> Table:
    kind = data.get("resultType", "vector")
    table = Table("series", "time", "value", title=f"{kind}: {len(data.get('result', []))}")
    result = data.get("result", [])
    if kind in ("scalar", "string"):
        table.add_row("", _when(result[0]), str(result[1]))
        return table
    for item in result:
        name = series_name(item.get("metric", {}))
        points = item["values"] if "values" in item else [item["value"]]
        for i, (ts, value) in enumerate(points):
            table.add_row(name if i == 0 else "", _when(ts), str(value))
    return table
