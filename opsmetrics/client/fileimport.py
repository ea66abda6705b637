"""Import a file through the API in batches, resumable after an interruption.

Next to FILE, `FILE.opsmetrics-import` records the position after the last batch the server
acknowledged. A new run continues from there; the batch in flight when the previous run stopped
is sent again, which is harmless because the readers make every batch replay-safe.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import msgspec

from opsmetrics.client.fileformats import (
    ImportFormat,
    Position,
    ReadContext,
    detect_format,
    read_chunks,
)
from opsmetrics.client.transport import RejectedError, Transport

STATE_SUFFIX = ".opsmetrics-import"
IDENTITY_BYTES = 1 << 16


class ImportState(msgspec.Struct):
    identity: str
    format: str
    import_ts_ms: int
    offset: int = 0
    line: int = 0


@dataclass(frozen=True, slots=True)
class ImportResult:
    records: int
    batches: int
    resumed_from: int  # byte offset (items for JSON arrays) the run started at
    complete: bool


def state_path(path: Path) -> Path:
    return path.with_name(path.name + STATE_SUFFIX)


def file_identity(path: Path) -> str:
    """A hash of the file's head: stable when the file is moved or appended to."""
    with path.open("rb") as f:
        return hashlib.sha256(f.read(IDENTITY_BYTES)).hexdigest()[:16]


def load_state(path: Path, identity: str, fmt: ImportFormat, now_ms: int) -> ImportState:
    """The saved state if it belongs to this file and format, else a fresh one."""
    sp = state_path(path)
    if sp.exists():
        try:
            state = msgspec.json.decode(sp.read_bytes(), type=ImportState)
        except (msgspec.DecodeError, msgspec.ValidationError):
            state = None
        if state is not None and state.identity == identity and state.format == fmt.value:
            return state
    return ImportState(identity, fmt.value, now_ms)


def save_state(path: Path, state: ImportState) -> None:
    sp = state_path(path)
    tmp = sp.with_name(sp.name + ".tmp")
    tmp.write_bytes(msgspec.json.encode(state))
    os.replace(tmp, sp)


ProgressCallback = Callable[[int], None]


class FileImport:
    """One import of one file into the server behind `transport`."""

    def __init__(
        self,
        path: Path,
        transport: Transport,
        *,
        fmt: ImportFormat = ImportFormat.AUTO,
        batch_size: int = 1000,
        now_ms: int,
    ) -> None:
        self.path = path
        self.format = detect_format(path) if fmt is ImportFormat.AUTO else fmt
        self.state = load_state(path, file_identity(path), self.format, now_ms)
        self._transport = transport
        self._batch_size = batch_size

    @property
    def size(self) -> int:
        return self.path.stat().st_size

    @property
    def start(self) -> Position:
        return Position(self.state.offset, self.state.line)

    def run(
        self, on_progress: ProgressCallback | None = None, max_batches: int | None = None
    ) -> ImportResult:
        """Send the rest of the file; `on_progress` gets the bytes done after each batch.
        Stops early (resumably) after `max_batches` batches."""
        ctx = ReadContext(self.path, self.state.identity, self.state.import_ts_ms, self._batch_size)
        resumed_from, records, batches = self.state.offset, 0, 0
        for chunk in read_chunks(self.format, ctx, self.start):
            if max_batches is not None and batches >= max_batches:
                return ImportResult(records, batches, resumed_from, complete=False)
            try:
                self._transport.post(self.format.path, chunk.body, chunk.content_type)
            except RejectedError as exc:
                where = f"{self.path}:{chunk.first_line}-{chunk.end.line}"
                raise RejectedError(exc.status, f"{where}: {exc.message}") from None
            self.state.offset, self.state.line = chunk.end.offset, chunk.end.line
            save_state(self.path, self.state)
            records, batches = records + chunk.records, batches + 1
            if on_progress is not None:
                on_progress(chunk.done_bytes)
        state_path(self.path).unlink(missing_ok=True)
        return ImportResult(records, batches, resumed_from, complete=True)
