"""MTTA and MTTR from incident timelines, per rule, team or severity.

Time to acknowledge is the first `acknowledged` entry minus the `fired` one; time to resolve
is `resolved` minus `fired`; an instance counts from its `fired` entry, so a window holds the
instances that fired in it. The same seconds go out as the `incident_acknowledged` /
`incident_resolved` events the `mtta` / `mttr` KPIs average (alerting/timeline.py).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from statistics import fmean

from opsmetrics.errors import BadDataError
from opsmetrics.storage.timeline_records import TimelineEntry

#: The entry kinds read, and the fired-entry detail key each grouping reads.
KINDS = ("fired", "acknowledged", "resolved")
GROUPINGS = {"rule": "alertname", "team": "team", "severity": "severity"}


@dataclass
class ResponseTimes:
    key: str
    incidents: int = 0
    to_ack_s: list[float] = field(default_factory=list)
    to_resolve_s: list[float] = field(default_factory=list)

    def to_json(self) -> dict[str, object]:
        return {
            "key": self.key,
            "incidents": self.incidents,
            "acknowledged": len(self.to_ack_s),
            "resolved": len(self.to_resolve_s),
            "mttaSeconds": fmean(self.to_ack_s) if self.to_ack_s else None,
            "mttrSeconds": fmean(self.to_resolve_s) if self.to_resolve_s else None,
        }


def response_times(entries: Sequence[TimelineEntry], by: str) -> list[ResponseTimes]:
    """One row per group (sorted by key) of the instances whose `fired` entry is given."""
    if by not in GROUPINGS:
        raise BadDataError(f"by: use one of {', '.join(GROUPINGS)} (got {by!r})")
    fired: dict[tuple[str, int], TimelineEntry] = {}
    acked: dict[tuple[str, int], int] = {}
    resolved: dict[tuple[str, int], int] = {}
    for e in entries:
        key = (e.fingerprint, e.started_ms)
        if e.kind == "fired":
            fired[key] = e
        elif e.kind == "acknowledged":
            acked[key] = min(acked.get(key, e.at_ms), e.at_ms)
        elif e.kind == "resolved":
            resolved[key] = e.at_ms
    groups: dict[str, ResponseTimes] = {}
    for key, e in fired.items():
        name = str(json.loads(e.detail).get(GROUPINGS[by]) or "")
        row = groups.setdefault(name, ResponseTimes(name))
        row.incidents += 1
        if key in acked:
            row.to_ack_s.append(max(0, acked[key] - e.at_ms) / 1000)
        if key in resolved:
            row.to_resolve_s.append(max(0, resolved[key] - e.at_ms) / 1000)
    return [groups[k] for k in sorted(groups)]
