"""What both kinds of alerting rule keep per alert, write as series and read back after a restart.

Prometheus alerting rules (rule_alerts.py) and KPI alert rules (kpi_rules.py) each move their
`AlertInstance`s through their own state machine; this module holds what they share:

- `AlertInstance.to_alert`: the one conversion from a rule's live alert to the `Alert` the hub,
  the API and the notifiers see.
- `alert_series`: `ALERTS{alertname, alertstate, <labels>} = 1` and
  `ALERTS_FOR_STATE{alertname, <labels>} = activeAt` in whole seconds (as Prometheus writes it)
  for every pending or firing alert.
- `restored_active_at`: at a rule's first evaluation after start, the `activeAt` of each alert
  from the newest `ALERTS_FOR_STATE` sample within the outage tolerance, unless that sample is
  a stale marker (the alert had ended).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from opsmetrics.alerting.model import ALERT_NAME, Alert, AlertState
from opsmetrics.model import METRIC_NAME, Labels, Matcher, MatchOp, is_stale
from opsmetrics.storage.base import Storage

ALERTS_METRIC = "ALERTS"
FOR_STATE_METRIC = "ALERTS_FOR_STATE"
ALERT_STATE = "alertstate"
#: How long a resolved alert is kept (and re-sent as resolved), as Prometheus.
RESOLVED_RETENTION_MS = 15 * 60_000
#: How far back a restart looks for ALERTS_FOR_STATE (Settings.alert_outage_tolerance_ms).
DEFAULT_OUTAGE_TOLERANCE_MS = 3_600_000


@dataclass(slots=True)
class AlertInstance:
    """One alert of one rule, mutable as the rule's state machine moves it."""

    labels: Labels
    annotations: Labels
    state: AlertState
    value: float
    active_at_ms: int
    fired_at_ms: int | None = None
    resolved_at_ms: int | None = None

    def to_alert(self, source: str, rule_id: str, generator_url: str) -> Alert:
        return Alert(
            labels=self.labels,
            annotations=self.annotations,
            state=self.state,
            value=self.value,
            active_at_ms=self.active_at_ms,
            fired_at_ms=self.fired_at_ms,
            resolved_at_ms=self.resolved_at_ms,
            source=source,
            rule_id=rule_id,
            generator_url=generator_url,
        )


def alert_series(alerts: Iterable[AlertInstance]) -> dict[Labels, float]:
    """ALERTS and ALERTS_FOR_STATE rows of the given pending and firing alerts."""
    out: dict[Labels, float] = {}
    for alert in alerts:
        state = (ALERT_STATE, alert.state.value)
        out[tuple(sorted((*alert.labels, (METRIC_NAME, ALERTS_METRIC), state)))] = 1.0
        for_state = tuple(sorted((*alert.labels, (METRIC_NAME, FOR_STATE_METRIC))))
        out[for_state] = float(alert.active_at_ms // 1000)
    return out


def restored_active_at(
    storage: Storage, alert_name: str, at_ms: int, tolerance_ms: int
) -> dict[Labels, int]:
    """activeAt (ms) per alert label set from the newest ALERTS_FOR_STATE samples."""
    matchers = [
        Matcher.of(METRIC_NAME, MatchOp.EQ, FOR_STATE_METRIC),
        Matcher.of(ALERT_NAME, MatchOp.EQ, alert_name),
    ]
    series = storage.select_series(matchers)
    if not series:
        return {}
    rows = storage.read_samples([s.id for s in series], at_ms - tolerance_ms, at_ms)
    # Rows are sorted by (series, ts): a series' newest sample is its last row.
    last = np.flatnonzero(np.diff(rows.series_ids, append=np.int64(-1)) != 0)
    live = last[~is_stale(rows.values[last])]
    newest = dict(zip(rows.series_ids[live].tolist(), rows.values[live].tolist(), strict=True))
    labels_of = {s.id: tuple(p for p in s.labels if p[0] != METRIC_NAME) for s in series}
    return {labels_of[sid]: int(value * 1000) for sid, value in newest.items()}
