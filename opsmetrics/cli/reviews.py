"""`opsmetrics kpi review NAME`, `opsmetrics kpi reviews [--owner]` and `opsmetrics hygiene`:
owners' reviews and the hygiene report of the running server, over its API
(docs/reviews.md)."""

from __future__ import annotations

import json
from typing import Annotated, Any

import msgspec
import typer
from rich.console import Console
from rich.table import Table

from opsmetrics.cli.importer import UrlOpt, quiet_http_log
from opsmetrics.cli.kpi import JsonOpt, TokenOpt, api_get
from opsmetrics.client.transport import DEFAULT_URL, RetryPolicy, Transport

console = Console()
_STATE_STYLE = {"overdue": "red", "due": "yellow", "reviewed": "green"}


def review(
    name: Annotated[str, typer.Argument(help="KPI name.")],
    author: Annotated[str, typer.Option("--author", help="Who reviewed it.")],
    note: Annotated[str, typer.Option("--note", help="What was looked at, what follows.")] = "",
    url: UrlOpt = DEFAULT_URL,
    token: TokenOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Mark a KPI reviewed (token scope ingest or admin); prints when it falls due next."""
    quiet_http_log()
    body = msgspec.json.encode({"author": author, "note": note})
    # Not retried: a review whose answer was lost would be stored twice.
    transport = Transport(url, token, policy=RetryPolicy(max_retries=0))
    try:
        response = transport.post(f"/api/v1/kpis/{name}/reviews", body, "application/json")
    finally:
        transport.close()
    if as_json:
        typer.echo(json.dumps(response))
        return
    item = response["data"]
    due = f", next due {item['due']}" if item.get("due") else ""
    console.print(f"{name}: reviewed by {author}{due}", highlight=False, markup=False)


def list_reviews(
    owner: Annotated[str | None, typer.Option("--owner", help="Only this owner's KPIs.")] = None,
    url: UrlOpt = DEFAULT_URL,
    token: TokenOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """The review list: KPIs due or overdue for review, off target or without an owner."""
    response = api_get(url, token, "/api/v1/reviews", {"owner": owner} if owner else {})
    if as_json:
        typer.echo(json.dumps(response))
        return
    console.print(review_table(response["data"]))


def review_table(data: dict[str, Any]) -> Table:
    table = Table("owner", "KPI", "review", "last review", "flags", title=f"As of {data['as_of']}")
    for group in data["owners"]:
        for k in group["kpis"]:
            style = _STATE_STYLE.get(k["state"], "")
            last = k["last_review"]
            seen = f"{last['reviewed'][:10]} by {last['author']}" if last else "never"
            table.add_row(group["owner"], k["kpi"], f"[{style}]{k['standing']}[/]", seen,
                          ", ".join(k["flags"]))  # fmt: skip
    if not data["owners"]:
        table.caption = "Every KPI was reviewed within its cadence and is on target."
    return table


def hygiene(url: UrlOpt = DEFAULT_URL, token: TokenOpt = None, as_json: JsonOpt = False) -> None:
    """The hygiene report: noisy alerts, unreviewed and unused KPIs, silent sources, each
    with the fix to make."""
    response = api_get(url, token, "/api/v1/hygiene", {})
    if as_json:
        typer.echo(json.dumps(response))
        return
    findings = response["data"]["findings"]
    if not findings:
        console.print("Nothing to clean up.")
        return
    table = Table("area", "item", "finding", "fix", title=f"As of {response['data']['as_of']}")
    for f in findings:
        table.add_row(f["area"], f["subject"], f["detail"], f["fix"])
    console.print(table, markup=False)
