"""The files of an archive: Parquet written and read by a DuckDB instance of its own, and the
manifest that lists them with their row counts and sha256 checksums.

The store's own DuckDB instance runs with external access off (storage/duckdb/sql_sandbox.py),
so it cannot COPY to a file; columns come out of the store as numpy arrays and an in-memory
DuckDB here, which may touch files, writes them with `COPY … (FORMAT PARQUET)` and reads them
back with `read_parquet`. Paths reach SQL as quoted literals of paths we built under the
archive directory. The manifest is written last, through a temporary file and a rename: a
directory without one is an export that did not finish.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import Any

import duckdb

from opsmetrics.errors import BadDataError, InternalError
from opsmetrics.storage.archive import Columns, DataClass, TimeRange

FORMAT = "opsmetrics-archive"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
_COPY_OPTIONS = "(FORMAT PARQUET, COMPRESSION ZSTD)"


class ArchiveError(BadDataError):
    """An archive directory that cannot be read back as it is (missing, damaged, foreign)."""


class ArchiveWriteError(InternalError):
    """A file of an archive could not be written (reason no_space on a full disk)."""


@dataclass(frozen=True, slots=True)
class ArchiveFile:
    path: str  # relative to the archive directory, with forward slashes
    kind: DataClass
    span: TimeRange
    rows: int
    sha256: str
    bytes: int


@dataclass(frozen=True, slots=True)
class Manifest:
    opsmetrics_version: str
    backend: str
    schema_version: int
    created_ms: int
    ranges: dict[DataClass, TimeRange]
    rollup_spans: tuple[TimeRange, ...]
    files: tuple[ArchiveFile, ...]

    def rows(self, kind: DataClass) -> int:
        return sum(f.rows for f in self.files if f.kind is kind)


def day_name(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).date().isoformat()


def file_path(kind: DataClass, span: TimeRange) -> str:
    return f"{kind.value}/day={day_name(span.start_ms)}/part-0.parquet"


def _literal(path: Path) -> str:
    return "'" + str(path).replace("'", "''") + "'"


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


class ParquetFiles:
    """Writes and reads the Parquet files under one archive directory."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._con = duckdb.connect(":memory:")

    def close(self) -> None:
        self._con.close()

    def write(
        self, kind: DataClass, span: TimeRange, tables: dict[str, Columns], select: str
    ) -> ArchiveFile:
        """COPY the rows of `select` (over the registered `tables`) to the day's file."""
        rel = file_path(kind, span)
        target = self.root / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        for name, columns in tables.items():
            self._con.register(name, columns)
        try:
            self._con.execute(f"COPY ({select}) TO {_literal(target)} {_COPY_OPTIONS}")
            rows = self.count(target)
        except duckdb.Error as exc:
            full = "no space" in str(exc).lower()
            raise ArchiveWriteError(
                f"{target}: cannot be written: {exc}", reason="no_space" if full else "write_failed"
            ) from exc
        finally:
            for name in tables:
                self._con.unregister(name)
        return ArchiveFile(rel, kind, span, rows, sha256_of(target), target.stat().st_size)

    def count(self, path: Path) -> int:
        got = self._con.execute(f"SELECT count(*) FROM read_parquet({_literal(path)})").fetchall()
        return int(got[0][0])

    def read(
        self, f: ArchiveFile, select: str, tables: dict[str, Columns] | None = None
    ) -> Columns:
        """Columns of `select`, in which `{file}` is the file's read_parquet(…)."""
        source = f"read_parquet({_literal(self.root / f.path)})"
        for name, columns in (tables or {}).items():
            self._con.register(name, columns)
        try:
            return dict(self._con.execute(select.format(file=source)).fetchnumpy())
        except duckdb.Error as exc:
            raise ArchiveError(f"{self.root / f.path}: cannot be read as Parquet: {exc}") from exc
        finally:
            for name in tables or {}:
                self._con.unregister(name)


