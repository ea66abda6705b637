"""`opsmetrics import FILE`: send a file to the running server's API, with a progress bar."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)

from opsmetrics.client.fileformats import ImportFormat
from opsmetrics.client.fileimport import FileImport, ImportResult
from opsmetrics.client.transport import DEFAULT_URL, RetryPolicy, Transport
from opsmetrics.clock import clock_from_env

UrlOpt = Annotated[
    str, typer.Option("--url", envvar="OPSMETRICS_URL", help="The opsmetrics server.")
]
TokenOpt = Annotated[
    str | None,
    typer.Option("--token", envvar="OPSMETRICS_TOKEN", help="Bearer token (scope ingest)."),
]
err_console = Console(stderr=True)


def import_file(
    file: Annotated[
        Path, typer.Argument(exists=True, dir_okay=False, readable=True, help="File to import.")
    ],
    url: UrlOpt = DEFAULT_URL,
    token: TokenOpt = None,
    fmt: Annotated[
        ImportFormat, typer.Option("--format", help="File format; auto guesses from the name.")
    ] = ImportFormat.AUTO,
    batch_size: Annotated[
        int, typer.Option("--batch-size", min=1, help="Records per request.")
    ] = 1000,
    max_batches: Annotated[int | None, typer.Option("--max-batches", hidden=True)] = None,
) -> None:
    """Import samples (JSON/NDJSON), events (NDJSON/CSV) or Prometheus text through the API.

    Resumable: an interrupted import continues where the server last acknowledged.
    """
    quiet_http_log()
    transport = Transport(url, token, policy=RetryPolicy(max_retries=5, max_backoff=5.0))
    try:
        job = FileImport(file, transport, fmt=fmt, batch_size=batch_size, now_ms=_now_ms())
        if job.state.offset:
            err_console.print(f"resuming {file} from byte {job.state.offset}")
        result = _run_with_progress(job, max_batches)
    finally:
        transport.close()
    _report(file, job.format, result)


def quiet_http_log() -> None:
    """httpx logs every request at INFO: noise on top of the progress bar."""
    logging.getLogger("httpx").setLevel(logging.WARNING)


def _now_ms() -> int:
    # The import's fixed timestamp for samples that have none, recorded in the progress file.
    # The clock is `serve`'s, so the test-only OPSMETRICS_FAKE_NOW moves both alike.
    return clock_from_env(os.environ).now_ms()


def _run_with_progress(job: FileImport, max_batches: int | None) -> ImportResult:
    columns = (
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=err_console, transient=False) as progress:
        task = progress.add_task(job.path.name, total=job.size)
        return job.run(lambda done: progress.update(task, completed=done), max_batches)


def _report(file: Path, fmt: ImportFormat, result: ImportResult) -> None:
    what = "events" if fmt.path.endswith("events") else "samples"
    status = "imported" if result.complete else "stopped early; run again to resume:"
    typer.echo(f"{status} {result.records} {what} from {file} in {result.batches} batches")
