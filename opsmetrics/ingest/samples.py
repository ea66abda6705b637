"""Preparing decoded samples for a write: series ids, limits, duplicates, late data, deltas.

Everything here is vectorised over the request's samples; the only Python loops run per new
series, per distinct series of a request, or over the rare out-of-order samples.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import numpy as np

from opsmetrics.errors import ConflictingSampleError, LimitExceededError, OutOfBoundsError
from opsmetrics.ingest.decoded import DecodedSamples
from opsmetrics.ingest.validate import check_not_future, describe, validate_series
from opsmetrics.model import (
    Float64Array,
    Int64Array,
    Labels,
    SampleBatch,
    Series,
    metric_name,
)
from opsmetrics.settings import Limits
from opsmetrics.storage.base import Storage, WriteBatch

NO_TS = np.iinfo(np.int64).min


@dataclass(slots=True)
class GroupState:
    """What earlier requests of the same group commit will add, not yet visible in storage."""

    new_series: dict[Labels, Series] = field(default_factory=dict)
    new_per_metric: Counter[str] = field(default_factory=Counter)
    #: Newest pending timestamp per series: sorted unique ids and their heads (vectorised).
    head_sids: Int64Array = field(default_factory=lambda: np.empty(0, np.int64))
    head_ts: Int64Array = field(default_factory=lambda: np.empty(0, np.int64))
    delta_base: dict[int, float] = field(default_factory=dict)
    pending: list[tuple[Int64Array, Int64Array, Float64Array]] = field(default_factory=list)
    #: Labels of series created in this group, for error messages only.
    names: dict[int, Labels] = field(default_factory=dict)

    def adopt(self, new: list[Series], sids: Int64Array, ts: Int64Array, v: Float64Array) -> None:
        for s in new:
            self.new_series[s.labels] = s
            self.new_per_metric[metric_name(s.labels)] += 1
        if len(ts):
            self.pending.append((sids, ts, v))
            self._merge_heads(sids, ts)

    def _merge_heads(self, sids: Int64Array, ts: Int64Array) -> None:
        """`sids`, `ts` come sorted by (series, ts), as prepare_samples leaves them."""
        last = np.r_[sids[1:] != sids[:-1], True]
        sids, ts = sids[last], ts[last]
        if self.head_sids.size:
            sids = np.concatenate((self.head_sids, sids))
            ts = np.concatenate((self.head_ts, ts))
            order = np.lexsort((ts, sids))
            sids, ts = sids[order], ts[order]
            last = np.r_[sids[1:] != sids[:-1], True]
            sids, ts = sids[last], ts[last]
        self.head_sids, self.head_ts = sids, ts

    def pending_heads(self, sids: Int64Array) -> Int64Array:
        """Newest pending timestamp of each given series (NO_TS where none is pending)."""
        out = np.full(len(sids), NO_TS, np.int64)
        if not self.head_sids.size:
            return out
        pos = np.minimum(np.searchsorted(self.head_sids, sids), self.head_sids.size - 1)
        hit = self.head_sids[pos] == sids
        out[hit] = self.head_ts[pos[hit]]
        return out

    def pending_values(self, sids: Int64Array, ts: Int64Array) -> dict[tuple[int, int], float]:
        wanted = set(sids.tolist())
        out: dict[tuple[int, int], float] = {}
        for p_sids, p_ts, p_v in self.pending:
            mask = np.isin(p_sids, list(wanted))
            for key in zip(p_sids[mask].tolist(), p_ts[mask].tolist(), p_v[mask], strict=True):
                out[(key[0], key[1])] = float(key[2])
        return out


def prepare_samples(
    decoded: DecodedSamples, storage: Storage, state: GroupState, now_ms: int, limits: Limits
) -> tuple[WriteBatch, int]:
    """Check one request's samples; returns the rows to write and how many were duplicates."""
    total = len(decoded.batch) + len(decoded.deltas)
    if total > limits.max_samples_per_request:
        raise LimitExceededError(
            f"{total} samples in one request, more than the limit of "
            f"{limits.max_samples_per_request}; send smaller batches",
            reason="too_many_samples",
        )
    new_series: list[Series] = []
    sids, ts, values = _resolve(decoded.batch, storage, state, limits, new_series)
    if len(decoded.deltas):
        d_sids, d_ts, d_values = _resolve(decoded.deltas, storage, state, limits, new_series)
        d_values = _accumulate_deltas(d_sids, d_ts, d_values, storage, state)
        sids = np.concatenate((sids, d_sids))
        ts = np.concatenate((ts, d_ts))
        values = np.concatenate((values, d_values))
    check_not_future(ts, now_ms, limits, "sample")
    state.names.update((s.id, s.labels) for s in new_series)
    sids, ts, values, dupes = _dedupe_within(sids, ts, values, storage, state)
    keep, stored_dupes = _check_against_stored(sids, ts, values, storage, state, limits)
    sids, ts, values = sids[keep], ts[keep], values[keep]
    state.adopt(new_series, sids, ts, values)
    batch = WriteBatch(new_series, sids, ts, values, metadata=decoded.metadata)
    return batch, dupes + stored_dupes


