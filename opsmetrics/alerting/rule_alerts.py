"""Prometheus alerting rules: one rule's alerts and their state machine, as Prometheus runs it.

Each evaluation takes the rule's query result (label set, value rows). Every row is an alert:
its labels are the row's labels without `__name__`, plus the rule's labels (templates expanded,
an empty value removes a label), plus `alertname`; annotations are expanded templates.

    inactive ──row appears──▶ pending ──held `for`──▶ firing ──row gone──▶ inactive (resolved)
                                 └────row gone──▶ dropped            ▲ after `keep_firing_for`

- `for` is measured from `activeAt`, the evaluation that first saw the row; `for: 0` fires at
  once. A pending alert whose row goes away is dropped.
- A firing alert whose row goes away stays firing for `keep_firing_for` (`keepFiringSince` says
  since when), then resolves. A resolved alert is kept 15 minutes so it is sent as resolved;
  if its row returns it becomes a new alert with a new `activeAt`.
- `limit`: more than `limit` pending+firing alerts is an error and clears the rule's alerts.
- Series: `ALERTS{alertname, alertstate, <labels>} = 1` and `ALERTS_FOR_STATE{alertname,
  <labels>} = activeAt in seconds` for every pending or firing alert.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from opsmetrics.alerting.alert_state import RESOLVED_RETENTION_MS as RESOLVED_RETENTION_MS
from opsmetrics.alerting.alert_state import AlertInstance, alert_series
from opsmetrics.alerting.model import ALERT_NAME, Alert, AlertState
from opsmetrics.catalog.alert_templates import AlertData, expand
from opsmetrics.catalog.rules import Rule
from opsmetrics.errors import UserError
from opsmetrics.model import METRIC_NAME, Labels

#: Prometheus's --rules.alert.resend-delay default: a firing alert is re-sent at most this often.
RESEND_DELAY_MS = 60_000
GENERATOR_URL = "/alerts"
_ORDER = {AlertState.INACTIVE: 0, AlertState.PENDING: 1, AlertState.FIRING: 2}


class AlertRuleError(UserError):
    """An alerting rule's result cannot become alerts (limit, duplicate label sets)."""

    reason = "rule"


@dataclass(slots=True)
class RuleAlert(AlertInstance):
    """One alert of one Prometheus alerting rule, with what `keep_firing_for` and re-sending
    need besides."""

    keep_firing_since_ms: int | None = None
    last_sent_ms: int | None = None

    def needs_sending(self, at_ms: int) -> bool:
        """Prometheus's needsSending: never pending; resolved once; firing every resend delay."""
        if self.state is AlertState.PENDING:
            return False
        if self.resolved_at_ms is not None and (
            self.last_sent_ms is None or self.resolved_at_ms > self.last_sent_ms
        ):
            return True
        # Strictly after the delay, as Prometheus: with 1m evaluations, every second one.
        return self.last_sent_ms is None or self.last_sent_ms + RESEND_DELAY_MS < at_ms


