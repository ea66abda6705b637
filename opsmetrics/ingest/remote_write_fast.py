"""The vectorised remote_write decoder, for TimeSeries laid out as labels then samples.

That is how every sender we know of writes them. The C protobuf parser splits the request into
series; numpy then walks all series at once, one label (later one sample) per step, and reads
every sample's value and timestamp in bulk. Series already in the LabelsCache cost a dictionary
lookup; new ones are built from cached label pairs. Anything unexpected returns None and the caller
decodes the request the plain way, which also reports any corruption.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from google.protobuf.message import DecodeError

from opsmetrics.errors import LimitExceededError
from opsmetrics.ingest.proto import remote_pb2 as pb
from opsmetrics.ingest.protowire import Wire, offsets, payloads, ranges, varint_sizes, varints
from opsmetrics.ingest.remote_write_labels import LabelsCache
from opsmetrics.model import Float64Array, Int64Array, Labels, SampleBatch
from opsmetrics.settings import Limits

#: A series with more labels than this is left to the plain path (the pipeline rejects it).
MAX_LABELS = 128
#: Beyond this many samples in a series, samples are split by the C parser instead.
MAX_SAMPLE_STEPS = 32
_LABEL_TAG = 0x0A  # TimeSeries.labels: field 1, length-delimited
_SAMPLE_TAG = 0x12  # TimeSeries.samples: field 2, length-delimited
_VALUE_TAG = 0x09  # Sample.value: field 1, 64-bit
_TIMESTAMP_TAG = 0x10  # Sample.timestamp: field 2, varint

_Step = tuple[Int64Array, Int64Array, Int64Array]  # series, payload starts, payload ends


@dataclass(frozen=True, slots=True)
class _Fields:
    """Fields of many series, in series-major order."""

    counts: Int64Array  # per series: how many fields
    series: Int64Array  # per field: its series
    starts: Int64Array  # per field: where its payload starts
    sizes: Int64Array  # per field: payload size


@dataclass(frozen=True, slots=True)
class _Run:
    """The leading fields with one tag of each series, as found one step at a time."""

    stops: Int64Array  # per series: where its run ended
    steps: list[_Step]

    def fields(self) -> _Fields:
        """The fields series by series: a series' field of step j is j after its first."""
        if not self.steps:
            empty = np.empty(0, np.int64)
            return _Fields(np.zeros(self.stops.size, np.int64), empty, empty, empty)
        lives, starts, stops = (np.concatenate(column) for column in zip(*self.steps, strict=True))
        counts = np.bincount(lives, minlength=self.stops.size)
        first = offsets(counts)
        where = np.concatenate([first[step[0]] + j for j, step in enumerate(self.steps)])
        ordered_starts, sizes = np.empty_like(starts), np.empty_like(stops)
        ordered_starts[where], sizes[where] = starts, stops - starts
        return _Fields(counts, np.repeat(np.arange(counts.size), counts), ordered_starts, sizes)


@dataclass(frozen=True, slots=True)
class _Samples:
    counts: Int64Array
    ts: Int64Array
    values: Float64Array


def check_sample_count(total: int, limits: Limits) -> None:
    if total > limits.max_samples_per_request:
        raise LimitExceededError(
            f"{total} samples in one remote_write request, more than the limit of "
            f"{limits.max_samples_per_request}; lower max_samples_per_send in the sender",
            reason="too_many_samples",
        )


def decode_fast(series: list[bytes], limits: Limits, cache: LabelsCache) -> SampleBatch | None:
    """The batch, or None when the request is not in the expected layout (or is corrupt)."""
    if not series:
        return SampleBatch.empty()
    sizes = np.fromiter(map(len, series), np.int64, len(series))
    ends = np.cumsum(sizes)
    starts = ends - sizes
    wire = Wire.of(series)
    labels = _walk(wire, starts, ends, _LABEL_TAG, MAX_LABELS)
    if labels is None:
        return None
    samples = _read_samples(wire, labels.stops, ends, limits)
    if samples is None:
        return None
    keys = _slices(wire.data, starts, labels.stops)
    resolved = cache.resolve(keys, lambda missing: _decode_labels(wire, labels, missing, cache))
    return _assemble(resolved, samples)


def _walk(wire: Wire, at: Int64Array, end: Int64Array, tag: int, limit: int) -> _Run | None:
    """Advance every span past its leading fields with `tag`, one field per step.

    None if a span has more than `limit` such fields or a length runs past its span's end.
    """
    stops = at.copy()
    live = np.arange(at.size)
    steps: list[_Step] = []
    for _ in range(limit + 1):
        keep = (wire.u8[at] == tag) & (at < end)
        if not keep.all():
            live, at, end = live[keep], at[keep], end[keep]
        if live.size == 0:
            return _Run(stops, steps)
        span = payloads(wire, at + 1)
        if span is None or (span[1] > end).any():
            return None
        steps.append((live, *span))
        at = stops[live] = span[1]
    return None