def _resolve(
    batch: SampleBatch,
    storage: Storage,
    state: GroupState,
    limits: Limits,
    new_series: list[Series],
) -> tuple[Int64Array, Int64Array, Float64Array]:
    ids = np.array(
        [(-1 if i is None else i) for i in storage.lookup_series(batch.series)], dtype=np.int64
    )
    unknown = np.flatnonzero(ids < 0).tolist()
    if unknown:
        _create_series(batch, ids, unknown, storage, state, limits, new_series)
    return ids[batch.index], batch.ts, batch.values


def _create_series(
    batch: SampleBatch,
    ids: Int64Array,
    unknown: list[int],
    storage: Storage,
    state: GroupState,
    limits: Limits,
    new_series: list[Series],
) -> None:
    fresh: list[int] = []
    seen = {s.labels: s.id for s in new_series}
    per_metric: Counter[str] = Counter()
    for i in unknown:
        labels = batch.series[i]
        known = state.new_series.get(labels)
        if known is not None or labels in seen:
            ids[i] = known.id if known is not None else seen[labels]
            continue
        validate_series(labels, limits)
        metric = metric_name(labels)
        per_metric[metric] += 1
        _check_cardinality(metric, labels, per_metric[metric], storage, state, limits)
        fresh.append(i)
    for i, sid in zip(
        fresh, storage.allocate_series_ids([batch.series[i] for i in fresh]), strict=True
    ):
        ids[i] = sid
        new_series.append(Series(sid, batch.series[i]))


def _check_cardinality(
    metric: str, labels: Labels, adding: int, storage: Storage, state: GroupState, limits: Limits
) -> None:
    total = storage.series_count(metric) + state.new_per_metric[metric] + adding
    if total > limits.max_series_per_metric:
        raise LimitExceededError(
            f"metric {metric!r} would have more than {limits.max_series_per_metric} series "
            f"(first rejected: {describe(labels)}); a label with unbounded values (user id, "
            "request id) is the usual cause: drop it, or raise OPSMETRICS_MAX_SERIES_PER_METRIC",
            reason="series_limit",
        )


def _accumulate_deltas(
    sids: Int64Array, ts: Int64Array, values: Float64Array, storage: Storage, state: GroupState
) -> Float64Array:
    """Turn delta points into cumulative counter values: previous total + delta."""
    order = np.lexsort((ts, sids))
    out = np.empty_like(values)
    _, head_values = storage.series_heads(sids)
    for i in order.tolist():
        sid = int(sids[i])
        base = state.delta_base.get(sid)
        if base is None:
            base = float(head_values[i]) if np.isfinite(head_values[i]) else 0.0
        base += float(values[i])
        state.delta_base[sid] = base
        out[i] = base
    return out


def _dedupe_within(
    sids: Int64Array, ts: Int64Array, values: Float64Array, storage: Storage, state: GroupState
) -> tuple[Int64Array, Int64Array, Float64Array, int]:
    """Sort by (series, ts); drop exact repeats; reject two values for one timestamp."""
    if _strictly_sorted(sids, ts):  # the usual case: nothing to reorder or drop
        return sids, ts, values, 0
    order = np.lexsort((ts, sids))
    sids, ts, values = sids[order], ts[order], values[order]
    same = (sids[1:] == sids[:-1]) & (ts[1:] == ts[:-1])
    if not same.any():
        return sids, ts, values, 0
    bits = values.view(np.uint64)
    differ = same & (bits[1:] != bits[:-1])
    if differ.any():
        i = int(np.flatnonzero(differ)[0])
        raise _conflict(storage, state, int(sids[i]), int(ts[i]), values[i], values[i + 1])
    keep = np.r_[True, ~same]
    return sids[keep], ts[keep], values[keep], int(same.sum())