class AlertingRule:
    """The live state of one alerting rule: its alerts, keyed by their label sets."""

    def __init__(self, rule: Rule, rule_id: str) -> None:
        self.rule = rule
        self.rule_id = rule_id
        self.active: dict[Labels, RuleAlert] = {}

    # --- evaluation ---------------------------------------------------------------------------
    def evaluate(
        self,
        rows: list[tuple[Labels, float]],
        at_ms: int,
        limit: int = 0,
        restored: Mapping[Labels, int] | None = None,
    ) -> None:
        """One evaluation at group time `at_ms`. `restored` maps alert labels to an activeAt
        read back from ALERTS_FOR_STATE after a restart (rules with `for` only)."""
        seen = self._apply_rows(self._alerts_of(rows), at_ms, restored or {})
        count = self._advance(seen, at_ms)
        if limit and count > limit:
            self.active.clear()
            raise AlertRuleError(f"exceeded limit of {limit} with {count} alerts")

    def _alerts_of(self, rows: list[tuple[Labels, float]]) -> dict[Labels, tuple[Labels, float]]:
        out: dict[Labels, tuple[Labels, float]] = {}
        name = f"__alert_{self.rule.name}"
        for row_labels, value in rows:
            data = AlertData(dict(row_labels), value)
            labels = {k: v for k, v in row_labels if k != METRIC_NAME}
            for key, text in self.rule.labels.items():
                labels[key] = expand(text, name, data)
            labels[ALERT_NAME] = self.rule.name
            key_labels = tuple(sorted((k, v) for k, v in labels.items() if v != ""))
            if key_labels in out:
                raise AlertRuleError(
                    "vector contains metrics with the same labelset after applying alert "
                    "labels; aggregate so each alert is unique, or keep the label that tells "
                    "them apart"
                )
            annotations = tuple((k, expand(t, name, data)) for k, t in self.rule.annotations)
            out[key_labels] = (annotations, value)
        return out

    def _apply_rows(
        self,
        alerts: dict[Labels, tuple[Labels, float]],
        at_ms: int,
        restored: Mapping[Labels, int],
    ) -> set[Labels]:
        for labels, (notes, value) in alerts.items():
            current = self.active.get(labels)
            if current is not None and current.state is not AlertState.INACTIVE:
                current.value, current.annotations = value, notes
                continue
            active_at = restored.get(labels, at_ms) if self.rule.for_ms else at_ms
            self.active[labels] = RuleAlert(
                labels, notes, AlertState.PENDING, value, min(active_at, at_ms)
            )
        return set(alerts)

    def _advance(self, seen: set[Labels], at_ms: int) -> int:
        """Move every alert along; returns how many are pending or firing."""
        count = 0
        for labels, alert in list(self.active.items()):
            if labels not in seen and not self._keeps_firing(alert, at_ms):
                self._resolve_or_drop(labels, alert, at_ms)
                continue
            if labels in seen:
                alert.keep_firing_since_ms = None
            count += 1
            held = at_ms - alert.active_at_ms >= self.rule.for_ms
            if alert.state is AlertState.PENDING and held:
                alert.state, alert.fired_at_ms = AlertState.FIRING, at_ms
        return count

    def _keeps_firing(self, alert: RuleAlert, at_ms: int) -> bool:
        if alert.state is not AlertState.FIRING or self.rule.keep_firing_for_ms <= 0:
            return False
        if alert.keep_firing_since_ms is None:
            alert.keep_firing_since_ms = at_ms
        return at_ms - alert.keep_firing_since_ms < self.rule.keep_firing_for_ms

    def _resolve_or_drop(self, labels: Labels, alert: RuleAlert, at_ms: int) -> None:
        expired = (
            alert.resolved_at_ms is not None
            and at_ms - alert.resolved_at_ms > RESOLVED_RETENTION_MS
        )
        if alert.state is AlertState.PENDING or expired:
            del self.active[labels]
        if alert.state is not AlertState.INACTIVE:
            alert.state, alert.resolved_at_ms = AlertState.INACTIVE, at_ms

    # --- views --------------------------------------------------------------------------------
    def series(self) -> dict[Labels, float]:
        """ALERTS and ALERTS_FOR_STATE rows of the pending and firing alerts."""
        return alert_series(self.live())

    def live(self) -> list[RuleAlert]:
        """Pending and firing alerts, by labels."""
        alerts = [a for a in self.active.values() if a.state is not AlertState.INACTIVE]
        return sorted(alerts, key=lambda a: a.labels)

    def state(self) -> AlertState:
        """The rule's state: the most severe of its alerts (Prometheus's rule state)."""
        return max((a.state for a in self.live()), key=_ORDER.__getitem__, default=_INACTIVE)

    def active_alerts(self) -> list[Alert]:
        return [self.to_alert(a) for a in self.live()]

    def to_send(self, at_ms: int) -> list[Alert]:
        """Firing alerts and recently resolved ones due to be (re)sent; marks them sent."""
        out = []
        for alert in sorted(self.active.values(), key=lambda a: a.labels):
            if alert.needs_sending(at_ms):
                alert.last_sent_ms = at_ms
                out.append(self.to_alert(alert))
        return out

    def to_alert(self, alert: RuleAlert) -> Alert:
        return alert.to_alert("rule", self.rule_id, GENERATOR_URL)


_INACTIVE = AlertState.INACTIVE
