"""Prometheus remote_write 1.0: a snappy-compressed protobuf WriteRequest → DecodedSamples.

Requests in the usual layout go through the vectorised decoder (remote_write_fast); anything
else is decoded here from fully parsed messages, with the same result. Label names and values
are checked later by the pipeline; here a series only needs a metric name and distinct names.
"""

from __future__ import annotations

import cramjam

from opsmetrics.errors import BadDataError, PayloadTooLargeError, UnsupportedMediaTypeError
from opsmetrics.ingest.decoded import DecodedSamples
from opsmetrics.ingest.proto import remote_pb2 as pb
from opsmetrics.ingest.remote_write_fast import check_sample_count, decode_fast
from opsmetrics.ingest.remote_write_labels import LabelsCache, canonical_labels, parse_message
from opsmetrics.model import MetricMetadata, MetricType, SampleBatch, SampleBatchBuilder
from opsmetrics.settings import Limits

__all__ = ["LabelsCache", "decode_remote_write"]

PROTOBUF = "application/x-protobuf"
WRITE_V1 = "prometheus.WriteRequest"
FRAMED_SNAPPY_MAGIC = b"\xff\x06\x00\x00sNaPpY"

_TYPES = {
    pb.MetricMetadata.COUNTER: MetricType.COUNTER,
    pb.MetricMetadata.GAUGE: MetricType.GAUGE,
    pb.MetricMetadata.HISTOGRAM: MetricType.HISTOGRAM,
    pb.MetricMetadata.GAUGEHISTOGRAM: MetricType.GAUGE_HISTOGRAM,
    pb.MetricMetadata.SUMMARY: MetricType.SUMMARY,
    pb.MetricMetadata.INFO: MetricType.INFO,
    pb.MetricMetadata.STATESET: MetricType.STATESET,
}


def decode_remote_write(
    body: bytes,
    content_type: str | None,
    content_encoding: str | None,
    limits: Limits,
    *,
    cache: LabelsCache | None = None,
) -> DecodedSamples:
    """Decode one remote_write 1.0 request body; pass a long-lived `cache` for speed."""
    check_content_type(content_type)
    check_content_encoding(content_encoding)
    if len(body) > limits.max_body_bytes:
        raise PayloadTooLargeError(
            f"remote_write body of {len(body)} bytes is larger than the limit of "
            f"{limits.max_body_bytes} bytes; lower max_samples_per_send in the sender"
        )
    raw = decompress_snappy_block(body, limits.max_decompressed_bytes)
    return decode_write_request(raw, limits, cache if cache is not None else LabelsCache())


def check_content_type(content_type: str | None) -> None:
    """Prometheus's rules: no Content-Type means protobuf WriteRequest (remote write 1.0)."""
    if not content_type:
        return
    media, params = _parse_media_type(content_type)
    if media != PROTOBUF:
        raise UnsupportedMediaTypeError(
            f"Content-Type {content_type!r} is not supported; remote_write bodies are "
            f"{PROTOBUF} (remote write 1.0)"
        )
    proto = params.get("proto", WRITE_V1)
    if proto != WRITE_V1:
        raise UnsupportedMediaTypeError(
            f"Content-Type proto={proto!r} is not supported; only remote write 1.0 "
            f"(proto={WRITE_V1}) is. Set protobuf_message: {WRITE_V1} in the sender's "
            "remote_write config"
        )


def check_content_encoding(content_encoding: str | None) -> None:
    """Snappy is required; like Prometheus we assume it when the header is missing."""
    if content_encoding and content_encoding.strip().lower() != "snappy":
        raise UnsupportedMediaTypeError(
            f"Content-Encoding {content_encoding!r} is not supported; remote_write bodies "
            "are snappy-compressed (block format)"
        )


def decompress_snappy_block(body: bytes, max_bytes: int) -> bytes:
    """Snappy block format, refusing before allocation anything that would inflate too far."""
    if body.startswith(FRAMED_SNAPPY_MAGIC):
        raise UnsupportedMediaTypeError(
            "the body is snappy framed (stream) format; remote_write uses the snappy block "
            "format (Go: snappy.Encode, Python: cramjam.snappy.compress_raw)"
        )
    size = _snappy_length(body)
    if size > max_bytes:
        raise PayloadTooLargeError(
            f"remote_write body would decompress to {size} bytes, more than the limit of "
            f"{max_bytes} bytes; send smaller requests"
        )
    try:
        return bytes(cramjam.snappy.decompress_raw(body))
    except cramjam.DecompressionError as exc:
        raise BadDataError(f"remote_write body is not valid snappy block data: {exc}") from None


def decode_write_request(raw: bytes, limits: Limits, cache: LabelsCache) -> DecodedSamples:
    """Decode an uncompressed WriteRequest."""
    view = parse_message(pb.WriteRequestView, raw)
    metadata = [_metadata(m) for m in view.metadata if m.metric_family_name]
    batch = decode_fast(list(view.timeseries), limits, cache)
    if batch is None:
        batch = _decode_plain(raw, limits)
    return DecodedSamples(batch, metadata, SampleBatch.empty())


def _parse_media_type(value: str) -> tuple[str, dict[str, str]]:
    media, *rest = value.split(";")
    params = {}
    for param in rest:
        key, _, val = param.partition("=")
        params[key.strip().lower()] = val.strip().strip('"')
    return media.strip().lower(), params


def _snappy_length(body: bytes) -> int:
    """The uncompressed length every snappy block starts with (a varint of at most 5 bytes)."""
    size = 0
    for i, byte in enumerate(body[:5]):
        size |= (byte & 0x7F) << (7 * i)
        if byte < 0x80:
            return size
    raise BadDataError("remote_write body is not valid snappy block data: bad length header")


def _metadata(entry: pb.MetricMetadata) -> MetricMetadata:
    kind = _TYPES.get(entry.type, MetricType.UNKNOWN)
    return MetricMetadata(entry.metric_family_name, kind, entry.help, entry.unit)


# --- the plain path: fully parsed messages, one Python step per label and sample -------------


def _decode_plain(raw: bytes, limits: Limits) -> SampleBatch:
    request = parse_message(pb.WriteRequest, raw)
    check_sample_count(sum(len(series.samples) for series in request.timeseries), limits)
    builder = SampleBatchBuilder()
    for series in request.timeseries:
        labels = canonical_labels([(label.name, label.value) for label in series.labels])
        if series.samples:
            ts = [sample.timestamp for sample in series.samples]
            values = [sample.value for sample in series.samples]
            builder.add_many(builder.series_index(labels), ts, values)
    return builder.build()
