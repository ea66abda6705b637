"""`restore_archive`: load an archive directory back into a store, idempotently.

Every file's checksum is checked before anything is written, so a damaged or changed file is
refused (by name) with the store untouched. Series are found or created by their labels in
the target store, never by the source's ids. Restoring twice adds nothing the second time:
samples already stored are left out, events are inserted only under new keys, and rollup
buckets replace the same buckets (with the same values, the second time).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from opsmetrics.model import Series
from opsmetrics.storage.archive import (
    Archivable,
    Columns,
    DataClass,
    TimeRange,
    labels_from_json,
    rollup_rows,
    values_from,
)
from opsmetrics.storage.archive_files import (
    ArchiveFile,
    Manifest,
    ParquetFiles,
    read_manifest,
    verify,
)
from opsmetrics.storage.base import ROLLUP_WIDTHS_MS, RollupRows, WriteBatch

_ORDER = (DataClass.SAMPLES, DataClass.EVENTS, DataClass.ROLLUPS)
_SAMPLES_SELECT = (
    "SELECT m.sid, p.ts, p.value, p.nan_bits FROM {file} p JOIN m USING (labels) "
    "ORDER BY m.sid, p.ts"
)
_ROLLUPS_SELECT = (
    "SELECT m.sid, p.* EXCLUDE (metric, labels) FROM {file} p JOIN m USING (labels) "
    "ORDER BY p.width_ms, m.sid, p.bucket"
)


@dataclass(slots=True)
class RestoreResult:
    files: int = 0
    samples_added: int = 0
    samples_present: int = 0
    events_added: int = 0
    events_present: int = 0
    rollups_added: int = 0
    rollups_present: int = 0


def restore_archive(store: Archivable, root: Path, *, now_ms: int) -> RestoreResult:
    """Restore the archive in `root` into `store` (see the module docstring).

    Restored samples are compacted (as maintenance at `now_ms` would) before the rollups
    are written, so the archive's buckets replace the ones compaction rebuilds."""
    manifest = read_manifest(root)
    verify(root, manifest)
    files = ParquetFiles(root)
    result = RestoreResult()
    try:
        for kind in _ORDER:
            if kind is DataClass.ROLLUPS:
                store.samples.compact(now_ms)
            for f in (f for f in manifest.files if f.kind is kind):
                _restore_file(store, files, manifest, f, result)
                result.files += 1
    finally:
        files.close()
    return result


def _restore_file(
    store: Archivable, files: ParquetFiles, manifest: Manifest, f: ArchiveFile, r: RestoreResult
) -> None:
    if f.kind is DataClass.EVENTS:
        added = store.archive.restore_events(files.read(f, "SELECT * FROM {file}"))
        r.events_added += added
        r.events_present += f.rows - added
    elif f.kind is DataClass.SAMPLES:
        added = _restore_samples(store, files, f)
        r.samples_added += added
        r.samples_present += f.rows - added
    else:
        added = _restore_rollups(store, files, f, _spans_in(manifest, f.span))
        r.rollups_added += added
        r.rollups_present += f.rows - added


def _spans_in(manifest: Manifest, day: TimeRange) -> list[TimeRange]:
    return [s for s in manifest.rollup_spans if s.start_ms < day.end_ms and s.end_ms > day.start_ms]


def _series_map(store: Archivable, files: ParquetFiles, f: ArchiveFile) -> Columns:
    """labels → the target store's series id, creating the series it does not have yet."""
    texts = files.read(f, "SELECT DISTINCT labels FROM {file} ORDER BY labels")["labels"]
    labels = [labels_from_json(str(t)) for t in texts]
    ids = store.samples.lookup_series(labels)
    missing = [i for i, sid in enumerate(ids) if sid is None]
    if missing:
        new_ids = store.samples.allocate_series_ids([labels[i] for i in missing])
        new = [Series(sid, labels[i]) for i, sid in zip(missing, new_ids, strict=True)]
        store.samples.write(WriteBatch(new_series=new))
        for i, sid in zip(missing, new_ids, strict=True):
            ids[i] = sid
    return {"labels": np.asarray(texts, dtype=object), "sid": np.asarray(ids, dtype=np.int64)}


def _restore_samples(store: Archivable, files: ParquetFiles, f: ArchiveFile) -> int:
    got = files.read(f, _SAMPLES_SELECT, {"m": _series_map(store, files, f)})
    sids = np.asarray(got["sid"], dtype=np.int64)
    ts = np.asarray(got["ts"], dtype=np.int64)
    values = values_from(got["value"], got["nan_bits"])
    # Checked on every backend (an idempotent one would take them again) to count honestly.
    found, _ = store.samples.existing_samples(sids, ts)
    sids, ts, values = sids[~found], ts[~found], values[~found]
    if len(ts):
        store.samples.write(WriteBatch(series_ids=sids, ts=ts, values=values))
    return len(ts)


def _restore_rollups(
    store: Archivable, files: ParquetFiles, f: ArchiveFile, spans: list[TimeRange]
) -> int:
    got = files.read(f, _ROLLUPS_SELECT, {"m": _series_map(store, files, f)})
    width = np.asarray(got["width_ms"], dtype=np.int64)
    added = 0
    for w in ROLLUP_WIDTHS_MS:
        rows = _rollup_rows(got, width == w)
        if len(rows):
            added += store.archive.restore_rollups(w, rows, spans)
    return added


def _rollup_rows(got: Columns, keep: np.ndarray) -> RollupRows:
    kept = {name: np.asarray(column)[keep] for name, column in got.items()}
    sids, bucket = kept["sid"].astype(np.int64), kept["bucket"].astype(np.int64)
    return rollup_rows(sids, bucket, kept)
