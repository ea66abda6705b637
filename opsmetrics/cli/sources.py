"""`opsmetrics sources list|test|run|backfill`: SQL sources (docs/sources.md).

`list` asks the running server (GET /api/v1/sources). `test` only reads the source database.
`run` and `backfill` store what they read, in process over the data directory (with DuckDB
the server must be stopped: it owns the data file; with a PostgreSQL state store and
ClickHouse they can run beside the servers).
"""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from opsmetrics.catalog.sources import SqlSource, load_sources
from opsmetrics.cli.importer import UrlOpt
from opsmetrics.cli.kpi import JsonOpt, TokenOpt, api_get
from opsmetrics.client.transport import DEFAULT_URL
from opsmetrics.clock import clock_from_env
from opsmetrics.errors import BadDataError, NotFoundError
from opsmetrics.ingest.sql_rows import as_datetime
from opsmetrics.ingest.sql_sources import SourceRunner
from opsmetrics.services import Services, open_services
from opsmetrics.settings import Settings

app = typer.Typer(help="SQL sources: list, test, run, backfill.", no_args_is_help=True)
console = Console()
err_console = Console(stderr=True)

NameArg = Annotated[str, typer.Argument(help="The source's name (config/sources/*.yaml).")]
ConfigOpt = Annotated[Path, typer.Option("--config", help="Config directory.")]
DataOpt = Annotated[Path | None, typer.Option("--data", help="Data directory.")]
#: A backfill stops after this many runs that each stored rows (a cursor that never moves).
MAX_BACKFILL_RUNS = 1_000_000


@app.command("list")
def list_sources(
    url: UrlOpt = DEFAULT_URL, token: TokenOpt = None, as_json: JsonOpt = False
) -> None:
    """Every SQL source with its last run: up, rows, cursor, lag, error (from the server)."""
    response = api_get(url, token, "/api/v1/sources", {})
    if as_json:
        typer.echo(json.dumps(response))
        return
    table = Table("name", "driver", "up", "last run", "rows", "total", "cursor", "lag", "error")
    for s in response["data"]:
        run = s["last_run"] or {}
        up = {True: "[green]up[/]", False: "[red]down[/]"}.get(s["up"], "—")
        cursor = (s["cursor"] or {}).get("value", "—")
        lag = "—" if s["lag_seconds"] is None else f"{s['lag_seconds']:.0f}s"
        rows = str(run.get("rows", "—"))
        table.add_row(s["name"], s["driver"], up, _when(run.get("finished_ms")), rows,
                      str(s["rows_total"]), cursor, lag, s["error"] or "")  # fmt: skip
    console.print(table)


def _when(ms: int | None) -> str:
    if ms is None:
        return "—"
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S")


def _source(config: Path, name: str) -> SqlSource:
    source = load_sources(config).named(name)
    if source is None:
        raise NotFoundError(f"no source {name!r} in {config}/sources/; see `opsmetrics validate`")
    return source


def _services(config: Path, data: Path | None) -> Services:
    settings = Settings.from_env(os.environ, config_dir=config, data_dir=data)
    return open_services(settings, clock_from_env(os.environ))


def _runner(svc: Services, source: SqlSource) -> SourceRunner:
    env, data = dict(os.environ), svc.settings.data_dir
    return SourceRunner(source, svc.storage, svc.ingestor.write, svc.clock, env, data)


@app.command("test")
def test_source(
    name: NameArg,
    config: ConfigOpt = Path("config"),
    data: DataOpt = None,
    limit: Annotated[int, typer.Option("--limit", help="Rows to show.")] = 5,
) -> None:
    """Connect, run the query from the stored cursor (or `initial`), check the column types of
    the first rows and print them; nothing is stored."""
    source = _source(config, name)
    svc = _services(config, data)
    try:
        columns, rows = _runner(svc, source).preview(limit)
    finally:
        svc.close()
    table = Table(*columns, title=f"{name}: the first {len(rows)} rows after the cursor")
    for row in rows:
        table.add_row(*(str(v) for v in row))
    console.print(table)
    console.print(f"{name}: ok, the column types fit `emit`")


@app.command("run")
def run_source(name: NameArg, config: ConfigOpt = Path("config"), data: DataOpt = None) -> None:
    """Pull once now: the rows after the cursor, up to max_rows, stored batch by batch."""
    source = _source(config, name)
    svc = _services(config, data)
    try:
        run = _runner(svc, source).run()
        cursor = svc.storage.source_cursor(name)
    finally:
        svc.close()
    if run.error:
        raise BadDataError(f"source {name}: {run.error} ({run.rows} rows stored first)")
    console.print(f"{name}: {run.rows} rows stored; cursor {cursor.value if cursor else '—'}")


def _since(text: str) -> datetime | int:
    if text.lstrip("-").isdigit():
        return int(text)
    return as_datetime(text, "--since", 0)


@app.command("backfill")
def backfill(
    name: NameArg,
    since: Annotated[
        str | None,
        typer.Option("--since", help="Start here (a timestamp or an id); without it, resume."),
    ] = None,
    config: ConfigOpt = Path("config"),
    data: DataOpt = None,
) -> None:
    """Pull from --since until caught up, run after run. Interrupted, it resumes from the
    cursor: run it again without --since."""
    source = _source(config, name)
    svc = _services(config, data)
    try:
        runner = _runner(svc, source)
        if since is not None:
            runner.set_cursor(_check_kind(source, _since(since)))
        total = _backfill(runner)
        cursor = svc.storage.source_cursor(name)
    finally:
        svc.close()
    console.print(f"{name}: {total} rows stored; cursor {cursor.value if cursor else '—'}")


def _check_kind(source: SqlSource, value: datetime | int) -> datetime | int:
    cursor = source.spec.cursor
    if cursor is None:
        raise BadDataError(f"source {source.name} has no cursor: there is nothing to backfill")
    if isinstance(cursor.initial, datetime) != isinstance(value, datetime):
        kind = "a timestamp" if isinstance(cursor.initial, datetime) else "an integer id"
        raise BadDataError(f"--since: the cursor of {source.name} is {kind}")
    return value


def _backfill(runner: SourceRunner) -> int:
    columns: list[Any] = [SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn()]
    total = 0
    with Progress(*columns, console=err_console) as progress:
        task = progress.add_task(f"{runner.source.name}: 0 rows", total=None)

        def advance(rows: int) -> None:
            nonlocal total
            total += rows
            progress.update(task, description=f"{runner.source.name}: {total:,} rows")

        for _ in range(MAX_BACKFILL_RUNS):
            run = runner.run(on_batch=advance)
            if run.error:
                raise _StoppedError(runner.source.name, run.error, total)
            if not run.rows:
                break
    return total


class _StoppedError(BadDataError):
    def __init__(self, name: str, error: str, total: int) -> None:
        super().__init__(
            f"source {name}: {error}; {total} rows were stored before it, and "
            f"`opsmetrics sources backfill {name}` resumes from the cursor"
        )