# --- the manifest ---------------------------------------------------------------------------
def write_manifest(root: Path, manifest: Manifest) -> None:
    doc = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "opsmetrics_version": manifest.opsmetrics_version,
        "source": {"backend": manifest.backend, "schema_version": manifest.schema_version},
        "created_ms": manifest.created_ms,
        "ranges": {k.value: _range_doc(r) for k, r in manifest.ranges.items()},
        "rollup_spans": [_range_doc(r) for r in manifest.rollup_spans],
        "files": [_file_doc(f) for f in manifest.files],
    }
    tmp = root / (MANIFEST + ".tmp")
    with tmp.open("w", encoding="utf-8") as out:
        json.dump(doc, out, indent=2)
        out.write("\n")
        out.flush()
        os.fsync(out.fileno())
    os.replace(tmp, root / MANIFEST)


def _range_doc(r: TimeRange) -> dict[str, Any]:
    return {"start_ms": r.start_ms, "end_ms": r.end_ms}


def _file_doc(f: ArchiveFile) -> dict[str, Any]:
    return {
        "path": f.path,
        "kind": f.kind.value,
        **_range_doc(f.span),
        "rows": f.rows,
        "bytes": f.bytes,
        "sha256": f.sha256,
    }


def read_manifest(root: Path) -> Manifest:
    path = root / MANIFEST
    if not path.is_file():
        raise ArchiveError(
            f"{path}: no manifest; name a directory written by `opsmetrics archive export` "
            "(one whose export finished: the manifest is written last)"
        )
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
        return _manifest(doc)
    except ArchiveError as exc:
        raise ArchiveError(f"{path}: {exc.message}") from None
    except (ValueError, KeyError, TypeError) as exc:
        raise ArchiveError(f"{path}: not a valid archive manifest ({exc!r})") from None


def _manifest(doc: dict[str, Any]) -> Manifest:
    if doc.get("format") != FORMAT:
        raise ArchiveError(f'format is {doc.get("format")!r}, not "{FORMAT}"')
    if doc.get("format_version") != FORMAT_VERSION:
        raise ArchiveError(
            f"format_version {doc.get('format_version')!r}: this opsmetrics reads version "
            f"{FORMAT_VERSION}; restore with the opsmetrics version that wrote it"
        )
    return Manifest(
        opsmetrics_version=str(doc["opsmetrics_version"]),
        backend=str(doc["source"]["backend"]),
        schema_version=int(doc["source"]["schema_version"]),
        created_ms=int(doc["created_ms"]),
        ranges={DataClass(k): _range(v) for k, v in doc["ranges"].items()},
        rollup_spans=tuple(_range(r) for r in doc["rollup_spans"]),
        files=tuple(_file(f) for f in doc["files"]),
    )


def _range(doc: dict[str, Any]) -> TimeRange:
    return TimeRange(int(doc["start_ms"]), int(doc["end_ms"]))


def _file(doc: dict[str, Any]) -> ArchiveFile:
    rel = PurePosixPath(str(doc["path"]))
    if rel.is_absolute() or ".." in rel.parts:
        raise ArchiveError(f"file path {str(rel)!r} leaves the archive directory")
    return ArchiveFile(
        str(rel),
        DataClass(doc["kind"]),
        _range(doc),
        int(doc["rows"]),
        str(doc["sha256"]),
        int(doc["bytes"]),
    )


def verify(root: Path, manifest: Manifest) -> None:
    """Every file there with its recorded checksum; else an ArchiveError naming the file."""
    for f in manifest.files:
        path = root / f.path
        if not path.is_file():
            raise ArchiveError(f"{path}: missing (the manifest lists it); nothing was restored")
        if sha256_of(path) != f.sha256:
            raise ArchiveError(
                f"{path}: checksum mismatch (the file changed or is damaged since the export); "
                "nothing was restored. Replace the file from another copy of the archive"
            )
