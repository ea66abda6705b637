"""OTLP/HTTP metrics: an ExportMetricsServiceRequest (protobuf or JSON) → DecodedSamples.

Content negotiation and bounded gzip here; the mapping to Prometheus series is otlp_convert's.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from google.protobuf import json_format
from google.protobuf.message import DecodeError
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
)

from opsmetrics.errors import (
    BadDataError,
    LimitExceededError,
    PayloadTooLargeError,
    UnsupportedMediaTypeError,
)
from opsmetrics.ingest.compression import decompress_body
from opsmetrics.ingest.decoded import DecodedSamples
from opsmetrics.ingest.json_depth import check_json_depth
from opsmetrics.ingest.otlp_convert import convert
from opsmetrics.ingest.otlp_json import otlp_json_to_protobuf
from opsmetrics.ingest.otlp_numbers import SeriesCache
from opsmetrics.ingest.proto import otlp_view_pb2 as view
from opsmetrics.settings import Limits

PROTOBUF = "application/x-protobuf"
JSON = "application/json"


@dataclass(frozen=True, slots=True)
class OtlpDecoded:
    """The samples, and what the OTLP answer's partial_success must report."""

    decoded: DecodedSamples
    rejected_points: int
    error_message: str


def decode_otlp(
    body: bytes,
    content_type: str | None,
    content_encoding: str | None,
    limits: Limits,
    *,
    cache: SeriesCache | None = None,
) -> OtlpDecoded:
    """Decode one OTLP/HTTP metrics export body; pass a long-lived `cache` for speed."""
    if len(body) > limits.max_body_bytes:
        raise PayloadTooLargeError(
            f"OTLP body of {len(body)} bytes is larger than the limit of {limits.max_body_bytes} "
            "bytes; export smaller batches"
        )
    parse = _parser(content_type)
    converted = convert(
        parse(decompress_body(body, content_encoding, limits.max_decompressed_bytes)), cache
    )
    total = len(converted.samples) + len(converted.deltas)
    if total > limits.max_samples_per_request:
        raise LimitExceededError(
            f"{total} samples in one OTLP request, more than the limit of "
            f"{limits.max_samples_per_request}; export smaller batches",
            reason="too_many_samples",
        )
    decoded = DecodedSamples(converted.samples, converted.metadata, converted.deltas)
    return OtlpDecoded(decoded, converted.rejected_points, converted.error_message)


def _parser(content_type: str | None) -> Callable[[bytes], view.ExportView]:
    media = (content_type or "").split(";")[0].strip().lower()
    if media == PROTOBUF:
        return _parse_protobuf
    if media == JSON:
        return _parse_json
    raise UnsupportedMediaTypeError(
        f"Content-Type {content_type!r} is not supported; OTLP/HTTP bodies are {PROTOBUF} or {JSON}"
    )


def _parse_protobuf(raw: bytes) -> view.ExportView:
    # Parts the mapping does not read (exemplars, scopes…) are skipped without being checked.
    try:
        return view.ExportView.FromString(raw)
    except DecodeError as exc:
        raise BadDataError(
            f"OTLP body is not a valid protobuf ExportMetricsServiceRequest ({exc})"
        ) from None


def _parse_json(raw: bytes) -> view.ExportView:
    check_json_depth(raw)
    fast = otlp_json_to_protobuf(raw)
    if fast is not None:
        return view.ExportView.FromString(fast)
    try:
        request = ExportMetricsServiceRequest()
        json_format.Parse(raw, request, ignore_unknown_fields=True)
    except (json_format.ParseError, ValueError) as exc:
        raise BadDataError(
            f"OTLP body is not a valid JSON ExportMetricsServiceRequest: {exc}"
        ) from None
    return view.ExportView.FromString(request.SerializeToString())
