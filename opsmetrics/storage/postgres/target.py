"""Where a postgresql:// URL points, for connecting and for messages that never show the
password."""

from __future__ import annotations

from dataclasses import dataclass

import psycopg
from psycopg.conninfo import conninfo_to_dict
from psycopg.rows import TupleRow

from opsmetrics.errors import ConfigError, StorageUnavailableError

#: Seconds libpq waits for a server to answer, unless the URL sets connect_timeout.
CONNECT_TIMEOUT_S = 5
PROBE_TIMEOUT_S = 2
#: What an operator checks when the server cannot be used; every unavailable message ends so.
WHAT_TO_CHECK = (
    "Check that PostgreSQL is running and reachable from this host, and the host, port, user, "
    "password and database in OPSMETRICS_STATE_URL"
)


@dataclass(frozen=True, slots=True)
class Target:
    url: str
    host: str
    port: int
    dbname: str
    user: str
    password: str
    #: Seconds libpq waits for the server to answer a connection attempt.
    connect_timeout_s: int

    @property
    def where(self) -> str:
        """`host:port (database d, user u)`, for messages."""
        return f"{self.host}:{self.port} (database {self.dbname!r}, user {self.user!r})"

    def redact(self, text: str) -> str:
        return text.replace(self.password, "***") if self.password else text

    def unavailable(self, doing: str, cause: BaseException | str) -> StorageUnavailableError:
        """The error for a failure to reach or use the server, naming where and what to check."""
        detail = self.redact(" ".join(str(cause).split()))
        end = "" if detail.endswith((".", "?", "!")) else "."
        return StorageUnavailableError(
            f"PostgreSQL state store at {self.where}: {doing}: {detail}{end} {WHAT_TO_CHECK}"
        )

    def connect(self, timeout_s: int | None = None) -> psycopg.Connection[TupleRow]:
        """A connection outside the pool (autocommit, as the pool's)."""
        timeout = self.connect_timeout_s if timeout_s is None else timeout_s
        return psycopg.connect(self.url, autocommit=True, connect_timeout=timeout)

    def probe(self) -> str:
        """Why a fresh connection fails now, or that it works (to explain a pool timeout).
        Quick (libpq's shortest timeout), as it adds to the time the caller has waited."""
        try:
            self.connect(timeout_s=PROBE_TIMEOUT_S).close()
        except psycopg.Error as exc:
            return " ".join(str(exc).split())
        return "a new connection works now, so every pooled connection was busy"


def parse_url(url: str) -> Target:
    """The target of a postgresql:// URL; ConfigError if it is malformed."""
    try:
        params = conninfo_to_dict(url)
    except psycopg.ProgrammingError as exc:
        raise ConfigError(f"OPSMETRICS_STATE_URL: not a valid PostgreSQL URL: {exc}") from None
    password = str(params.get("password") or "")
    port_text = str(params.get("port") or "5432")
    timeout_text = str(params.get("connect_timeout") or CONNECT_TIMEOUT_S)
    for name, text in (("port", port_text), ("connect_timeout", timeout_text)):
        if not text.isdigit():
            raise ConfigError(
                f"OPSMETRICS_STATE_URL: the {name} {text!r} is not a number; write "
                "postgresql://user:password@host:5432/database"
            )
    return Target(
        url=url,
        host=str(params.get("host") or "the local socket"),
        port=int(port_text),
        dbname=str(params.get("dbname") or params.get("user") or "(default)"),
        user=str(params.get("user") or "(the OS user)"),
        password=password,
        connect_timeout_s=int(timeout_text),
    )
