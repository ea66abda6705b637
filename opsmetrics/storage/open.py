"""Open the stores that Settings names: OPSMETRICS_STORAGE_URL (samples and events) and
OPSMETRICS_STATE_URL (KPI versions, tokens, the alert log, leases).

    duckdb:///abs/path | duckdb://rel/path   the embedded default: one file in that directory
    clickhouse://user:pw@host:8123/db        ClickHouse over HTTP (clickhouse-connect)
    chdb:///abs/path?database=db             ClickHouse's engine in this process (one node)
    postgresql://user:pw@host:5432/db        PostgreSQL, for state only

Unset, both are `duckdb://<data dir>`, and one DuckDB file holds everything.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

from opsmetrics.clock import Clock
from opsmetrics.errors import ConfigError
from opsmetrics.settings import Settings
from opsmetrics.storage.base import StateStore, Storage
from opsmetrics.storage.composite import DataStore, SplitStorage
from opsmetrics.storage.diskspace import DiskGuard
from opsmetrics.storage.duckdb import DuckDBStorage
from opsmetrics.storage.spool import Spool
from opsmetrics.storage.sql_sandbox import limits_of

DATA_SCHEMES = ("duckdb", "clickhouse", "clickhouses", "chdb")
STATE_SCHEMES = ("duckdb", "postgresql", "postgres")


def data_url(settings: Settings) -> str:
    return settings.storage_url or f"duckdb://{settings.data_dir}"


def state_url(settings: Settings) -> str:
    return settings.state_url or f"duckdb://{settings.data_dir}"


def open_stores(settings: Settings, clock: Clock) -> Storage:
    """The Storage the services use, over the backends the two URLs name."""
    d_url, s_url = data_url(settings), state_url(settings)
    d_scheme = _scheme(d_url, "OPSMETRICS_STORAGE_URL", DATA_SCHEMES)
    s_scheme = _scheme(s_url, "OPSMETRICS_STATE_URL", STATE_SCHEMES)
    if d_scheme == "duckdb" and s_scheme == "duckdb" and duckdb_dir(d_url) == duckdb_dir(s_url):
        return _duckdb(settings, clock, duckdb_dir(d_url))
    data = open_data_store(d_url, settings, clock)
    spool: Spool | None = None
    disks = [data.disk] if isinstance(data, DuckDBStorage) else []
    if d_scheme != "duckdb":
        spool = _spool(settings, clock, data)
        disks.append(spool.disk)
    try:
        state = open_state_store(s_url, settings, clock)
    except BaseException:
        if spool is not None:
            spool.close()
        data.close()
        raise
    if isinstance(state, DuckDBStorage):  # not the data store's directory: see above
        disks.append(state.disk)
    return SplitStorage(data, state, spool, disks)


def _spool(settings: Settings, clock: Clock, data: DataStore) -> Spool:
    directory = settings.data_dir / "spool"
    directory.mkdir(parents=True, exist_ok=True)
    disk = DiskGuard(directory, settings.min_free_bytes)
    return Spool(directory, data.write, clock, max_bytes=settings.max_spool_bytes, disk=disk)


def open_data_store(url: str, settings: Settings, clock: Clock) -> DataStore:
    """Samples and events at `url` (no spool: `storage migrate` and `storage init`)."""
    if _scheme(url, "OPSMETRICS_STORAGE_URL", DATA_SCHEMES) == "duckdb":
        return _duckdb(settings, clock, duckdb_dir(url))
    from opsmetrics.storage.clickhouse import open_clickhouse

    limits = limits_of(settings)  # checked before anything is opened
    store = open_clickhouse(url, settings, clock.now_ms())
    store.sql_limits = limits
    return store


def clickhouse_ddl(url: str | None, cluster: str | None) -> list[str]:
    """`opsmetrics storage init --print`: the ClickHouse schema's DDL."""
    from opsmetrics.storage.clickhouse import schema_ddl

    return schema_ddl(url, cluster)


def init_clickhouse(url: str, clock: Clock) -> str:
    """`opsmetrics storage init`: create the ClickHouse schema; returns where."""
    from opsmetrics.storage.clickhouse import init_schema

    return init_schema(url, clock.now_ms())


def open_state_store(url: str, settings: Settings, clock: Clock) -> StateStore:
    if _scheme(url, "OPSMETRICS_STATE_URL", STATE_SCHEMES) == "duckdb":
        return _duckdb(settings, clock, duckdb_dir(url))
    from opsmetrics.storage.postgres import PostgresStateStore

    return PostgresStateStore(url, now_ms=clock.now_ms())


#: The name the rest of the code base has used; same thing.
open_storage = open_stores


def state_is_shared(settings: Settings) -> bool:
    """Whether other nodes may share this state store (then work is split by leases)."""
    scheme = _scheme(state_url(settings), "OPSMETRICS_STATE_URL", STATE_SCHEMES)
    return scheme != "duckdb"


def duckdb_dir(url: str) -> Path:
    rest = url[len("duckdb://") :]
    if not rest:
        raise ConfigError(f"{url!r}: name the data directory, e.g. duckdb:///var/lib/opsmetrics")
    return Path(rest)


def _duckdb(settings: Settings, clock: Clock, data_dir: Path) -> DuckDBStorage:
    limits = limits_of(settings)  # checked before the file is opened
    store = DuckDBStorage(
        data_dir,
        now_ms=clock.now_ms(),
        partition_ms=settings.partition_ms,
        late_window_ms=settings.limits.samples_late_window_ms,
        disk=DiskGuard(data_dir, settings.min_free_bytes),
        memory_limit=settings.duckdb_memory_limit,
    )
    store.sql_limits = limits
    return store


def _scheme(url: str, variable: str, allowed: tuple[str, ...]) -> str:
    scheme = urlsplit(url).scheme.lower()
    if scheme not in allowed:
        raise ConfigError(
            f"{variable}={_redact(url)!r}: the scheme must be one of "
            + ", ".join(f"{s}://" for s in allowed)
        )
    return {"postgres": "postgresql", "clickhouses": "clickhouse"}.get(scheme, scheme)


def _redact(url: str) -> str:
    """The URL without its password, for messages and logs."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
    return parts._replace(netloc=netloc).geturl()
