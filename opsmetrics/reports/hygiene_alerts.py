"""Noisy alerts, from the incident timelines (alerting/timeline.py) of the last week.

An instance is one firing of one alert (fingerprint + start). Per alert name: how many
instances fired, how many *flapped* (fired again within FLAP_MS of resolving), how many were
acknowledged and how fast (median), how many were never acknowledged although they fired more
than ACK_GRACE_MS ago, and how many resolved before anyone acknowledged them.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from statistics import median

from opsmetrics.reports.hygiene_model import Finding
from opsmetrics.storage.timeline_records import TimelineEntry

HOUR_MS = 3_600_000
WEEK_MS = 7 * 24 * HOUR_MS
#: Resolved and fired again within this long: a flap.
FLAP_MS = 15 * 60_000
#: An instance younger than this is not yet "never acknowledged".
ACK_GRACE_MS = HOUR_MS
#: The timeline entry kinds read.
KINDS = ("fired", "acknowledged", "resolved")


@dataclass
class Instance:
    fingerprint: str
    fired_ms: int
    alertname: str
    rule: str
    acked_ms: int | None = None
    resolved_ms: int | None = None


@dataclass
class AlertNoise:
    """What the week's timeline says about one alert name."""

    alertname: str
    rule: str
    fires: int = 0
    flaps: int = 0
    ack_seconds: list[float] = field(default_factory=list)
    #: Fired more than ACK_GRACE_MS ago, not acknowledged (and not resolved unacknowledged).
    never_acknowledged: int = 0
    #: Resolved with no acknowledgement before.
    resolved_unseen: int = 0

    @property
    def median_ack_seconds(self) -> float | None:
        return median(self.ack_seconds) if self.ack_seconds else None

    def to_json(self) -> dict[str, object]:
        return {
            "alertname": self.alertname,
            "rule": self.rule,
            "fires": self.fires,
            "flaps": self.flaps,
            "acknowledged": len(self.ack_seconds),
            "median_ack_seconds": self.median_ack_seconds,
            "never_acknowledged": self.never_acknowledged,
            "resolved_unseen": self.resolved_unseen,
        }


def instances(entries: Sequence[TimelineEntry]) -> list[Instance]:
    """One per `fired` entry among the entries, with its first ack and its resolution."""
    found: dict[tuple[str, int], Instance] = {}
    for e in entries:
        if e.kind == "fired":
            detail = json.loads(e.detail)
            name = str(detail.get("alertname") or e.fingerprint)
            found[(e.fingerprint, e.started_ms)] = Instance(
                e.fingerprint, e.at_ms, name, str(detail.get("rule") or "")
            )
    for e in entries:
        i = found.get((e.fingerprint, e.started_ms))
        if i is None:
            continue
        if e.kind == "acknowledged" and (i.acked_ms is None or e.at_ms < i.acked_ms):
            i.acked_ms = e.at_ms
        elif e.kind == "resolved":
            i.resolved_ms = e.at_ms
    return sorted(found.values(), key=lambda i: (i.fingerprint, i.fired_ms))


def alert_noise(entries: Sequence[TimelineEntry], now_ms: int) -> list[AlertNoise]:
    """Per alert name (sorted), from the timeline entries of the window."""
    by_name: dict[str, AlertNoise] = {}
    previous: dict[str, Instance] = {}
    for i in instances(entries):
        row = by_name.setdefault(i.alertname, AlertNoise(i.alertname, i.rule))
        row.fires += 1
        before = previous.get(i.fingerprint)
        if before is not None and before.resolved_ms is not None:
            row.flaps += int(0 <= i.fired_ms - before.resolved_ms <= FLAP_MS)
        previous[i.fingerprint] = i
        _count_response(row, i, now_ms)
    return [by_name[k] for k in sorted(by_name)]


def _count_response(row: AlertNoise, i: Instance, now_ms: int) -> None:
    acked_in_time = i.acked_ms is not None and (
        i.resolved_ms is None or i.acked_ms <= i.resolved_ms
    )
    if acked_in_time and i.acked_ms is not None:
        row.ack_seconds.append(max(0, i.acked_ms - i.fired_ms) / 1000)
    elif i.resolved_ms is not None:
        row.resolved_unseen += 1
    elif now_ms - i.fired_ms > ACK_GRACE_MS:
        row.never_acknowledged += 1


# --- findings -------------------------------------------------------------------------
#: Fired at least this often in a week: noisy.
NOISY_FIRES = 10
#: Flapped at least this often in a week: flapping.
FLAPPING = 2
#: Resolved unacknowledged at least this often (and in half its firings or more).
RESOLVED_UNSEEN = 3
#: Median time to acknowledge past this: slow.
SLOW_ACK_S = 3600.0


def alert_finding(n: AlertNoise) -> Finding | None:
    """The alert's worst problem with its fix, or None: flapping, then noisy, then resolving
    by itself, then never acknowledged, then slow to acknowledge."""
    name, where = n.alertname, f" ({n.rule})" if n.rule else ""
    fires = _times(n.fires)
    if n.flaps >= FLAPPING:
        return Finding("alert", "flapping", name,
            f"fired {fires} this week and {_times(n.flaps)} again within 15 minutes of resolving",
            f"add `keep_firing_for: 15m` to {name}{where} or raise its `for:`: it resolved and "
            f"fired again within 15 minutes {_times(n.flaps)} this week")  # fmt: skip
    if n.fires >= NOISY_FIRES:
        fix = f"raise the `for:` of {name}{where} or add a silence: it fired {fires} this week"
        return Finding("alert", "noisy", name, f"fired {fires} this week", fix)
    if n.resolved_unseen >= RESOLVED_UNSEEN and n.resolved_unseen * 2 >= n.fires:
        return Finding("alert", "resolved_unseen", name,
            f"{n.resolved_unseen} of {n.fires} firings this week resolved before anyone looked",
            f"raise the `for:` of {name}{where} so it fires only for problems that last, or "
            f"make it a warning: {n.resolved_unseen} of its {n.fires} firings this week "
            "resolved before anyone acknowledged them")  # fmt: skip
    return _response_finding(n, name, where)


def _response_finding(n: AlertNoise, name: str, where: str) -> Finding | None:
    if n.never_acknowledged and not n.ack_seconds:
        return Finding("alert", "never_acknowledged", name,
            f"fired {_times(n.fires)} this week; nobody acknowledged it",
            f"route {name}{where} to a channel its team watches (notify.yaml) or delete the "
            f"rule if nobody acts on it: it fired {_times(n.fires)} this week and was never "
            "acknowledged")  # fmt: skip
    slow = n.median_ack_seconds
    if slow is not None and slow > SLOW_ACK_S:
        took = f"{slow / 3600:.1f} h"
        return Finding("alert", "slow_ack", name, f"median time to acknowledge {took}",
            f"route {name}{where} to the on-call channel or lower its severity: its median "
            f"time to acknowledge this week was {took}")  # fmt: skip
    return None


def _times(n: int) -> str:
    return "once" if n == 1 else f"{n} times"
