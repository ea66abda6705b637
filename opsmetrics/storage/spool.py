"""A bounded, fsynced local spool in front of a remote data store (ClickHouse).

When the store cannot take a write (StorageUnavailableError), the batch goes to a file in the
spool directory, fsynced before `write` returns, so the request is acknowledged only once it is
durable on this node. While anything is spooled, new batches queue behind it (order is kept)
and a drain thread writes them to the store, oldest first, as soon as it answers again; each
file is deleted only after the store has taken it. When the spool holds `max_bytes`, `write`
raises StorageUnavailableError: the HTTP layer answers 503 with Retry-After, and nothing of the
request is stored. A spooled batch the store refuses for another reason (not an outage) is
moved to `rejected/` for an operator and counted, never dropped silently.

Replaying a batch is safe because the remote backend's writes are idempotent (series ids are
label hashes, samples and events are deduplicated by key): a crash between the store's commit
and the file's deletion only writes the same rows again.

File format: `<seq:020d>-<spooled_ms>.batch`, a msgpack document (`_Record`), written to a
`.tmp` file, fsynced, renamed, and the directory fsynced.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import msgspec
import numpy as np

from opsmetrics.clock import Clock, pause
from opsmetrics.errors import StorageUnavailableError
from opsmetrics.model import Annotation, Event, MetricMetadata, MetricType, Series
from opsmetrics.storage.base import StoredEvent, WriteBatch
from opsmetrics.storage.diskspace import DiskGuard, is_no_space

log = logging.getLogger(__name__)
SUFFIX = ".batch"
#: How long the drain thread waits before trying an unavailable store again.
RETRY_S = 1.0


@dataclass(frozen=True, slots=True)
class SpoolStats:
    """For /metrics and /readyz: what waits on this node for the store."""

    bytes: int = 0
    batches: int = 0
    oldest_ms: int | None = None
    rejected: int = 0
    max_bytes: int = 0
    #: The last write found no room (until a drained batch frees some): /readyz answers 503.
    full: bool = False


class _Record(msgspec.Struct, array_like=True):
    series: list[tuple[int, list[tuple[str, str]]]]
    series_ids: bytes
    ts: bytes
    values: bytes
    events: list[tuple[int, Event]]
    annotations: list[Annotation]
    metadata: list[tuple[str, str, str, str]]


def encode(batch: WriteBatch) -> bytes:
    record = _Record(
        series=[(s.id, [tuple(p) for p in s.labels]) for s in batch.new_series],  # type: ignore[misc]
        series_ids=np.ascontiguousarray(batch.series_ids, np.int64).tobytes(),
        ts=np.ascontiguousarray(batch.ts, np.int64).tobytes(),
        values=np.ascontiguousarray(batch.values, np.float64).tobytes(),
        events=[(e.key, e.event) for e in batch.events],
        annotations=list(batch.annotations),
        metadata=[(m.metric, m.type.value, m.help, m.unit) for m in batch.metadata],
    )
    return msgspec.msgpack.encode(record)


def decode(data: bytes) -> WriteBatch:
    r = msgspec.msgpack.decode(data, type=_Record)
    return WriteBatch(
        new_series=[Series(i, tuple((k, v) for k, v in labels)) for i, labels in r.series],
        series_ids=np.frombuffer(r.series_ids, np.int64).copy(),
        ts=np.frombuffer(r.ts, np.int64).copy(),
        values=np.frombuffer(r.values, np.float64).copy(),
        events=[StoredEvent(k, e) for k, e in r.events],
        annotations=list(r.annotations),
        metadata=[MetricMetadata(m, MetricType(t), h, u) for m, t, h, u in r.metadata],
    )


class Spool:
    def __init__(
        self,
        directory: Path,
        sink: Callable[[WriteBatch], None],
        clock: Clock,
        *,
        max_bytes: int,
        disk: DiskGuard | None = None,
    ) -> None:
        self._dir = directory
        self.disk = disk or DiskGuard(directory, 0)
        self._rejected_dir = directory / "rejected"
        self._rejected_dir.mkdir(parents=True, exist_ok=True)
        self._sink = sink
        self._clock = clock
        self._max_bytes = max_bytes
        self._lock = threading.Lock()
        self._full = False
        self._wake = threading.Event()
        self._stop = threading.Event()
        for tmp in directory.glob("*.tmp"):  # a crash mid-spool: never acknowledged
            tmp.unlink()
        self._files = sorted(directory.glob("*" + SUFFIX))
        self._bytes = sum(f.stat().st_size for f in self._files)
        self._rejected = len(list(self._rejected_dir.glob("*" + SUFFIX)))
        self._seq = max((int(f.name.split("-")[0]) for f in self._files), default=0)
        self._thread = threading.Thread(target=self._drain, name="opsmetrics-spool", daemon=True)
        self._thread.start()
        if self._files:
            log.warning("spool: %d batches wait for the store; draining", len(self._files))
            self._wake.set()

    # --- writing ------------------------------------------------------------------------
    def write(self, batch: WriteBatch) -> None:
        """Write through to the store, or spool durably when it is down (or others wait)."""
        with self._lock:
            if not self._files:
                try:
                    self._sink(batch)
                    return
                except StorageUnavailableError as exc:
                    log.warning("spool: the store is unavailable (%s); spooling writes", exc)
            self._append(batch)
        self._wake.set()

    def _append(self, batch: WriteBatch) -> None:
        data = encode(batch)
        if self._bytes + len(data) > self._max_bytes:
            self._full = True
            raise StorageUnavailableError(
                f"the store is unavailable and this node's spool is full ({self._bytes} of "
                f"{self._max_bytes} bytes, OPSMETRICS_MAX_SPOOL_BYTES); retry later"
            )
        self.disk.check()  # below the reserve: 507, as for the embedded store
        path = self._dir / f"{self._seq + 1:020d}-{self._clock.now_ms()}{SUFFIX}"
        try:
            _write_durably(path, data)
        except OSError as exc:
            if is_no_space(exc):
                raise self.disk.no_space(exc) from exc
            raise StorageUnavailableError(f"cannot spool to {self._dir}: {exc}") from exc
        self.disk.written()
        self._seq += 1
        self._files.append(path)
        self._bytes += len(data)

    # --- draining -----------------------------------------------------------------------
    def _drain(self) -> None:
        while not self._stop.is_set():
            self._wake.wait()
            self._wake.clear()
            while not self._stop.is_set() and self._drain_one():
                pass

    def _drain_one(self) -> bool:
        """Write the oldest spooled batch; False when none is left or the store is down."""
        with self._lock:
            if not self._files:
                return False
            path = self._files[0]
        try:
            self._sink(decode(path.read_bytes()))
        except StorageUnavailableError:
            if not self._stop.wait(RETRY_S):
                self._wake.set()
            return False
        except Exception:
            log.exception("spool: the store refused %s; moved to %s", path, self._rejected_dir)
            self._retire(path, rejected=True)
            return True
        self._retire(path, rejected=False)
        return True

    def _retire(self, path: Path, *, rejected: bool) -> None:
        size = path.stat().st_size
        if rejected:
            os.replace(path, self._rejected_dir / path.name)
        else:
            path.unlink()
        _fsync_dir(self._dir)
        with self._lock:
            self._files.remove(path)
            self._bytes -= size
            self._full = False
            self._rejected += int(rejected)
            if not self._files:
                log.info("spool: drained")

    def wait_drained(self, timeout_s: float) -> bool:
        """Wait until nothing is spooled (tests, shutdown); True if so."""
        deadline = time.monotonic() + timeout_s
        while True:
            with self._lock:
                if not self._files:
                    return True
            if time.monotonic() >= deadline:
                return False
            pause(0.02)

    # --- state --------------------------------------------------------------------------
    def stats(self) -> SpoolStats:
        with self._lock:
            oldest = int(self._files[0].stem.split("-")[1]) if self._files else None
            return SpoolStats(
                self._bytes, len(self._files), oldest, self._rejected, self._max_bytes, self._full
            )

    @property
    def active(self) -> bool:
        with self._lock:
            return bool(self._files)

    def close(self) -> None:
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout=10)


def _write_durably(path: Path, data: bytes) -> None:
    """Write to a .tmp file, fsync, rename, fsync the directory; on failure no file is left
    (a full disk must not leave a half batch behind)."""
    tmp = path.with_suffix(".tmp")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
