"""Validation of series, samples and events against the configured limits.

Series are validated once, when first seen; known series skip straight to the write.
"""

from __future__ import annotations

import math
import re

from opsmetrics.errors import BadDataError, LimitExceededError, OutOfBoundsError
from opsmetrics.model import METRIC_NAME, Event, Int64Array, Labels, metric_name
from opsmetrics.settings import Limits

METRIC_NAME_RE = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
LABEL_NAME_RE = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")


def describe(labels: Labels) -> str:
    """`name{a="b"}` for messages, truncated so hostile input cannot flood a log line."""
    name = metric_name(labels)
    inner = ",".join(f'{k}="{v[:64]}"' for k, v in labels if k != METRIC_NAME)
    text = f"{name}{{{inner}}}"
    return text if len(text) <= 300 else text[:297] + "..."


def validate_series(labels: Labels, limits: Limits) -> None:
    name = metric_name(labels)
    if not name:
        raise BadDataError(
            f"series {describe(labels)} has no metric name; set the __name__ label",
            reason="missing_metric_name",
        )
    if not METRIC_NAME_RE.fullmatch(name):
        raise BadDataError(
            f"metric name {name[:200]!r} is invalid; use letters, digits, '_' and ':' and do "
            "not start with a digit",
            reason="invalid_metric_name",
        )
    if len(labels) - 1 > limits.max_labels_per_series:
        raise LimitExceededError(
            f"series {describe(labels)} has {len(labels) - 1} labels, more than the limit of "
            f"{limits.max_labels_per_series}; drop labels or raise "
            "OPSMETRICS_MAX_LABELS_PER_SERIES",
            reason="too_many_labels",
        )
    _validate_label_pairs(labels, limits)


def _validate_label_pairs(labels: Labels, limits: Limits) -> None:
    previous = None
    for key, value in labels:
        if key == previous:
            raise BadDataError(
                f"series {describe(labels)} has the label {key!r} twice; send each label once",
                reason="duplicate_label",
            )
        previous = key
        if key != METRIC_NAME and not LABEL_NAME_RE.fullmatch(key):
            raise BadDataError(
                f"series {describe(labels)}: label name {key[:200]!r} is invalid; use letters, "
                "digits and '_' and do not start with a digit",
                reason="invalid_label_name",
            )
        if len(key.encode()) > limits.max_label_name_bytes:
            raise LimitExceededError(
                f"series {describe(labels)}: label name longer than "
                f"{limits.max_label_name_bytes} bytes",
                reason="label_name_too_long",
            )
        if len(value.encode()) > limits.max_label_value_bytes:
            raise LimitExceededError(
                f"series {describe(labels)}: the value of label {key!r} is longer than "
                f"{limits.max_label_value_bytes} bytes; shorten it or raise "
                "OPSMETRICS_MAX_LABEL_VALUE_BYTES",
                reason="label_value_too_long",
            )


def check_not_future(ts: Int64Array, now_ms: int, limits: Limits, what: str) -> None:
    limit = now_ms + limits.future_tolerance_ms
    if len(ts) and int(ts.max()) > limit:
        bad = int(ts.max())
        raise OutOfBoundsError(
            f"{what}: timestamp {bad} ms is {(bad - now_ms) / 1000:.0f} s in the future, beyond "
            f"the tolerance of {limits.future_tolerance_ms // 1000} s; check the sender's clock "
            "and that timestamps are in milliseconds",
            reason="too_far_in_future",
        )


def validate_event(event: Event, index: int, now_ms: int, limits: Limits) -> None:
    where = f"events[{index}]"
    if not event.name or len(event.name) > 256:
        raise BadDataError(f"{where}.name: must be 1 to 256 characters", reason="invalid_event")
    if len(event.entity) > limits.max_label_value_bytes:
        raise LimitExceededError(
            f"{where}.entity: longer than {limits.max_label_value_bytes} bytes",
            reason="invalid_event",
        )
    if event.value is not None and not math.isfinite(event.value):
        raise BadDataError(f"{where}.value: must be a finite number", reason="invalid_event")
    if event.ts > now_ms + limits.future_tolerance_ms:
        raise OutOfBoundsError(
            f"{where}.ts: {event.ts} ms is in the future beyond the tolerance of "
            f"{limits.future_tolerance_ms // 1000} s; timestamps are milliseconds since the epoch",
            reason="too_far_in_future",
        )
    if event.ts < now_ms - limits.events_late_window_ms:
        raise OutOfBoundsError(
            f"{where}.ts: {event.ts} ms is older than the late-event window of "
            f"{limits.events_late_window_ms // 86_400_000} days; raise "
            "OPSMETRICS_EVENTS_LATE_WINDOW to backfill older data",
            reason="too_old",
        )