def _read_samples(
    wire: Wire, label_ends: Int64Array, ends: Int64Array, limits: Limits
) -> _Samples | None:
    """The samples that fill the rest of each series, or None if anything else is there."""
    run = _walk(wire, label_ends, ends, _SAMPLE_TAG, MAX_SAMPLE_STEPS)
    if run is None:
        return _read_many_samples(wire, label_ends, ends, limits)
    if not np.array_equal(run.stops, ends):
        return None
    fields = run.fields()
    check_sample_count(fields.sizes.size, limits)
    parsed = _parse_samples(wire, fields.starts, fields.sizes)
    return None if parsed is None else _Samples(fields.counts, *parsed)


def _read_many_samples(
    wire: Wire, label_ends: Int64Array, ends: Int64Array, limits: Limits
) -> _Samples | None:
    """For long series: the sample sections laid end to end form one SamplesView message."""
    sections = ends - label_ends
    chunk = wire.u8[ranges(label_ends, sections)].tobytes()
    try:
        view = pb.SamplesView.FromString(chunk)
    except DecodeError:
        return None
    check_sample_count(len(view.samples), limits)
    payloads = list(view.samples)
    sizes = np.fromiter(map(len, payloads), np.int64, len(payloads))
    counts = _samples_per_series(sections, 1 + varint_sizes(sizes) + sizes)
    if counts is None:
        return None
    parsed = _parse_samples(Wire.of(payloads), offsets(sizes), sizes)
    return None if parsed is None else _Samples(counts, *parsed)


def _samples_per_series(sections: Int64Array, entry_sizes: Int64Array) -> Int64Array | None:
    """None unless sample entries exactly fill every section (nothing else is in there)."""
    bounds = np.cumsum(sections)
    entry_ends = np.concatenate(([0], np.cumsum(entry_sizes)))
    if entry_ends[-1] != bounds[-1]:
        return None
    cut = np.searchsorted(entry_ends, bounds)
    if not np.array_equal(entry_ends[cut], bounds):
        return None
    return np.diff(cut, prepend=0).astype(np.int64)


def _parse_samples(
    wire: Wire, starts: Int64Array, sizes: Int64Array
) -> tuple[Int64Array, Float64Array] | None:
    """Each Sample is [0x09 value:8 bytes] [0x10 timestamp:varint]; zero fields are omitted."""
    has_value = (sizes >= 9) & (wire.u8[starts] == _VALUE_TAG)
    ts_at = np.where(has_value, starts + 9, starts)
    ts_room = sizes - (ts_at - starts)
    has_ts = ts_room > 0
    ts_bits, ts_size = varints(wire, ts_at[has_ts] + 1)
    tagged = wire.u8[ts_at[has_ts]] == _TIMESTAMP_TAG
    if not (tagged & (ts_size > 0) & (ts_size == ts_room[has_ts] - 1)).all():
        return None
    ts = np.zeros(sizes.size, np.int64)
    ts[has_ts] = ts_bits.view(np.int64)
    # Bits are copied, never floats, so NaN payloads (the stale marker) survive unchanged.
    value_bits = np.zeros(sizes.size, np.uint64)
    value_bits[has_value] = wire.words(starts[has_value] + 1)
    return ts, value_bits.view(np.float64)


def _decode_labels(
    wire: Wire, labels: _Run, missing: list[int], cache: LabelsCache
) -> list[Labels]:
    """Labels of the series at these indices (ascending), from their cached Label pairs."""
    fields = labels.fields()
    wanted = np.zeros(labels.stops.size, np.bool_)
    wanted[missing] = True
    rows = np.flatnonzero(wanted[fields.series])
    starts = fields.starts[rows]
    pairs = cache.pairs(_slices(wire.data, starts, starts + fields.sizes[rows]))
    stops = np.cumsum(fields.counts[missing]).tolist()
    groups = map(pairs.__getitem__, map(slice, [0, *stops[:-1]], stops))
    return list(map(cache.labels, groups))


def _assemble(labels: list[Labels], samples: _Samples) -> SampleBatch:
    counts = samples.counts
    if counts.all() and len(set(map(id, labels))) == len(labels):
        index = np.repeat(np.arange(len(labels), dtype=np.int32), counts)
        return SampleBatch(labels, index, samples.ts, samples.values)
    # Rare: a series sent twice, or without samples. Equal labels are the same object.
    first: dict[int, int] = {}
    series: list[Labels] = []
    slots = []
    for labels_, count in zip(labels, counts.tolist(), strict=True):
        slot = first.get(id(labels_), len(series))
        if count and slot == len(series):
            first[id(labels_)] = slot
            series.append(labels_)
        slots.append(slot)
    index = np.repeat(np.array(slots, np.int32), counts)
    return SampleBatch(series, index, samples.ts, samples.values)


def _slices(buf: bytes, starts: Int64Array, stops: Int64Array) -> list[bytes]:
    return list(map(buf.__getitem__, map(slice, starts.tolist(), stops.tolist())))
