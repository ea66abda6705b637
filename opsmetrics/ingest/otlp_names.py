"""OpenTelemetry names, units and attribute values as Prometheus names and label values.

Follows the "OTLP Metric points to Prometheus" part of OpenTelemetry's Prometheus and
OpenMetrics compatibility spec, with the unit table the OpenTelemetry Collector and Prometheus
use for the common UCUM units.
"""

from __future__ import annotations

import base64
import json
import math
import re
from typing import Any

import numpy as np
from opentelemetry.proto.common.v1.common_pb2 import AnyValue

_INVALID_METRIC_CHARS = re.compile(r"[^a-zA-Z0-9_:]+")
_INVALID_LABEL_CHARS = re.compile(r"[^a-zA-Z0-9_]+")
_UNDERSCORES = re.compile(r"__+")
_BRACED = re.compile(r"\{[^}]*\}")

#: UCUM unit → the word Prometheus puts in metric names.
UNITS = {
    "d": "days",
    "h": "hours",
    "min": "minutes",
    "s": "seconds",
    "ms": "milliseconds",
    "us": "microseconds",
    "ns": "nanoseconds",
    "By": "bytes",
    "KiBy": "kibibytes",
    "MiBy": "mebibytes",
    "GiBy": "gibibytes",
    "TiBy": "tibibytes",
    "KBy": "kilobytes",
    "MBy": "megabytes",
    "GBy": "gigabytes",
    "TBy": "terabytes",
    "m": "meters",
    "V": "volts",
    "A": "amperes",
    "J": "joules",
    "W": "watts",
    "g": "grams",
    "Cel": "celsius",
    "Hz": "hertz",
    "%": "percent",
}
#: The denominator of a "x/y" unit.
PER_UNITS = {
    "s": "second",
    "m": "minute",
    "h": "hour",
    "d": "day",
    "w": "week",
    "mo": "month",
    "y": "year",
}


def metric_name(name: str, unit: str, *, counter: bool) -> str:
    """`http.server.duration` in `ms` → `http_server_duration_milliseconds`; counters get `_total`.

    Pass the unit through `prometheus_unit` first. Returns "" when the name is empty.
    """
    base = sanitize_metric_name(name)
    if not base:
        return ""
    if counter:
        base = base.removesuffix("_total") or base
    if unit and f"_{unit}_" not in f"_{base}_":
        base = f"{base}_{unit}"
    return f"{base}_total" if counter else base


def sanitize_metric_name(name: str) -> str:
    """Invalid characters become `_`, runs of `_` one `_`; a leading digit gets a `_` before it."""
    clean = _UNDERSCORES.sub("_", _INVALID_METRIC_CHARS.sub("_", name))
    return f"_{clean}" if clean[:1].isdigit() else clean


def label_name(key: str) -> str:
    """An attribute key as a label name; "" for an empty key. A leading digit gets `key_`."""
    clean = _UNDERSCORES.sub("_", _INVALID_LABEL_CHARS.sub("_", key))
    return f"key_{clean}" if clean[:1].isdigit() else clean


def prometheus_unit(unit: str, *, gauge: bool) -> str:
    """`ms` → `milliseconds`, `By/s` → `bytes_per_second`, `{packets}` → "".

    `1` is `ratio` for gauges only, as in Prometheus (a counter of ratios makes no sense).
    """
    if unit == "1":
        return "ratio" if gauge else ""
    main, _, per = _BRACED.sub("", unit).partition("/")
    words = [UNITS.get(main.strip(), _word(main))]
    if per.strip():
        words.append("per_" + PER_UNITS.get(per.strip(), _word(per)))
    return "_".join(word for word in words if word)


def format_float(value: float) -> str:
    """Shortest round-tripping decimal, as Prometheus writes `le` and `quantile`: 0.005, 1, +Inf."""
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if math.isnan(value):
        return "NaN"
    return np.format_float_positional(value, trim="-")


def attribute_value(value: AnyValue) -> str:
    """Strings as they are; other values as the OpenTelemetry attribute spec writes them."""
    kind = value.WhichOneof("value")
    if kind == "string_value":
        return value.string_value
    if kind == "double_value":
        return format_float(value.double_value)
    plain = _plain(value)
    if plain is None or isinstance(plain, str):
        return plain or ""
    return json.dumps(plain, separators=(",", ":"), ensure_ascii=False)


def _plain(value: AnyValue) -> Any:
    """An AnyValue as a JSON-ready Python value."""
    kind = value.WhichOneof("value")
    if kind == "array_value":
        return [_plain(item) for item in value.array_value.values]
    if kind == "kvlist_value":
        return {kv.key: _plain(kv.value) for kv in value.kvlist_value.values}
    if kind == "bytes_value":
        return base64.b64encode(value.bytes_value).decode()
    if kind == "double_value":
        number = value.double_value
        return number if math.isfinite(number) else format_float(number)
    return None if kind is None else getattr(value, kind)


def _word(unit: str) -> str:
    return _UNDERSCORES.sub("_", _INVALID_LABEL_CHARS.sub("_", unit.strip())).strip("_")
