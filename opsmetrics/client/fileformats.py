"""Reading import files as batches that can resume at a recorded position.

Each reader yields `Chunk`s: a request body plus the `Position` just after it. Bodies are made
replay-safe: events without an id get one derived from the file's identity and line number, and
samples without a timestamp get the import's fixed timestamp, so re-sending a batch after an
interruption stores nothing twice.
"""

from __future__ import annotations

import csv
import enum
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import msgspec

from opsmetrics.errors import BadDataError

JSON = "application/json"
PROMETHEUS_TEXT = "text/plain; version=0.0.4; charset=utf-8"
OPENMETRICS = "application/openmetrics-text; version=1.0.0; charset=utf-8"


class ImportFormat(enum.Enum):
    AUTO = "auto"
    EVENTS_NDJSON = "events-ndjson"
    EVENTS_CSV = "events-csv"
    SAMPLES_JSON = "samples-json"
    SAMPLES_NDJSON = "samples-ndjson"
    PROMETHEUS = "prometheus"

    @property
    def path(self) -> str:
        if self in (ImportFormat.EVENTS_NDJSON, ImportFormat.EVENTS_CSV):
            return "/api/v1/events"
        if self is ImportFormat.PROMETHEUS:
            return "/api/v1/import/prometheus"
        return "/api/v1/samples"


@dataclass(frozen=True, slots=True)
class Position:
    """Where to resume: a byte offset and the line number before it (for JSON arrays: both
    count items)."""

    offset: int = 0
    line: int = 0


@dataclass(frozen=True, slots=True)
class Chunk:
    body: bytes
    content_type: str
    records: int
    first_line: int
    end: Position
    done_bytes: int


@dataclass(frozen=True, slots=True)
class ReadContext:
    path: Path
    identity: str
    import_ts_ms: int
    batch_size: int

    def event_id(self, line: int) -> str:
        return f"import-{self.identity}-{line}"


def detect_format(path: Path) -> ImportFormat:
    suffix = path.suffix.lower()
    if suffix == ".csv":
        return ImportFormat.EVENTS_CSV
    if suffix in (".prom", ".txt", ".om", ".metrics"):
        return ImportFormat.PROMETHEUS
    with path.open("rb") as f:
        head = f.read(65536).lstrip()
    if head[:1] == b"[":
        return ImportFormat.SAMPLES_JSON
    first = head.split(b"\n", 1)[0]
    try:
        obj = msgspec.json.decode(first)
    except msgspec.DecodeError:
        if suffix in (".json", ".ndjson", ".jsonl"):
            raise BadDataError(
                f"{path}:1: cannot tell the format: the first line is not a JSON object or "
                "array; give --format"
            ) from None
        return ImportFormat.PROMETHEUS
    if isinstance(obj, dict) and not obj.keys() & {"labels", "samples", "type", "help"}:
        return ImportFormat.EVENTS_NDJSON
    return ImportFormat.SAMPLES_NDJSON


def read_chunks(fmt: ImportFormat, ctx: ReadContext, start: Position) -> Iterator[Chunk]:
    if fmt is ImportFormat.EVENTS_CSV:
        return csv_event_chunks(ctx, start)
    if fmt is ImportFormat.PROMETHEUS:
        return prometheus_chunks(ctx, start)
    transform = _with_event_id if fmt is ImportFormat.EVENTS_NDJSON else _with_sample_ts
    return json_chunks(ctx, start, transform)


# --- JSON and NDJSON --------------------------------------------------------------------
def _with_event_id(ctx: ReadContext, obj: dict[str, object], line: int) -> dict[str, object]:
    if obj.get("id") is None:
        obj["id"] = ctx.event_id(line)
    return obj


def _with_sample_ts(ctx: ReadContext, obj: dict[str, object], line: int) -> dict[str, object]:
    if "value" in obj and obj.get("ts") is None:
        obj["ts"] = ctx.import_ts_ms
    return obj


def _object(data: bytes, ctx: ReadContext, line: int) -> dict[str, object]:
    try:
        obj = msgspec.json.decode(data)
    except msgspec.DecodeError as exc:
        raise BadDataError(f"{ctx.path}:{line}: malformed JSON: {exc}") from None
    if not isinstance(obj, dict):
        raise BadDataError(f"{ctx.path}:{line}: expected a JSON object")
    return obj


