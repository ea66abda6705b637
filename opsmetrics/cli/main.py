"""The `opsmetrics` command: a thin adapter that parses flags, calls services, prints."""

from __future__ import annotations

import ipaddress
import logging
import os
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from opsmetrics import __version__
from opsmetrics.auth import (
    DEFAULT_KEY_RATE_PER_MIN,
    TokenVerifier,
    new_publishable_key,
    new_token,
)
from opsmetrics.cli import analyze, importer, initiatives, kpi, query, reports, reviews
from opsmetrics.cli import rules as rules_cli
from opsmetrics.cli import sources as sources_cli
from opsmetrics.cli.archive import archive_app
from opsmetrics.cli.storage_cmd import storage_app
from opsmetrics.clock import SystemClock, clock_from_env
from opsmetrics.errors import BadDataError, OpsMetricsError, UserError
from opsmetrics.settings import Settings
from opsmetrics.storage.token_records import Scope

app = typer.Typer(
    name="opsmetrics",
    help="Operational metrics: technical and business KPIs defined once, collected, stored, "
    "queried and alerted on.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
token_app = typer.Typer(help="Manage API tokens.", no_args_is_help=True)
app.add_typer(token_app, name="token")
app.command("import")(importer.import_file)
app.command("query")(query.query)
app.add_typer(kpi.app, name="kpi")
kpi.app.command("review")(reviews.review)
kpi.app.command("reviews")(reviews.list_reviews)
app.command("hygiene")(reviews.hygiene)
app.add_typer(rules_cli.rules_app, name="rules")
app.add_typer(rules_cli.alerts_app, name="alerts")
app.add_typer(analyze.analyze_app, name="analyze")
app.add_typer(initiatives.app, name="initiatives")
app.add_typer(reports.app, name="reports")
app.add_typer(storage_app, name="storage")
app.add_typer(sources_cli.app, name="sources")
app.add_typer(archive_app, name="archive")
console = Console()
err_console = Console(stderr=True)

DataOpt = Annotated[Path | None, typer.Option("--data", help="Data directory.")]
ConfigOpt = Annotated[Path | None, typer.Option("--config", help="Config directory.")]
HostOpt = Annotated[str | None, typer.Option("--host", help="Address to bind.")]
PortOpt = Annotated[int | None, typer.Option("--port", help="Port to listen on.")]
CollectHostOpt = Annotated[
    bool | None,
    typer.Option("--collect-host/--no-collect-host", help="Sample this machine (node_* series)."),
]


def settings(**flags: object) -> Settings:
    """Settings from OPSMETRICS_* variables, then flags that were given."""
    return Settings.from_env(os.environ, **flags)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@app.command()
def serve(
    data: DataOpt = None,
    config: ConfigOpt = None,
    host: HostOpt = None,
    port: PortOpt = None,
    collect_host: CollectHostOpt = None,
) -> None:
    """Run the server: ingest, query API, rules, KPIs."""
    from opsmetrics.cli.server import run_server

    s = settings(data_dir=data, config_dir=config, host=host, port=port, collect_host=collect_host)
    run_server(s, clock_from_env(os.environ), demo=False)


@app.command()
def demo(
    data: DataOpt = None,
    port: PortOpt = None,
    host: HostOpt = None,
    config: ConfigOpt = None,
    days: Annotated[int, typer.Option("--days", min=1, max=35, help="Days of history.")] = 30,
    collect_host: CollectHostOpt = True,
) -> None:
    """The whole product on realistic data: history, live traffic, API at http://127.0.0.1:8800.

    Uses the example catalog (KPIs, recording rules) unless --config names another."""
    from opsmetrics.catalog.validate import EXAMPLE_CONFIG
    from opsmetrics.cli.server import run_server

    s = settings(
        data_dir=data or Path("demo-data"),
        config_dir=config or EXAMPLE_CONFIG,
        host=host,
        port=port,
        collect_host=collect_host,
    )
    run_server(s, clock_from_env(os.environ), demo=True, demo_days=days)


@app.command()
def init(directory: Annotated[Path, typer.Argument(help="Config directory to create.")]) -> None:
    """Write a starter config directory (existing files are left alone)."""
    from opsmetrics.catalog.validate import write_starter

    for path in write_starter(directory):
        console.print(f"wrote {path}")
    console.print(f"start with: opsmetrics serve --config {directory}")


@app.command()
def validate(
    directory: Annotated[Path, typer.Argument(help="Config directory.")] = Path("config"),
    data: Annotated[
        Path | None,
        typer.Option("--data", help="Also check the KPIs against this data directory's events."),
    ] = None,
) -> None:
    """Check every file in a config directory; print `file:line: field: message` per problem."""
    from opsmetrics.catalog.validate import validate_config_dir

    problems = validate_config_dir(directory)
    if data is not None and not problems:
        problems = _data_problems(directory, data)
    for line in problems:
        print(line)
    if problems:
        raise typer.Exit(1)
    console.print(f"{directory}: ok")


def _data_problems(config_dir: Path, data_dir: Path) -> list[str]:
    """The catalog's KPIs against the stored events (query/kpi/data_check.py)."""
    from opsmetrics.catalog.kpis import load_catalog
    from opsmetrics.query.kpi.data_check import data_problems
    from opsmetrics.storage.open import open_storage

    clock = clock_from_env(os.environ)
    storage = open_storage(settings(data_dir=data_dir), clock)
    try:
        return data_problems(storage, load_catalog(config_dir), clock.now_ms())
    finally:
        storage.close()


@app.command()
def version() -> None:
    """Print the version."""
    console.print(f"opsmetrics {__version__}")


@token_app.command("create")
def token_create(
    scope: Annotated[Scope, typer.Option("--scope", help="ingest, read, admin or events.")],
    name: Annotated[str, typer.Option("--name", help="A note: who or what uses it.")] = "",
    data: DataOpt = None,
    origin: Annotated[
        list[str] | None, typer.Option("--origin", help="events: a page origin (repeatable).")
    ] = None,
    rate: Annotated[
        int, typer.Option("--rate", help="events: requests/min per client address.")
    ] = DEFAULT_KEY_RATE_PER_MIN,
) -> None:
    """Create a bearer token, or with --scope events a publishable key for web pages (the
    server must be stopped: it owns the data file)."""
    from opsmetrics.storage.open import open_storage

    s = settings(data_dir=data)
    clock = SystemClock()
    if scope is Scope.EVENTS:
        token = new_publishable_key(name or scope.value, origin or [], clock.now_ms(), rate)
    elif origin:
        raise BadDataError("--origin is for publishable keys only: add --scope events")
    else:
        token = new_token(name or scope.value, scope, clock.now_ms())
    storage = open_storage(s, clock)
    try:
        storage.save_token(token.record)
    finally:
        storage.close()
    err_console.print(
        f"created token {token.record.id} with scope {scope.value}; it is shown only once:"
    )
    print(token.secret)


@token_app.command("list")
def token_list(data: DataOpt = None) -> None:
    """List tokens (ids, names and scopes; secrets are never stored)."""
    from opsmetrics.storage.open import open_storage

    storage = open_storage(settings(data_dir=data), SystemClock())
    try:
        verifier = TokenVerifier(storage.tokens())
        for t in storage.tokens():
            console.print(f"{t.id}\t{t.scope.value}\t{t.name}\t{' '.join(t.origins)}".rstrip())
        if not verifier.enabled:
            err_console.print("no tokens: the server accepts requests only on loopback")
    finally:
        storage.close()


def main() -> None:
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        app()
    except UserError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        sys.exit(2)
    except OpsMetricsError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        sys.exit(1)
