"""`opsmetrics reports list|preview|send|runs`: scheduled reports on the running server
(`--url`, `--token`; /api/v1/reports and /{name}/preview, /send, /runs; docs/reports.md)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import httpx
import typer
from rich.console import Console
from rich.table import Table

from opsmetrics.cli.importer import UrlOpt
from opsmetrics.cli.kpi import JsonOpt, TokenOpt, api_get
from opsmetrics.client.transport import DEFAULT_URL, Transport
from opsmetrics.errors import BadDataError

app = typer.Typer(help="Scheduled reports: next runs, preview, send now, the delivery log.",
                  no_args_is_help=True)  # fmt: skip
console = Console()
NameArg = Annotated[str, typer.Argument(help="The report's name (see `opsmetrics reports list`).")]


@app.command("list")
def list_reports(
    url: UrlOpt = DEFAULT_URL, token: TokenOpt = None, as_json: JsonOpt = False
) -> None:
    """Every report with its next three runs in its own time zone and in UTC, and its last run."""
    response = api_get(url, token, "/api/v1/reports", {})
    if as_json:
        typer.echo(json.dumps(response))
        return
    table = Table("name", "audience", "schedule", "next runs (local)", "next runs (UTC)", "last")
    for r in response["data"]:
        local = "\n".join(f"{n['local']} {r['timezone']}" for n in r["next"]) or "disabled"
        utc = "\n".join(n["utc"] for n in r["next"])
        table.add_row(r["name"], r["audience"], r["schedule"], local, utc, r["status"])
    console.print(table)


@app.command("preview")
def preview(
    name: NameArg,
    fmt: Annotated[str, typer.Option("--format", help="html, pdf or csv.")] = "html",
    at: Annotated[str | None, typer.Option("--at", help="The slot, RFC 3339 (now).")] = None,
    out: Annotated[Path, typer.Option("--out", help="Write it to this file.")] = Path("report"),
    url: UrlOpt = DEFAULT_URL,
    token: TokenOpt = None,
) -> None:
    """Render a report as of a slot and save it; nothing is sent."""
    params = {"format": fmt, **({"at": at} if at else {})}
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    got = httpx.get(f"{url.rstrip('/')}/api/v1/reports/{name}/preview", params=params,
                    headers=headers, timeout=120)  # fmt: skip
    if got.status_code != 200:
        raise BadDataError(_error(got))
    if not out.suffix:
        out = out.with_suffix(f".{fmt}")
    out.write_bytes(got.content)
    typer.echo(f"wrote {out} ({len(got.content):,} bytes)")


def _error(response: httpx.Response) -> str:
    try:
        return str(response.json().get("error", response.text))
    except ValueError:
        return f"HTTP {response.status_code}: {response.text[:300]}"


@app.command("send")
def send(
    name: NameArg,
    to: Annotated[str | None, typer.Option("--to", help="Send only to this email address.")] = None,
    url: UrlOpt = DEFAULT_URL,
    token: TokenOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Send a report now (admin token) to its channels, or to one recipient; prints the run."""
    path = f"/api/v1/reports/{name}/send" + (f"?to={to}" if to else "")
    transport = Transport(url, token)
    try:
        response = transport.post(path, b"", "application/json")
    finally:
        transport.close()
    if as_json:
        typer.echo(json.dumps(response))
        return
    console.print(runs_table([response["data"]], f"{name}: sent"))


@app.command("runs")
def runs(
    name: NameArg,
    limit: Annotated[int, typer.Option("--limit", help="How many runs, newest first.")] = 20,
    url: UrlOpt = DEFAULT_URL,
    token: TokenOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """The delivery log: each run's slot, trigger, status and channels."""
    response = api_get(url, token, f"/api/v1/reports/{name}/runs", {"limit": str(limit)})
    if as_json:
        typer.echo(json.dumps(response))
        return
    console.print(runs_table(response["data"], f"{name}: runs"))


def runs_table(found: list[dict[str, Any]], title: str) -> Table:
    table = Table("run", "slot (UTC)", "trigger", "status", "channels", "error", title=title)
    for r in found:
        channels = "\n".join(f"{d['channel']}: {d['status']} ({d['attempts']})"
                             for d in r["deliveries"])  # fmt: skip
        trigger = r["trigger"] + (" (delayed)" if r["delayed"] else "")
        table.add_row(r["run_id"], _utc(r["slot_ms"]), trigger, r["status"], channels, r["error"])
    return table


def _utc(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M")
