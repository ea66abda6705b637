"""`opsmetrics storage migrate`: copy samples, events and state between backends."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from opsmetrics.clock import SystemClock
from opsmetrics.durations import parse_duration_ms, parse_time_ms
from opsmetrics.errors import UserError
from opsmetrics.ingest.migrate import Checkpoint, MigrationReport, migrate_data, migrate_state
from opsmetrics.settings import Settings
from opsmetrics.storage.open import open_data_store, open_state_store

err_console = Console(stderr=True)

FromOpt = Annotated[
    str, typer.Option("--from", help="Source of samples and events: duckdb://DIR, clickhouse://…")
]
ToOpt = Annotated[str, typer.Option("--to", help="Destination of samples and events.")]
StateFromOpt = Annotated[
    str | None, typer.Option("--state-from", help="Source state store (duckdb://DIR).")
]
StateToOpt = Annotated[
    str | None, typer.Option("--state-to", help="Destination state store (postgresql://…).")
]
SinceOpt = Annotated[
    str,
    typer.Option(
        "--since",
        help="Copy samples and events from then: a duration back from now (800d) or a time "
        "(RFC 3339).",
    ),
]
UntilOpt = Annotated[
    str | None, typer.Option("--until", help="…up to then (RFC 3339; default: now).")
]
CheckpointOpt = Annotated[
    Path | None,
    typer.Option("--checkpoint", help="Progress file (default: in the current directory)."),
]


def migrate(
    source: FromOpt,
    destination: ToOpt,
    state_from: StateFromOpt = None,
    state_to: StateToOpt = None,
    since: SinceOpt = "800d",
    until: UntilOpt = None,
    checkpoint: CheckpointOpt = None,
) -> None:
    """Copy everything from one backend to another; resumable; counts verified at the end.

    Stop the servers writing to the source first. Run it again after an interruption: it
    resumes at the day it was in.
    """
    settings = Settings.from_env(os.environ)
    clock = SystemClock()
    now = parse_time_ms(until, field="--until") if until else clock.now_ms()
    since_ms = _since_ms(since, now)
    digest = hashlib.sha256(f"{source}\n{destination}".encode()).hexdigest()[:12]
    cp = Checkpoint(
        checkpoint or Path(f"opsmetrics-migrate-{digest}.json"), _safe(source), _safe(destination)
    )
    src = open_data_store(source, settings, clock)
    try:
        dst = open_data_store(destination, settings, clock)
        try:
            with _progress() as bar:
                report = migrate_data(
                    src, dst, since_ms=since_ms, until_ms=now, checkpoint=cp, progress=bar
                )
        finally:
            dst.close()
    finally:
        src.close()
    if state_from or state_to:
        if not (state_from and state_to):
            raise UserError("--state-from and --state-to go together")
        s_src = open_state_store(state_from, settings, clock)
        try:
            s_dst = open_state_store(state_to, settings, clock)
            try:
                with _progress() as bar:
                    report.state = migrate_state(s_src, s_dst, bar)
            finally:
                s_dst.close()
        finally:
            s_src.close()
    _print(report)
    if report.mismatches:
        raise typer.Exit(1)
    cp.path.unlink(missing_ok=True)


class _Bar:
    def __init__(self, progress: Progress) -> None:
        self._progress = progress
        self._tasks: dict[str, int] = {}

    def __call__(self, phase: str, done: int, total: int) -> None:
        task = self._tasks.get(phase)
        if task is None:
            task = self._tasks[phase] = int(self._progress.add_task(phase, total=total))
        self._progress.update(task, completed=done, total=total)  # type: ignore[arg-type]


class _progress:
    def __enter__(self) -> _Bar:
        self._p = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=err_console,
        )
        self._p.__enter__()
        return _Bar(self._p)

    def __exit__(self, *exc: object) -> None:
        self._p.__exit__(None, None, None)


def _print(report: MigrationReport) -> None:
    err_console.print(
        f"copied {report.copied.samples} samples of {report.series} series and "
        f"{report.copied.events} events over {report.days} days, {report.annotations} "
        f"annotations, {report.metadata} metadata entries"
    )
    if report.state:
        err_console.print("state: " + ", ".join(f"{v} {k}" for k, v in report.state.items()))
    for day, want, got in report.mismatches:
        err_console.print(
            f"[red]day starting {day} ms: the source has {want.samples} samples and "
            f"{want.events} events, the destination {got.samples} and {got.events}[/red]"
        )
    if not report.mismatches:
        err_console.print("verified: every day's sample and event counts match")


def _since_ms(text: str, now_ms: int) -> int:
    try:
        return now_ms - parse_duration_ms(text, field="--since")
    except UserError:
        return parse_time_ms(text, field="--since")


def _safe(url: str) -> str:
    """The URL without its password (it goes into the checkpoint file)."""
    if "@" not in url or "://" not in url:
        return url
    scheme, rest = url.split("://", 1)
    creds, host = rest.rsplit("@", 1)
    return f"{scheme}://{creds.split(':', 1)[0]}@{host}"
