"""A real PostgreSQL server for the tests: Debian's PostgreSQL 15 in a temp dir, on a free
loopback port, run as the `postgres` system user (initdb and postgres refuse root).

`postgres_url` (session-scoped) is the superuser's URL of one server for the whole run;
`pg_state_url` is a fresh database on it per test, dropped after. A test module imports both
(`from tests.postgres_server import postgres_url, pg_state_url  # noqa: F401`). A test that
stops its server starts a `PostgresServer` of its own.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
import pytest

from tests.server import free_port


def _pg_bin() -> Path:
    """The newest PostgreSQL Debian installed (15 on bookworm)."""
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"), key=lambda p: int(p.parts[-3]))
    return found[-1].parent if found else Path("/usr/lib/postgresql/15/bin")


PG_BIN = _pg_bin()
PG_USER = "postgres"
PASSWORD = "s3cret-Pw-for-tests"


def run_as_postgres(args: list[str], cwd: Path, timeout_s: float) -> str:
    """Run a PostgreSQL tool as the postgres user, killed after `timeout_s`; its output.

    Output goes to a file, not a pipe: `pg_ctl start` leaves the server running, and a pipe
    it inherited would never reach EOF. A timer kills rather than Popen.wait(timeout), which
    sleeps with time.sleep (tests/README.md on libfaketime).
    """
    out = cwd / f"{Path(args[0]).name}-{uuid.uuid4().hex[:6]}.out"
    with out.open("wb") as sink:
        proc = subprocess.Popen(
            ["runuser", "-u", PG_USER, "--", *args],
            cwd=cwd,
            stdout=sink,
            stderr=subprocess.STDOUT,
            env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LC_ALL": "C.UTF-8"},
        )
        timer = threading.Timer(timeout_s, proc.kill)
        timer.start()
        try:
            proc.wait()
        finally:
            timer.cancel()
    text = out.read_text(errors="replace")
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} exited with {proc.returncode}:\n{text}")
    return text


@dataclass
class PostgresServer:
    """One PostgreSQL cluster in its own temp dir; `start()`, `stop()`, `start()` again…"""

    root: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="opsmetrics-pg-")))
    port: int = field(default_factory=free_port)

    @property
    def data(self) -> Path:
        return self.root / "data"

    def url(self, database: str = "postgres", password: str = PASSWORD) -> str:
        return f"postgresql://{PG_USER}:{password}@127.0.0.1:{self.port}/{database}"

    def init(self) -> PostgresServer:
        # A temp dir is root's and 0700: the postgres user needs it as its own.
        shutil.chown(self.root, PG_USER, PG_USER)
        pwfile = self.root / "pwfile"
        pwfile.write_text(PASSWORD + "\n")
        shutil.chown(pwfile, PG_USER, PG_USER)
        run_as_postgres(
            [
                str(PG_BIN / "initdb"), "-D", str(self.data), "-U", PG_USER,
                f"--pwfile={pwfile}", "--auth-local=trust", "--auth-host=scram-sha-256",
                "--encoding=UTF8", "--locale=C.UTF-8",
            ],
            self.root,
            timeout_s=120,
        )  # fmt: skip
        return self

    def start(self) -> PostgresServer:
        options = (
            f"-c listen_addresses=127.0.0.1 -p {self.port} "
            f"-c unix_socket_directories={self.root} -c fsync=on"
        )
        pg_ctl = str(PG_BIN / "pg_ctl")
        log = str(self.root / "server.log")
        # -w: pg_ctl itself polls until the server accepts connections (at most -t seconds).
        args = [pg_ctl, "-D", str(self.data), "-l", log, "-o", options, "-w", "-t", "60"]
        run_as_postgres([*args, "start"], self.root, timeout_s=90)
        with psycopg.connect(self.url(), connect_timeout=10) as conn:
            conn.execute("SELECT 1")
        return self

    def stop(self) -> None:
        pg_ctl = str(PG_BIN / "pg_ctl")
        run_as_postgres(
            [pg_ctl, "-D", str(self.data), "stop", "-m", "fast", "-w", "-t", "60"],
            self.root,
            timeout_s=90,
        )

    def running(self) -> bool:
        return (self.data / "postmaster.pid").exists()

    def remove(self) -> None:
        if self.running():
            self.stop()
        shutil.rmtree(self.root, ignore_errors=True)


def create_database(admin_url: str) -> str:
    """A fresh, empty database on the server of `admin_url`; its URL."""
    name = "t_" + uuid.uuid4().hex[:16]
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    return admin_url.rsplit("/", 1)[0] + "/" + name


def drop_database(admin_url: str, url: str) -> None:
    name = url.rsplit("/", 1)[1]
    with psycopg.connect(admin_url, autocommit=True) as conn:
        # FORCE: a test that failed may have left a store (and its pool) open.
        conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """The superuser's URL of one server for the whole run (its `postgres` database)."""
    server = PostgresServer().init().start()
    try:
        yield server.url()
    finally:
        server.remove()


@pytest.fixture
def pg_state_url(postgres_url: str) -> Iterator[str]:
    """A fresh, empty database on the session's server, dropped afterwards; its URL."""
    url = create_database(postgres_url)
    yield url
    drop_database(postgres_url, url)
