"""`opsmetrics archive export|restore`: samples, events and rollups as Parquet by day.

Both open the data store themselves: on DuckDB the server must be stopped (it owns the file),
as for `opsmetrics token create`. docs/archive.md has the layout and the rules.
"""

from __future__ import annotations

import os
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from opsmetrics.clock import Clock, clock_from_env
from opsmetrics.durations import parse_time_ms
from opsmetrics.errors import BadDataError
from opsmetrics.settings import Settings
from opsmetrics.storage.archive import DataClass, TimeRange, archivable
from opsmetrics.storage.archive_export import export_archive
from opsmetrics.storage.archive_files import MANIFEST, Manifest
from opsmetrics.storage.archive_restore import RestoreResult, restore_archive
from opsmetrics.storage.composite import DataStore
from opsmetrics.storage.open import data_url, open_data_store

archive_app = typer.Typer(
    help="Archive samples, events and rollups to Parquet, and restore them.", no_args_is_help=True
)
console = Console()

DataOpt = Annotated[Path | None, typer.Option("--data", help="Data directory.")]
TimeHelp = "a date (2026-11-30: midnight UTC), RFC 3339 or Unix seconds"


@archive_app.command("export")
def export(
    to: Annotated[Path, typer.Option("--to", help="A new (or empty) directory.")],
    before: Annotated[
        str | None, typer.Option("--before", help=f"Everything older than then: {TimeHelp}.")
    ] = None,
    since: Annotated[str | None, typer.Option("--since", help=f"From then: {TimeHelp}.")] = None,
    until: Annotated[
        str | None, typer.Option("--until", help=f"Up to (not including) then: {TimeHelp}.")
    ] = None,
    data: DataOpt = None,
) -> None:
    """Write samples, events and rollups of a time range as Parquet files, one per day, with
    a manifest of row counts and checksums (stop the server first)."""
    wanted = export_range(before, since, until)
    clock = clock_from_env(os.environ)
    storage = open_data(data, clock)
    try:
        store = archivable(storage)
        ranges = dict.fromkeys(DataClass, wanted)
        result = export_archive(store, to, ranges, now_ms=clock.now_ms())
    finally:
        storage.close()
    console.print(export_table(result.manifest))
    print(f"archive written to {result.directory}")


@archive_app.command("restore")
def restore(
    directory: Annotated[
        Path, typer.Argument(help="An archive directory, or a directory of archives.")
    ],
    data: DataOpt = None,
) -> None:
    """Load an archive back (idempotent: restoring twice adds nothing); checksums are checked
    first and a damaged file is refused with nothing written (stop the server first)."""
    roots = archive_roots(directory)
    clock = clock_from_env(os.environ)
    storage = open_data(data, clock)
    try:
        store = archivable(storage)
        results = [restore_archive(store, root, now_ms=clock.now_ms()) for root in roots]
    finally:
        storage.close()
    for root, result in zip(roots, results, strict=True):
        print(restore_line(root, result))  # one line each, unwrapped: for scripts too


def open_data(data: Path | None, clock: Clock) -> DataStore:
    """The data store alone (archives hold no state): a state store stays untouched."""
    settings = Settings.from_env(os.environ, data_dir=data)
    return open_data_store(data_url(settings), settings, clock)


def export_range(before: str | None, since: str | None, until: str | None) -> TimeRange:
    if before is not None and until is not None:
        raise BadDataError("--before and --until say the same thing: give one of them")
    end = before if before is not None else until
    if end is None:
        raise BadDataError("say up to when: --before DATE (or --until DATE, with --since)")
    flag = "--before" if before is not None else "--until"
    start_ms = parse_when(since, "--since") if since is not None else 0
    end_ms = parse_when(end, flag)
    if end_ms <= start_ms:
        raise BadDataError(f"{flag} must be later than --since")
    return TimeRange(start_ms, end_ms)


def parse_when(text: str, flag: str) -> int:
    """A date (midnight UTC), an RFC 3339 time or Unix seconds, in ms."""
    try:
        day = date.fromisoformat(text.strip())
    except ValueError:
        return parse_time_ms(text, field=flag)
    return int(datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp() * 1000)


def archive_roots(directory: Path) -> list[Path]:
    """The archive itself, or every archive directly inside (oldest name first)."""
    if (directory / MANIFEST).is_file():
        return [directory]
    inner = sorted(p for p in directory.glob(f"*/{MANIFEST}")) if directory.is_dir() else []
    if not inner:
        raise BadDataError(
            f"{directory}: no {MANIFEST} in it or in its subdirectories; name a directory "
            "written by `opsmetrics archive export` or by the retention hook"
        )
    return [p.parent for p in inner]


def export_table(manifest: Manifest) -> Table:
    table = Table("data", "files", "rows", "bytes")
    for kind in DataClass:
        files = [f for f in manifest.files if f.kind is kind]
        size = sum(f.bytes for f in files)
        table.add_row(kind.value, str(len(files)), str(manifest.rows(kind)), str(size))
    return table


def restore_line(root: Path, r: RestoreResult) -> str:
    return (
        f"{root}: {r.files} files; samples {r.samples_added} added, {r.samples_present} "
        f"already there; events {r.events_added} added, {r.events_present} already there; "
        f"rollup buckets {r.rollups_added} added, {r.rollups_present} replaced"
    )
