"""Series labels of a remote_write request: canonical form, and a cache keyed by their encoding."""

from __future__ import annotations

import operator
import threading
from collections.abc import Callable, Iterable
from typing import TypeVar, cast

from google.protobuf.message import DecodeError, Message

from opsmetrics.errors import BadDataError
from opsmetrics.ingest.proto import remote_pb2 as pb
from opsmetrics.ingest.validate import describe
from opsmetrics.model import METRIC_NAME, Labels

M = TypeVar("M", bound=Message)
Pair = tuple[str, str]

_NAME_TAG = 0x0A  # Label.name: field 1, length-delimited
_VALUE_TAG = 0x12  # Label.value: field 2, length-delimited
#: The cache also starts over when it holds more distinct label pairs than this per series.
_PAIRS_PER_SERIES = 16
_name_of = operator.itemgetter(0)
_value_of = operator.itemgetter(1)


def parse_message(cls: type[M], data: bytes) -> M:
    """Parse protobuf, turning a decode failure into a 400 that says what was expected."""
    try:
        return cls.FromString(data)
    except DecodeError as exc:
        raise BadDataError(
            f"remote_write body is not a valid protobuf prometheus.WriteRequest ({exc}); "
            "the sender must use remote write 1.0"
        ) from None


def canonical_labels(pairs: Iterable[Pair]) -> Labels:
    """Sorted by name, empty values dropped; needs a metric name and distinct, non-empty names."""
    ordered = tuple(sorted(pairs))
    by_name = dict(ordered)
    if len(by_name) != len(ordered):
        names = [name for name, _ in ordered]
        twice = next(a for a, b in zip(names, names[1:], strict=False) if a == b)
        raise BadDataError(
            f"series {describe(ordered)} has the label {twice!r} twice; send each label once",
            reason="duplicate_label",
        )
    if "" in by_name:
        raise BadDataError(
            f"series {describe(ordered)} has a label with an empty name; every label needs a name",
            reason="invalid_label_name",
        )
    if not by_name.get(METRIC_NAME):
        raise BadDataError(
            f"series {describe(ordered)} has no metric name; set the __name__ label",
            reason="missing_metric_name",
        )
    if "" in by_name.values():
        return tuple(pair for pair in ordered if pair[1])
    return ordered


def decode_label(entry: bytes) -> Pair:
    """One encoded Label message → (name, value).

    The usual encoding, short name then short value, is read directly; anything else, and
    invalid UTF-8 (so that upb's message says what is wrong), goes through upb.
    """
    span = _short_label(entry)
    if span is not None:
        try:
            return entry[2 : span[0]].decode(), entry[span[1] :].decode()
        except UnicodeDecodeError:
            pass
    label = parse_message(pb.Label, entry)
    return label.name, label.value


def _short_label(entry: bytes) -> tuple[int, int] | None:
    """(end of the name, start of the value) if the entry is [0x0a n name] [0x12 m value]."""
    if len(entry) < 2 or entry[0] != _NAME_TAG or entry[1] >= 0x80:
        return None
    name_end = 2 + entry[1]
    if name_end == len(entry):  # an empty value is left out
        return name_end, name_end
    if len(entry) < name_end + 2 or entry[name_end] != _VALUE_TAG or entry[name_end + 1] >= 0x80:
        return None
    return (name_end, name_end + 2) if name_end + 2 + entry[name_end + 1] == len(entry) else None


def _names_in_order(names: tuple[str, ...]) -> bool:
    """Distinct, non-empty, sorted, with a metric name: the labels need no reordering."""
    ascending = all(a < b for a, b in zip(names, names[1:], strict=False))
    return ascending and bool(names) and names[0] != "" and METRIC_NAME in names


class LabelsCache:
    """Canonical labels by the bytes that encode them, kept across requests.

    Senders repeat the same series every scrape interval, so after the first request almost
    every series is a dictionary hit. New series are built from label pairs cached the same
    way, so a pair such as job="api" is decoded once and shared. Equal label sets come back as
    one shared tuple. When full, the cache starts over. Safe to share between threads.
    """

    def __init__(self, max_series: int = 200_000) -> None:
        self._max_series = max_series
        self._series: dict[bytes, Labels] = {}
        self._interned: dict[Labels, Labels] = {}
        self._pairs: dict[bytes, Pair] = {}
        self._orders: dict[tuple[str, ...], bool] = {}
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._series)

    def resolve(
        self, keys: list[bytes], decode: Callable[[list[int]], Iterable[Labels]]
    ) -> list[Labels]:
        """Labels for each key; `decode(indices)` builds those of keys not seen before."""
        with self._lock:
            full = len(self._series) + len(keys) > self._max_series
            if full or len(self._pairs) > _PAIRS_PER_SERIES * self._max_series:
                self._series.clear()
                self._interned.clear()
                self._pairs.clear()
                self._orders.clear()
            found = list(map(self._series.get, keys))
            if None in found:
                missing = [i for i, labels in enumerate(found) if labels is None]
                for i, labels in zip(missing, decode(missing), strict=True):
                    shared = self._interned.setdefault(labels, labels)
                    found[i] = self._series[keys[i]] = shared
            return cast(list[Labels], found)

    def pairs(self, entries: list[bytes]) -> list[Pair]:
        """Each encoded Label decoded; call only from within `resolve`'s decode."""
        found = list(map(self._pairs.get, entries))
        if None in found:
            for i in [i for i, pair in enumerate(found) if pair is None]:
                pair = self._pairs.get(entries[i])
                if pair is None:
                    pair = self._pairs[entries[i]] = decode_label(entries[i])
                found[i] = pair
        return cast(list[Pair], found)

    def labels(self, pairs: list[Pair]) -> Labels:
        """canonical_labels(pairs), quicker for the usual already-canonical label list."""
        names = tuple(map(_name_of, pairs))
        in_order = self._orders.get(names)
        if in_order is None:
            in_order = self._orders[names] = _names_in_order(names)
        if in_order and "" not in map(_value_of, pairs):
            return tuple(pairs)
        return canonical_labels(pairs)
