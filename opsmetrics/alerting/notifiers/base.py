"""What a notifier is given (a batch) and returns (a delivery result); HTTP posting helper."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

import httpx

#: Alertmanager's zero time for `endsAt` of a firing alert.
ZERO_TIME = "0001-01-01T00:00:00Z"


@dataclass(frozen=True, slots=True)
class NotifiedAlert:
    fingerprint: str
    status: str  # firing | resolved
    labels: dict[str, str]
    annotations: dict[str, str]
    starts_at_ms: int
    ends_at_ms: int | None
    value: float
    generator_url: str = ""
    #: The instance's activeAt (its timeline's key); 0 in batches logged before it was kept.
    active_at_ms: int = 0
    #: The response protocol the alert takes (catalog/protocols.py), its team and first steps.
    protocol: str = ""
    team: str = ""
    steps: tuple[str, ...] = ()

    @property
    def name(self) -> str:
        return self.labels.get("alertname", "")

    def protocol_json(self) -> dict[str, Any] | None:
        """What notifications say of the protocol: its name, team and first steps."""
        if not self.protocol:
            return None
        return {"name": self.protocol, "team": self.team, "steps": list(self.steps)}


@dataclass(frozen=True, slots=True)
class Batch:
    """One notification: the alerts of one aggregation group, for one channel."""

    group_key: str
    group_hash: str
    receiver: str  # the channel name
    route: str
    status: str  # firing | resolved
    group_labels: dict[str, str]
    alerts: tuple[NotifiedAlert, ...]
    kind: str = "notify"  # notify | escalation | acknowledge
    external_url: str = ""

    def common_labels(self) -> dict[str, str]:
        return _common([a.labels for a in self.alerts])

    def common_annotations(self) -> dict[str, str]:
        return _common([a.annotations for a in self.alerts])

    def title(self) -> str:
        firing = sum(a.status == "firing" for a in self.alerts)
        names = sorted({a.name for a in self.alerts})
        prefix = "ESCALATED " if self.kind == "escalation" else ""
        count = f":{firing}" if self.status == "firing" else ""
        return f"{prefix}[{self.status.upper()}{count}] {', '.join(names)}"

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @staticmethod
    def from_json(text: str) -> Batch:
        data = json.loads(text)
        data["alerts"] = tuple(
            NotifiedAlert(**{**a, "steps": tuple(a.get("steps", ()))}) for a in data["alerts"]
        )
        return Batch(**data)


def _common(maps: list[dict[str, str]]) -> dict[str, str]:
    if not maps:
        return {}
    first = maps[0]
    return {k: v for k, v in sorted(first.items()) if all(m.get(k) == v for m in maps[1:])}


def rfc3339(ms: int | None) -> str:
    if ms is None:
        return ZERO_TIME
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="milliseconds")[:-6] + "Z"


@dataclass(frozen=True, slots=True)
class DeliveryResult:
    ok: bool
    retryable: bool = False
    status_code: int | None = None
    retry_after_s: float | None = None
    detail: str = ""


class Notifier(Protocol):
    def send(self, batch: Batch) -> DeliveryResult:
        """One attempt; retries are the caller's (alerting/delivery.py)."""
        ...


@dataclass
class HttpPoster:
    """Posts JSON with a sync httpx client and turns the answer into a DeliveryResult."""

    timeout_s: float = 10.0
    headers: dict[str, str] = field(default_factory=dict)
    _client: httpx.Client | None = None

    def post(self, url: str, payload: Any) -> DeliveryResult:
        if self._client is None:
            self._client = httpx.Client(timeout=self.timeout_s)
        try:
            response = self._client.post(url, json=payload, headers=self.headers)
        except httpx.TimeoutException as exc:
            return DeliveryResult(False, retryable=True, detail=f"timeout: {exc}")
        except httpx.HTTPError as exc:
            return DeliveryResult(False, retryable=True, detail=f"connection error: {exc}")
        return classify(response)


def classify(response: httpx.Response) -> DeliveryResult:
    code = response.status_code
    if 200 <= code < 300:
        return DeliveryResult(True, status_code=code, detail=f"HTTP {code}")
    excerpt = response.text[:300]
    detail = f"HTTP {code}: {excerpt}"
    if code == 429 or code >= 500:
        return DeliveryResult(False, True, code, _retry_after(response), detail)
    return DeliveryResult(False, False, code, None, detail)


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("retry-after")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None  # an HTTP date: fall back to backoff
