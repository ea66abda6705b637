"""`opsmetrics rules test FILE...` (promtool-style rule unit tests), `opsmetrics alerts list` and
`opsmetrics alerts timeline FINGERPRINT`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from opsmetrics.cli.importer import TokenOpt, UrlOpt, quiet_http_log
from opsmetrics.client.transport import DEFAULT_URL, RetryPolicy, Transport

rules_app = typer.Typer(help="Rule files: unit tests.", no_args_is_help=True)
alerts_app = typer.Typer(help="Alerts of a running server.", no_args_is_help=True)
console = Console()


@rules_app.command("test")
def test(
    files: Annotated[list[Path], typer.Argument(help="Rule test files (promtool's format).")],
) -> None:
    """Run promtool-style unit tests: input series, expected alerts and PromQL results.

    Prints SUCCESS or the failures of each file; exits 1 when any test fails."""
    from opsmetrics.alerting.rule_tests import run_test_file

    ok = True
    for path in files:
        result = run_test_file(path)
        typer.echo(result.report())
        ok = ok and result.ok
    if not ok:
        raise typer.Exit(1)


@alerts_app.command("list")
def list_alerts(
    as_json: Annotated[bool, typer.Option("--json", help="Print the API response as is.")] = False,
    url: UrlOpt = DEFAULT_URL,
    token: TokenOpt = None,
) -> None:
    """List the pending and firing alerts of a running server (GET /api/v1/alerts)."""
    quiet_http_log()
    transport = Transport(url, token, policy=RetryPolicy(max_retries=2, max_backoff=2.0))
    try:
        response = transport.get("/api/v1/alerts", {})
    finally:
        transport.close()
    if as_json:
        typer.echo(json.dumps(response))
        return
    alerts = response.get("data", {}).get("alerts", [])
    console.print(alerts_table(alerts))


@alerts_app.command("timeline")
def timeline(
    fingerprint: Annotated[str, typer.Argument(help="The alert's fingerprint (see --json).")],
    as_json: Annotated[bool, typer.Option("--json", help="Print the API response as is.")] = False,
    url: UrlOpt = DEFAULT_URL,
    token: TokenOpt = None,
) -> None:
    """An alert's incident timeline: fired, notified, acknowledged, escalated, protocol steps
    and actions, resolved (GET /api/v1/alerts/{fingerprint}/timeline)."""
    quiet_http_log()
    transport = Transport(url, token, policy=RetryPolicy(max_retries=2, max_backoff=2.0))
    try:
        response = transport.get(f"/api/v1/alerts/{fingerprint}/timeline", {})
    finally:
        transport.close()
    if as_json:
        typer.echo(json.dumps(response))
        return
    for instance in response.get("data", {}).get("instances", []):
        console.print(timeline_table(instance))


def timeline_table(instance: dict[str, Any]) -> Table:
    protocol = instance.get("protocol") or {}
    table = Table("at", "what", "by", "detail")
    shown = f" · protocol {protocol['name']} (team {protocol['team']})" if protocol else ""
    table.title = f"fired at {instance.get('startedAt', '')}{shown}"
    for e in instance.get("entries", []):
        table.add_row(e["at"], e["kind"], e["by"], _detail(e["kind"], e["detail"]))
    return table


def _detail(kind: str, d: dict[str, Any]) -> str:
    if kind == "step":
        note = f" — {d['note']}" if d.get("note") else ""
        return f"{d.get('step')}. {d.get('title', '')}{note}"
    if kind == "action":
        status = (d.get("response") or {}).get("status")
        return f"{d.get('action')} {d.get('status')}" + (f" (HTTP {status})" if status else "")
    if kind in ("notified", "escalated"):
        return f"{d.get('kind')} {d.get('status')}"
    return str(d.get("comment") or d.get("summary") or "")


def alerts_table(alerts: list[dict[str, Any]]) -> Table:
    table = Table("alert", "state", "severity", "active since", "labels", "summary")
    table.title = f"{len(alerts)} active alert{'s' if len(alerts) != 1 else ''}"
    for alert in sorted(alerts, key=_order):
        labels = dict(alert.get("labels", {}))
        name, severity = labels.pop("alertname", ""), labels.pop("severity", "")
        shown = ", ".join(f"{k}={v}" for k, v in sorted(labels.items()))
        summary = alert.get("annotations", {}).get("summary", "")
        table.add_row(
            name, alert.get("state", ""), severity, alert.get("activeAt", ""), shown, summary
        )
    return table


def _order(alert: dict[str, Any]) -> tuple[int, str, str]:
    state = 0 if alert.get("state") == "firing" else 1
    labels = alert.get("labels", {})
    return state, labels.get("alertname", ""), json.dumps(labels, sort_keys=True)