def json_chunks(
    ctx: ReadContext,
    start: Position,
    transform: Callable[[ReadContext, dict[str, object], int], dict[str, object]],
) -> Iterator[Chunk]:
    with ctx.path.open("rb") as f:
        is_array = f.read(65536).lstrip()[:1] == b"["
    if is_array:
        yield from _array_chunks(ctx, start, transform)
    else:
        yield from _ndjson_chunks(ctx, start, transform)


def _ndjson_chunks(
    ctx: ReadContext,
    start: Position,
    transform: Callable[[ReadContext, dict[str, object], int], dict[str, object]],
) -> Iterator[Chunk]:
    items: list[dict[str, object]] = []
    first, end = start.line + 1, start
    for raw, end in _lines(ctx.path, start):
        if raw.strip():
            items.append(transform(ctx, _object(raw, ctx, end.line), end.line))
        if len(items) >= ctx.batch_size:
            yield _json_chunk(items, first, end, end.offset)
            items, first = [], end.line + 1
    if items:
        yield _json_chunk(items, first, end, end.offset)


def _array_chunks(
    ctx: ReadContext,
    start: Position,
    transform: Callable[[ReadContext, dict[str, object], int], dict[str, object]],
) -> Iterator[Chunk]:
    """A JSON array is read whole; positions count items."""
    data = ctx.path.read_bytes()
    try:
        items = msgspec.json.decode(data, type=list[dict[str, object]])
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise BadDataError(f"{ctx.path}: expected a JSON array of objects: {exc}") from None
    size, total = len(data), max(len(items), 1)
    for i in range(start.offset, len(items), ctx.batch_size):
        batch = [
            transform(ctx, obj, n + 1) for n, obj in enumerate(items[i : i + ctx.batch_size], i)
        ]
        done = i + len(batch)
        yield _json_chunk(batch, i + 1, Position(done, done), size * done // total)


def _json_chunk(items: list[dict[str, object]], first: int, end: Position, done: int) -> Chunk:
    return Chunk(msgspec.json.encode(items), JSON, len(items), first, end, done)


def _lines(path: Path, start: Position) -> Iterator[tuple[bytes, Position]]:
    """Lines from `start` on, each with the position just after it."""
    with path.open("rb") as f:
        f.seek(start.offset)
        offset, line = start.offset, start.line
        for raw in f:
            offset += len(raw)
            line += 1
            yield raw, Position(offset, line)


# --- CSV events -------------------------------------------------------------------------
class _TrackedLines:
    """Feeds csv.reader decoded lines while remembering the position after the last one."""

    def __init__(self, f: BinaryIO, start: Position, path: Path) -> None:
        self._f = f
        self._path = path
        self.pos = start

    def __iter__(self) -> Iterator[str]:
        for raw in self._f:
            self.pos = Position(self.pos.offset + len(raw), self.pos.line + 1)
            try:
                yield raw.decode("utf-8-sig" if self.pos.offset == len(raw) else "utf-8")
            except UnicodeDecodeError as exc:
                raise BadDataError(
                    f"{self._path}:{self.pos.line}: not valid UTF-8 (byte {exc.start} of the "
                    "line); save the file as UTF-8"
                ) from None


def csv_event_chunks(ctx: ReadContext, start: Position) -> Iterator[Chunk]:
    with ctx.path.open("rb") as f:
        header_lines = _TrackedLines(f, Position(), ctx.path)
        header = next(_csv_rows(ctx.path, header_lines), None)
        if header is None or "name" not in header:
            raise BadDataError(
                f"{ctx.path}:1: the header row must name the columns; `name` is "
                "required, `ts`, `entity`, `value`, `id` are optional"
            )
        f.seek(max(start.offset, header_lines.pos.offset))
        lines = _TrackedLines(f, max(start, header_lines.pos, key=lambda p: p.offset), ctx.path)
        yield from _csv_batches(ctx, header, lines)


def _csv_rows(path: Path, lines: _TrackedLines) -> Iterator[list[str]]:
    try:
        yield from csv.reader(lines)
    except csv.Error as exc:
        problem = str(exc).split(" - ")[0]  # csv's own hint names a Python open() flag
        raise BadDataError(
            f"{path}:{lines.pos.line}: not valid CSV: {problem}; lines end in \\n or \\r\\n "
            "and a field with a line break is quoted"
        ) from None


def _csv_batches(ctx: ReadContext, header: list[str], lines: _TrackedLines) -> Iterator[Chunk]:
    items: list[dict[str, object]] = []
    first = lines.pos.line + 1
    for row in _csv_rows(ctx.path, lines):
        if any(cell.strip() for cell in row):
            items.append(_csv_event(ctx, header, row, lines.pos.line))
        if len(items) >= ctx.batch_size:
            yield _json_chunk(items, first, lines.pos, lines.pos.offset)
            items, first = [], lines.pos.line + 1
    if items:
        yield _json_chunk(items, first, lines.pos, lines.pos.offset)


def _csv_event(ctx: ReadContext, header: list[str], row: list[str], line: int) -> dict[str, object]:
    if len(row) != len(header):
        raise BadDataError(f"{ctx.path}:{line}: {len(row)} columns, the header has {len(header)}")
    cells = dict(zip(header, row, strict=True))
    event: dict[str, object] = {"name": cells.pop("name"), "entity": cells.pop("entity", "")}
    event["id"] = cells.pop("id", "") or ctx.event_id(line)
    ts = cells.pop("ts", "").strip()
    if ts:
        event["ts"] = int(ts) if ts.isdigit() else ts
    value = cells.pop("value", "").strip()
    if value:
        try:
            event["value"] = float(value)
        except ValueError:
            raise BadDataError(f"{ctx.path}:{line}: value: {value!r} is not a number") from None
    event["props"] = {k: v for k, v in cells.items() if v != ""}
    return event


# --- Prometheus text / OpenMetrics ------------------------------------------------------
def _is_openmetrics(path: Path) -> bool:
    with path.open("rb") as f:
        f.seek(max(path.stat().st_size - 64, 0))
        tail = f.read().rstrip().rsplit(b"\n", 1)[-1]
    return tail.strip() == b"# EOF"


def prometheus_chunks(ctx: ReadContext, start: Position) -> Iterator[Chunk]:
    """Batches split only where a new metric family's comments begin (or when one family is
    far too long), so TYPE and HELP stay with their samples."""
    om = _is_openmetrics(ctx.path)
    stamp = f"{ctx.import_ts_ms / 1000:.3f}" if om else str(ctx.import_ts_ms)
    lines: list[bytes] = []
    samples, first, prev_comment = 0, start.line + 1, True
    end = start
    for raw, pos in _lines(ctx.path, start):
        text = raw.strip()
        is_comment = text.startswith(b"#")
        if _split_here(samples, ctx.batch_size, is_comment, prev_comment):
            yield _prom_chunk(lines, samples, first, end, om)
            lines, samples, first = [], 0, end.line + 1
        end = pos
        prev_comment = is_comment
        if text and text != b"# EOF":
            lines.append(text if is_comment else add_timestamp(text, stamp))
            samples += 0 if is_comment else 1
    if lines:
        yield _prom_chunk(lines, samples, first, end, om)


def _split_here(samples: int, batch: int, is_comment: bool, prev_comment: bool) -> bool:
    family_start = is_comment and not prev_comment
    return (samples >= batch and family_start) or samples >= 10 * batch and not is_comment


def _prom_chunk(lines: list[bytes], samples: int, first: int, end: Position, om: bool) -> Chunk:
    body = b"\n".join(lines) + b"\n" + (b"# EOF\n" if om else b"")
    return Chunk(body, OPENMETRICS if om else PROMETHEUS_TEXT, samples, first, end, end.offset)


def add_timestamp(line: bytes, stamp: str) -> bytes:
    """`line` with `stamp` as its timestamp if it has none (labels may hold spaces)."""
    end = _series_end(line)
    head, rest = line[:end], line[end:]
    value_part, sep, exemplar = rest.partition(b" # ")
    fields = value_part.split()
    if len(fields) != 1:
        return line
    return head + b" " + fields[0] + b" " + stamp.encode() + sep + exemplar


def _series_end(line: bytes) -> int:
    """Index just after the metric name and its `{labels}`."""
    brace = line.find(b"{")
    space = line.find(b" ")
    if brace == -1 or (space != -1 and space < brace):
        return space if space != -1 else len(line)
    i, quoted = brace + 1, False
    while i < len(line):
        c = line[i : i + 1]
        if c == b"\\" and quoted:
            i += 2
            continue
        if c == b'"':
            quoted = not quoted
        elif c == b"}" and not quoted:
            return i + 1
        i += 1
    return len(line)
