"""A real MariaDB server for the tests: Debian's mariadbd with a data directory made by
mariadb-install-db in a temp dir, on a free loopback port, torn down after.

`mariadb_server` (module-scoped) is a started server; `server.url(database)` its URL for the
user `reader` (password PASSWORD), who may only SELECT, and `server.admin()` a root
connection over the socket for setting up tables.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pymysql
import pytest

from tests.server import free_port, wait_until

MARIADBD = Path("/usr/sbin/mariadbd")
INSTALL_DB = Path("/usr/bin/mariadb-install-db")
PASSWORD = "reader-Pw-for-tests"


def _run(args: list[str], log: Path, timeout_s: float) -> None:
    """Run to the end, killed after `timeout_s` (a timer, not Popen.wait: tests/README.md)."""
    with log.open("ab") as sink:
        proc = subprocess.Popen(args, stdout=sink, stderr=subprocess.STDOUT)
        timer = threading.Timer(timeout_s, proc.kill)
        timer.start()
        try:
            proc.wait()
        finally:
            timer.cancel()
    if proc.returncode != 0:
        raise RuntimeError(f"{args[0]} exited with {proc.returncode}:\n{log.read_text()}")


@dataclass
class MariaDBServer:
    root: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="opsmetrics-maria-")))
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None

    @property
    def socket(self) -> Path:
        return self.root / "mysqld.sock"

    def url(self, database: str = "shop") -> str:
        return f"mariadb://reader@127.0.0.1:{self.port}/{database}"

    def init(self) -> MariaDBServer:
        _run(
            [
                str(INSTALL_DB), f"--datadir={self.root / 'data'}", "--user=root",
                "--auth-root-authentication-method=socket", "--skip-test-db",
            ],
            self.root / "install.log",
            timeout_s=120,
        )  # fmt: skip
        return self

    def start(self) -> MariaDBServer:
        args = [
            str(MARIADBD), "--no-defaults", f"--datadir={self.root / 'data'}", "--user=root",
            f"--port={self.port}", "--bind-address=127.0.0.1", f"--socket={self.socket}",
            f"--pid-file={self.root / 'mysqld.pid'}", "--skip-log-bin",
            "--innodb-buffer-pool-size=32M",
        ]  # fmt: skip
        with (self.root / "server.log").open("ab") as log:
            self.proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT)
        wait_until(self._answers, "MariaDB to accept connections", timeout_s=60)
        return self

    def _answers(self) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise RuntimeError(f"mariadbd exited:\n{(self.root / 'server.log').read_text()}")
        if not self.socket.exists():
            return False
        try:
            self.admin().close()
        except pymysql.err.OperationalError:
            return False
        return True

    def admin(self) -> pymysql.connections.Connection:  # type: ignore[type-arg]
        return pymysql.connect(unix_socket=str(self.socket), user="root", autocommit=True)

    def create_reader(self, database: str = "shop") -> None:
        con = self.admin()
        with con.cursor() as cur:
            cur.execute(f"CREATE DATABASE IF NOT EXISTS {database}")
            cur.execute(
                "CREATE USER IF NOT EXISTS 'reader'@'127.0.0.1' IDENTIFIED BY %s", [PASSWORD]
            )
            cur.execute(f"GRANT SELECT ON {database}.* TO 'reader'@'127.0.0.1'")
        con.close()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            timer = threading.Timer(60, self.proc.kill)
            timer.start()
            self.proc.wait()
            timer.cancel()

    def remove(self) -> None:
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)


@pytest.fixture(scope="module")
def mariadb_server() -> Iterator[MariaDBServer]:
    if not MARIADBD.exists():
        pytest.skip("mariadb-server is not installed (make installs it)")
    server = MariaDBServer().init().start()
    server.create_reader()
    try:
        yield server
    finally:
        server.remove()
