"""The OTLP/HTTP export response, encoded like the request (protobuf or JSON)."""

from __future__ import annotations

import json

from google.protobuf import json_format
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2

from opsmetrics.ingest.protowire import encode_varint


def encode_otlp_response(
    content_type: str | None, rejected_points: int, error_message: str
) -> tuple[bytes, str]:
    """partial_success is set only when something was rejected, as the OTLP spec asks."""
    response = metrics_service_pb2.ExportMetricsServiceResponse()
    if rejected_points:
        response.partial_success.rejected_data_points = rejected_points
        response.partial_success.error_message = error_message
    if _is_json(content_type):
        text = json_format.MessageToJson(response, indent=None)
        return text.encode(), "application/json"
    return response.SerializeToString(), "application/x-protobuf"


#: google.rpc.Code RESOURCE_EXHAUSTED: what OTLP answers a sender it throttles.
RESOURCE_EXHAUSTED = 8


def encode_otlp_status(content_type: str | None, code: int, message: str) -> tuple[bytes, str]:
    """A google.rpc.Status (`code`, `message`): the body of an OTLP/HTTP error answer.

    Encoded by hand (two fields) rather than pulling in googleapis-common-protos for it.
    """
    if _is_json(content_type):
        return json.dumps({"code": code, "message": message}).encode(), "application/json"
    text = message.encode()
    payload = b"\x08" + encode_varint(code) + b"\x12" + encode_varint(len(text)) + text
    return payload, "application/x-protobuf"


def _is_json(content_type: str | None) -> bool:
    return content_type is not None and content_type.split(";")[0].strip().lower() == (
        "application/json"
    )
