"""Loading a section's data into DuckDB storage."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import numpy as np

from opsmetrics.model import METRIC_NAME, Labels, Series
from opsmetrics.storage.base import WriteBatch
from opsmetrics.storage.duckdb import DuckDBStorage
from opsmetrics.storage.duckdb.backend import DB_FILE

from .script import LoadCmd, SeriesDef
from .series import NativeHistogram, SeqValue


def _float_points(values: list[SeqValue], interval_ms: int) -> tuple[list[int], list[float]]:
    ts, out = [], []
    for i, value in enumerate(values):
        if isinstance(value, float):
            ts.append(i * interval_ms)
            out.append(value)
    return ts, out


def _nhcb_series(series: list[SeriesDef]) -> Iterator[Labels]:
    """The native-histogram series `load_with_nhcb` derives from classic histogram series."""
    for labels, _ in series:
        name = dict(labels).get(METRIC_NAME, "")
        for suffix in ("_bucket", "_count", "_sum"):
            if name.endswith(suffix):
                base = dict(labels, __name__=name.removesuffix(suffix))
                base.pop("le", None)
                yield tuple(sorted(base.items()))


class Section:
    """The data of one script section. Its storage opens on the first eval that needs it
    (opening is the slow part), so sections whose cases are all skipped never open one."""

    def __init__(self, storages: StorageFactory) -> None:
        self._storages = storages
        self._storage: DuckDBStorage | None = None
        self._pending: list[LoadCmd] = []
        self.ids: dict[Labels, int] = {}
        #: Series with native-histogram samples, which the storage cannot hold.
        self.histogram_series: set[Labels] = set()

    def load(self, cmd: LoadCmd) -> None:
        for labels, seq in cmd.series:
            if any(isinstance(v, NativeHistogram) for v in seq):
                self.histogram_series.add(labels)
        if cmd.with_nhcb:
            self.histogram_series.update(_nhcb_series(cmd.series))
        self._pending.append(cmd)
        if self._storage is not None:
            self._flush(self._storage)

    @property
    def storage(self) -> DuckDBStorage:
        if self._storage is None and not self._pending:
            return self._storages.empty
        if self._storage is None:
            self._storage = self._storages.new()
            self._flush(self._storage)
        return self._storage

    def close(self) -> None:
        if self._storage is not None:
            self._storages.retire(self._storage)

    def _flush(self, storage: DuckDBStorage) -> None:
        for cmd in self._pending:
            storage.write(self._batch(storage, cmd))
        self._pending.clear()

    def _batch(self, storage: DuckDBStorage, cmd: LoadCmd) -> WriteBatch:
        new, ids, ts, values = [], [], [], []
        for labels, seq in cmd.series:
            points_ts, points = _float_points(seq, cmd.interval_ms)
            if not points_ts:
                continue
            sid = self.ids.get(labels)
            if sid is None:
                sid = self.ids[labels] = storage.allocate_series_ids([labels])[0]
                new.append(Series(sid, labels))
            ids += [sid] * len(points_ts)
            ts += points_ts
            values += points
        return WriteBatch(
            new_series=new,
            series_ids=np.array(ids, dtype=np.int64),
            ts=np.array(ts, dtype=np.int64),
            values=np.array(values, dtype=np.float64),
        )


class StorageFactory:
    """Fresh empty storages, copied from one migrated template file. Opening one (~75 ms) and
    closing it are the slow parts, so a worker thread opens the next storage while cases run
    and closes the ones sections are done with."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._count = 0
        DuckDBStorage(root / "template", now_ms=0).close()
        self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="promql-storage")
        self._next: Future[DuckDBStorage] | None = None
        self._closing: list[Future[None]] = []
        #: Shared by sections that load no data; nothing ever writes to it.
        self.empty = self._open()

    def new(self) -> DuckDBStorage:
        storage = self._next.result() if self._next is not None else self._open()
        self._next = self._worker.submit(self._open)
        return storage

    def retire(self, storage: DuckDBStorage) -> None:
        """Close a storage no section uses any more, in the background."""
        self._closing.append(self._worker.submit(storage.close))

    def close(self) -> None:
        """Close every storage; raises what a background open or close raised."""
        if self._next is not None and not self._next.cancel():
            self.retire(self._next.result())
        self._worker.shutdown(wait=True)
        self.empty.close()
        for done in self._closing:
            done.result()

    def _open(self) -> DuckDBStorage:
        self._count += 1
        target = self.root / f"section{self._count}"
        target.mkdir()
        shutil.copyfile(self.root / "template" / DB_FILE, target / DB_FILE)
        return DuckDBStorage(target, now_ms=0)
