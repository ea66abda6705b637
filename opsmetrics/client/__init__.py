"""The Python client: send events, samples, annotations and prometheus_client registries.

from opsmetrics.client import Client, Sample

with Client("http://127.0.0.1:8800", token) as om:
    om.track("purchase", entity="user-42", value=1999, props={"plan": "pro"})
    om.push([Sample("queue_depth", {"queue": "mail"}, 12)])
    om.annotate("deploy api v1.4", tags=["deploy"])
"""

from opsmetrics.client.client import Client, DeliveryFailure, Kind
from opsmetrics.client.prometheus import RegistryPusher, registry_exposition
from opsmetrics.client.records import Sample
from opsmetrics.client.transport import (
    DEFAULT_URL,
    DeliveryError,
    RejectedError,
    RetryPolicy,
    Transport,
)

__all__ = [
    "DEFAULT_URL",
    "Client",
    "DeliveryError",
    "DeliveryFailure",
    "Kind",
    "RegistryPusher",
    "RejectedError",
    "RetryPolicy",
    "Sample",
    "Transport",
    "registry_exposition",
]
