"""`opsmetrics storage init [--url URL] [--cluster NAME] [--print]`: the ClickHouse schema.

Without --print it connects and runs the numbered migrations (idempotent: a second run does
nothing). With --print it writes the DDL to stdout instead — with --cluster, the ON CLUSTER
form (replicated local tables plus Distributed tables) for a DBA to run.
"""

from __future__ import annotations

import os
from typing import Annotated

import typer
from rich.console import Console

from opsmetrics.cli.storage_migrate import migrate
from opsmetrics.clock import clock_from_env
from opsmetrics.errors import ConfigError
from opsmetrics.settings import Settings
from opsmetrics.storage.open import clickhouse_ddl, init_clickhouse

storage_app = typer.Typer(help="Set up the storage backend.", no_args_is_help=True)
console = Console()

UrlOpt = Annotated[
    str | None,
    typer.Option(
        "--url",
        help="clickhouse://user:pw@host:8123/db or chdb:///path?database=db "
        "(default: OPSMETRICS_STORAGE_URL).",
    ),
]
ClusterOpt = Annotated[
    str | None, typer.Option("--cluster", help="Print ON CLUSTER DDL for this cluster.")
]
PrintOpt = Annotated[bool, typer.Option("--print", help="Print the DDL instead of running it.")]


@storage_app.command("init")
def init(url: UrlOpt = None, cluster: ClusterOpt = None, print_ddl: PrintOpt = False) -> None:
    """Create the ClickHouse schema (idempotent), or print its DDL."""
    url = url or Settings.from_env(os.environ).storage_url
    if print_ddl:
        for statement in clickhouse_ddl(url or None, cluster):
            print(statement + ";\n")
        return
    if not url:
        raise ConfigError("name the ClickHouse database: --url or OPSMETRICS_STORAGE_URL")
    if cluster is not None:
        raise ConfigError(
            "ON CLUSTER DDL is not run from here: print it with --print --cluster and run it "
            "with clickhouse-client, then start the nodes"
        )
    where = init_clickhouse(url, clock_from_env(os.environ))
    console.print(f"schema ready in {where}")


storage_app.command("migrate")(migrate)