def _strictly_sorted(sids: Int64Array, ts: Int64Array) -> bool:
    same = sids[1:] == sids[:-1]
    return bool(((sids[1:] > sids[:-1]) | (same & (ts[1:] > ts[:-1]))).all())


def _check_against_stored(
    sids: Int64Array,
    ts: Int64Array,
    values: Float64Array,
    storage: Storage,
    state: GroupState,
    limits: Limits,
) -> tuple[np.ndarray, int]:
    """Samples at or behind their series' head are either repeats, late data, or conflicts."""
    heads = _effective_heads(sids, storage, state)
    behind = ts <= heads
    keep = np.ones(len(ts), dtype=bool)
    if not behind.any():
        return keep, 0
    idx = np.flatnonzero(behind)
    if storage.idempotent_writes:
        # The backend drops a resent sample itself (last write wins for a changed value):
        # no read before the write; only the late-data window applies.
        _check_late(sids, ts, heads, idx, np.zeros(len(idx), bool), storage, state, limits)
        return keep, 0
    found, stored = _lookup_existing(sids[idx], ts[idx], storage, state)
    same = found & (stored.view(np.uint64) == values[idx].view(np.uint64))
    conflict = found & ~same
    if conflict.any():
        j = int(idx[np.flatnonzero(conflict)[0]])
        k = int(np.flatnonzero(conflict)[0])
        raise _conflict(storage, state, int(sids[j]), int(ts[j]), stored[k], values[j])
    _check_late(sids, ts, heads, idx, found, storage, state, limits)
    keep[idx[same]] = False
    return keep, int(same.sum())


def _check_late(
    sids: Int64Array,
    ts: Int64Array,
    heads: Int64Array,
    idx: Int64Array,
    found: np.ndarray,
    storage: Storage,
    state: GroupState,
    limits: Limits,
) -> None:
    """Refuse a new sample further behind its series' head than the late-data window."""
    too_old = ~found & (ts[idx] < heads[idx] - limits.samples_late_window_ms)
    if too_old.any():
        j = int(idx[np.flatnonzero(too_old)[0]])
        raise OutOfBoundsError(
            f"sample of {describe(_labels(storage, state, int(sids[j])))} at {int(ts[j])} ms is "
            f"older than the late-data window ({limits.samples_late_window_ms // 1000} s behind "
            "the series' newest sample); raise OPSMETRICS_SAMPLES_LATE_WINDOW to accept it",
            reason="too_old",
        )


def _effective_heads(sids: Int64Array, storage: Storage, state: GroupState) -> Int64Array:
    heads, _ = storage.series_heads(sids)
    if state.head_sids.size:
        heads = np.maximum(heads, state.pending_heads(sids))
    return heads


def _lookup_existing(
    sids: Int64Array, ts: Int64Array, storage: Storage, state: GroupState
) -> tuple[np.ndarray, Float64Array]:
    found, stored = storage.existing_samples(sids, ts)
    if state.pending:
        pending = state.pending_values(sids, ts)
        for k, key in enumerate(zip(sids.tolist(), ts.tolist(), strict=True)):
            if key in pending:
                found[k] = True
                stored[k] = pending[key]
    return found, stored


def _labels(storage: Storage, state: GroupState, sid: int) -> Labels:
    """Labels of a series for a message: pending in this group, or stored."""
    if sid in state.names:
        return state.names[sid]
    try:
        return storage.labels_of(sid)
    except KeyError:
        return (("__name__", f"<series {sid}>"),)


def _conflict(
    storage: Storage, state: GroupState, sid: int, ts: int, old: float, new: float
) -> ConflictingSampleError:
    return ConflictingSampleError(
        f"series {describe(_labels(storage, state, sid))} already has the value {old!r} at "
        f"{ts} ms, and this request sends {new!r}; a sample cannot change once written "
        "(resending the identical value is fine)",
        reason="duplicate_timestamp",
    )
