"""Decoders for the Prometheus text exposition format 0.0.4 and OpenMetrics 1.0 text.

OpenMetrics is strict: a target that claims OpenMetrics and breaks a rule of the spec is told
which line and which rule, so it gets fixed at the source. The 0.0.4 text format is lenient the
way Prometheus's own parser is: metadata is optional, comments and blank lines are free, and
timestamps are integer milliseconds.

The formats live in `prometheus_text` and `openmetrics` (with `openmetrics_lexer` and
`openmetrics_rules`); what both share is in `exposition_lexer` and `exposition_series`. This
module chooses between them and is where callers import from.
"""

from __future__ import annotations

from opsmetrics.ingest.decoded import DecodedSamples
from opsmetrics.ingest.exposition_lexer import INT64_MAX, INT64_MIN, line_error
from opsmetrics.ingest.exposition_series import normalize_float_label
from opsmetrics.ingest.openmetrics import parse_openmetrics
from opsmetrics.ingest.openmetrics_lexer import MAX_EXEMPLAR_LABEL_CHARS
from opsmetrics.ingest.prometheus_text import parse_prometheus_text

__all__ = [
    "INT64_MAX",
    "INT64_MIN",
    "MAX_EXEMPLAR_LABEL_CHARS",
    "OPENMETRICS_MEDIA_TYPE",
    "is_openmetrics",
    "normalize_float_label",
    "parse_exposition",
    "parse_openmetrics",
    "parse_prometheus_text",
]

OPENMETRICS_MEDIA_TYPE = "application/openmetrics-text"


def parse_exposition(body: bytes, content_type: str | None, default_ts_ms: int) -> DecodedSamples:
    """Decode a scrape or import body; `Content-Type` chooses OpenMetrics or text 0.0.4."""
    text = _decode_utf8(body)
    if is_openmetrics(content_type):
        return parse_openmetrics(text, default_ts_ms)
    return parse_prometheus_text(text, default_ts_ms)


def is_openmetrics(content_type: str | None) -> bool:
    if not content_type:
        return False
    return content_type.split(";", 1)[0].strip().lower() == OPENMETRICS_MEDIA_TYPE


def _decode_utf8(body: bytes) -> str:
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = body.count(b"\n", 0, exc.start) + 1
        raise line_error(line, "the body is not valid UTF-8; send UTF-8 text") from None
