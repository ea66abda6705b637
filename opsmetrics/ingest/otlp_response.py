"""The OTLP/HTTP export response, encoded like the request (protobuf or JSON)."""

from __future__ import annotations

from google.protobuf import json_format
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2


def encode_otlp_response(
    content_type: str | None, rejected_points: int, error_message: str
) -> tuple[bytes, str]:
    """partial_success is set only when something was rejected, as the OTLP spec asks."""
    response = metrics_service_pb2.ExportMetricsServiceResponse()
    if rejected_points:
        response.partial_success.rejected_data_points = rejected_points
        response.partial_success.error_message = error_message
    if content_type and content_type.split(";")[0].strip().lower() == "application/json":
        text = json_format.MessageToJson(response, indent=None)
        return text.encode(), "application/json"
    return response.SerializeToString(), "application/x-protobuf"
