"""The DuckDB connection of one data file: a cursor per thread, one writer at a time, and the
way back from a full disk.

On a full disk DuckDB fails in two ways (tried on ext4, DuckDB 2.0): a commit that cannot
append to the WAL fails and rolls back, and the database works on; a checkpoint that cannot
write its blocks (an explicit CHECKPOINT, or the automatic one after a commit: then the commit
itself "succeeded and is durable") invalidates the database, and every later statement fails
until the file is opened anew. Opening it replays the WAL, so nothing committed is lost, and
works on a full disk too. So a write that hits ENOSPC becomes an InsufficientStorageError, an
invalidated database is reopened at once (reads go on), and the next write simply tries again.

DuckDB's own checkpoint at commit is turned off (`checkpoint_threshold` in INSTANCE_SETTINGS):
when it met ENOSPC inside COMMIT, DuckDB 2.0.1 sometimes crashed the process (SIGSEGV, about
one run in ten of tests/test_full_disk.py). The connection checkpoints after the commit
instead, at DuckDB's default WAL size, and only when the filesystem has room for it; otherwise
the WAL takes the writes until the disk is really full, and the checkpoint runs once room is
back. A checkpoint that fails anyway invalidates the database, which is reopened as above.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import duckdb

from opsmetrics.errors import (
    CorruptDataError,
    InsufficientStorageError,
    OpsMetricsError,
    StorageUnavailableError,
)
from opsmetrics.storage.diskspace import DiskGuard, is_no_space

log = logging.getLogger(__name__)

#: DuckDB's words for a commit that is on disk although the checkpoint after it failed.
COMMIT_DURABLE = "COMMIT succeeded and is durable"
INVALIDATED = "database has been invalidated"
MIB = 1024 * 1024
#: Checkpoint once the WAL is this big (DuckDB's default automatic threshold) ...
CHECKPOINT_WAL_BYTES = 16 * MIB
#: ... if the filesystem has this much free beyond the WAL's size (a checkpoint writes new
#: blocks for what the WAL holds before it frees the old ones).
CHECKPOINT_SLACK_BYTES = 4 * MIB
#: Connection settings for that: DuckDB itself never checkpoints at commit.
INSTANCE_SETTINGS: dict[str, str] = {"checkpoint_threshold": "1000GB"}

Connect = Callable[[Path], duckdb.DuckDBPyConnection]


class Connection:
    def __init__(
        self, path: Path, connect: Connect, disk: DiskGuard, on_reopen: Callable[[], None]
    ) -> None:
        self.path = path
        self.disk = disk
        self._connect = connect
        self._on_reopen = on_reopen
        self._con: duckdb.DuckDBPyConnection | None = self._open()
        self._generation = 0
        self._local = threading.local()
        self._open_lock = threading.Lock()
        self.write_lock = threading.Lock()
        self._checkpoint_put_off = False

    @property
    def main(self) -> duckdb.DuckDBPyConnection:
        with self._open_lock:
            if self._con is None:  # an earlier reopen failed: try again now
                self._con = self._open()
            return self._con

    def _open(self) -> duckdb.DuckDBPyConnection:
        try:
            return self._connect(self.path)
        except OpsMetricsError as exc:
            if is_no_space(exc):
                raise no_room_to_open(self.path) from exc
            raise

    def cursor(self) -> duckdb.DuckDBPyConnection:
        """This thread's cursor on the current connection (a new one after a reopen)."""
        held: tuple[int, duckdb.DuckDBPyConnection] | None = getattr(self._local, "cursor", None)
        if held is not None and held[0] == self._generation:
            return held[1]
        generation, cur = self._generation, self.main.cursor()
        self._local.cursor = (generation, cur)
        return cur

    # --- writing ------------------------------------------------------------------------
    @contextmanager
    def transaction(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """One write transaction; below the disk reserve it is refused before it starts."""
        with self.write_lock:
            self.disk.check()
            cur = self.cursor()
            cur.execute("BEGIN TRANSACTION")
            try:
                yield cur
            except BaseException as exc:
                self._rollback(cur)
                failure = self._failure(exc)
                if failure is None:
                    raise
                raise failure from exc
            if self._commit(cur):
                self.disk.written()
                self._checkpoint_if_due(cur)

    def _rollback(self, cur: duckdb.DuckDBPyConnection) -> None:
        try:
            cur.execute("ROLLBACK")
        except duckdb.Error as exc:
            if not _invalidated(exc):
                raise
            # Nothing to undo: an invalidated database keeps nothing uncommitted.

    def _failure(self, exc: BaseException) -> OpsMetricsError | None:
        """What to raise for an error inside a transaction (None: the error itself)."""
        if not isinstance(exc, duckdb.Error):
            return None
        if _invalidated(exc):
            self.reopen()
        if is_no_space(exc):
            return self.disk.no_space(exc)
        if _invalidated(exc):
            return StorageUnavailableError(f"write failed: {exc}; the database was reopened")
        return None

    def _commit(self, cur: duckdb.DuckDBPyConnection) -> bool:
        """COMMIT; True when it went through with room to spare, False when it is durable but
        the checkpoint after it found no room. Raises when the commit did not happen."""
        try:
            cur.execute("COMMIT")
            return True
        except duckdb.Error as exc:
            if _invalidated(exc):
                self.reopen()
            if COMMIT_DURABLE in str(exc):
                log.warning("%s: committed, but the checkpoint after it failed: %s", self.path, exc)
                if is_no_space(exc):
                    self.disk.no_space(exc)
                return False
            if is_no_space(exc):
                raise self.disk.no_space(exc) from exc
            raise StorageUnavailableError(f"commit failed: {exc}") from exc

    def _checkpoint_if_due(self, cur: duckdb.DuckDBPyConnection) -> None:
        """After a commit (which is durable whatever happens here): checkpoint a big WAL when
        the filesystem has room for it; a failure is logged, never raised."""
        wal = self.wal_bytes()
        if wal < CHECKPOINT_WAL_BYTES:
            return
        free = self.disk.free_bytes()
        if free < wal + CHECKPOINT_SLACK_BYTES:
            if not self._checkpoint_put_off:
                log.warning(
                    "%s: checkpoint put off: the WAL has %d bytes and the filesystem %d free; "
                    "it runs once there is room",
                    self.path,
                    wal,
                    free,
                )
            self._checkpoint_put_off = True
            return
        self._checkpoint_put_off = False
        try:
            cur.execute("CHECKPOINT")
        except duckdb.Error as exc:
            self._failure(exc)
            log.warning("%s: committed, but the checkpoint after it failed: %s", self.path, exc)

    def wal_bytes(self) -> int:
        try:
            return self.path.with_name(self.path.name + ".wal").stat().st_size
        except FileNotFoundError:
            return 0

    def checkpoint(self) -> None:
        with self.write_lock:
            try:
                self.cursor().execute("CHECKPOINT")
            except duckdb.Error as exc:
                failure = self._failure(exc)
                raise (failure or StorageUnavailableError(f"checkpoint failed: {exc}")) from exc

    # --- reopening and closing ----------------------------------------------------------
    def reopen(self) -> None:
        """A new database instance on the same file: DuckDB refuses every statement once a
        fatal error invalidated it; opening replays the WAL, every commit that succeeded."""
        with self._open_lock:
            old, self._con = self._con, None
            self._generation += 1
            _close_quietly(old)
            try:
                self._con = self._open()
            except OpsMetricsError as exc:
                log.error("%s: reopening failed (%s); trying again at the next use", self.path, exc)
                return
        log.warning("%s: reopened after DuckDB invalidated the database", self.path)
        self._on_reopen()

    def close(self) -> None:
        """Checkpoint and close; on a full disk the WAL keeps what the checkpoint could not
        write, and the next start replays it."""
        with self.write_lock, self._open_lock:
            con, self._con = self._con, None
            if con is None:
                return
            try:
                con.execute("CHECKPOINT")
            except duckdb.Error as exc:
                log.warning(
                    "%s: no checkpoint at close (%s); the WAL is replayed at start", self.path, exc
                )
            _close_quietly(con)


def unreadable(path: Path, exc: duckdb.Error) -> OpsMetricsError:
    """The error for a data file that could not be migrated or read at start."""
    if is_no_space(exc):
        return no_room_to_open(path)
    return CorruptDataError(
        f"cannot read {path}: {exc}. The data file is damaged; restore it from a "
        "backup or move it away to start empty"
    )


def no_room_to_open(path: Path) -> InsufficientStorageError:
    return InsufficientStorageError(
        f"cannot open {path}: its filesystem is full (no space left on device). Free disk "
        "space there and start again; nothing stored is lost"
    )


def _invalidated(exc: BaseException) -> bool:
    return isinstance(exc, duckdb.FatalException) or INVALIDATED in str(exc)


def _close_quietly(con: duckdb.DuckDBPyConnection | None) -> None:
    if con is None:
        return
    try:
        con.close()
    except duckdb.Error as exc:
        log.warning("closing a DuckDB connection failed: %s", exc)
