"""GET /api/v1/rules: rule groups with health and last evaluation, in Prometheus's JSON shape."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse

from opsmetrics.alerting.groups import GroupStatus, RuleManager, RuleStatus
from opsmetrics.alerting.rule_alerts import RuleAlert
from opsmetrics.catalog.alert_template_funcs import go_special
from opsmetrics.catalog.rules import RuleType
from opsmetrics.errors import BadDataError
from opsmetrics.storage.token_records import Scope
from opsmetrics.web.deps import require

router = APIRouter(dependencies=[Depends(require(Scope.READ))], tags=["rules"])
#: What Go prints for a zero time.Time: Prometheus's lastEvaluation of a rule never evaluated.
NEVER = "0001-01-01T00:00:00Z"
_TYPES = {"record": RuleType.RECORDING, "alert": RuleType.ALERTING}


def rule_manager(request: Request) -> RuleManager | None:
    manager: RuleManager | None = getattr(request.app.state, "rules", None)
    return manager


@dataclass(frozen=True, slots=True)
class _Filters:
    type: RuleType | None
    names: set[str]
    groups: set[str]
    files: set[str]

    def keeps_group(self, status: GroupStatus) -> bool:
        group = status.group
        return (not self.groups or group.name in self.groups) and (
            not self.files or group.file in self.files
        )

    def keeps_rule(self, status: RuleStatus) -> bool:
        rule = status.rule
        return (self.type is None or rule.type is self.type) and (
            not self.names or rule.name in self.names
        )

    def by_rule(self) -> bool:
        return bool(self.names) or self.type is not None


@router.get("/api/v1/rules")
async def list_rules(request: Request) -> JSONResponse:
    query = request.query_params
    filters = _Filters(
        _type_filter(query.get("type")),
        set(query.getlist("rule_name[]")),
        set(query.getlist("rule_group[]")) | set(query.getlist("group_name[]")),
        set(query.getlist("file[]")),
    )
    exclude_alerts = query.get("exclude_alerts", "false").lower() == "true"
    manager = rule_manager(request)
    out = []
    for status in manager.status() if manager is not None else []:
        if not filters.keeps_group(status):
            continue
        rules = [_rule_json(r, exclude_alerts) for r in status.rules if filters.keeps_rule(r)]
        if rules or not filters.by_rule():
            out.append(_group_json(status, rules))
    return JSONResponse({"status": "success", "data": {"groups": out}})


def _type_filter(value: str | None) -> RuleType | None:
    if value is None or value == "":
        return None
    if value not in _TYPES:
        raise BadDataError(f"unsupported type {value!r}: use type=alert or type=record")
    return _TYPES[value]


def rfc3339(ms: int | None) -> str:
    """Go's RFC3339Nano for a ms timestamp (trailing zeros of the fraction dropped)."""
    if ms is None:
        return NEVER
    text = datetime.fromtimestamp(ms // 1000, UTC).strftime("%Y-%m-%dT%H:%M:%S")
    frac = f"{ms % 1000:03d}".rstrip("0")
    return f"{text}.{frac}Z" if frac else f"{text}Z"


def _group_json(status: GroupStatus, rules: list[dict[str, Any]]) -> dict[str, Any]:
    group = status.group
    return {
        "name": group.name,
        "file": group.file,
        "rules": rules,
        "interval": group.interval_ms / 1000,
        "limit": group.limit,
        "evaluationTime": status.evaluation_s,
        "lastEvaluation": rfc3339(status.last_evaluation_ms),
    }


def _rule_json(status: RuleStatus, exclude_alerts: bool) -> dict[str, Any]:
    rule = status.rule
    out: dict[str, Any] = {"name": rule.name, "query": rule.expr}
    if rule.type is RuleType.ALERTING:
        state = "unknown" if status.last_evaluation_ms is None else status.state.value
        out = {"state": state, **out, "duration": rule.for_ms / 1000}
        out["keepFiringFor"] = rule.keep_firing_for_ms / 1000
    out["labels"] = dict(sorted(rule.labels.items()))
    if rule.type is RuleType.ALERTING:
        out["annotations"] = dict(rule.annotations)
        if not exclude_alerts:
            out["alerts"] = [alert_json(a) for a in status.alerts]
    out["health"] = status.health.value
    if status.last_error:
        out["lastError"] = status.last_error
    out["evaluationTime"] = status.evaluation_s
    out["lastEvaluation"] = rfc3339(status.last_evaluation_ms)
    out["type"] = "recording" if rule.type is RuleType.RECORDING else "alerting"
    return out


def alert_json(alert: RuleAlert) -> dict[str, Any]:
    """One alert as Prometheus's API prints it (value as Go's %e, keepFiringSince if set)."""
    out: dict[str, Any] = {
        "labels": dict(alert.labels),
        "annotations": dict(alert.annotations),
        "state": alert.state.value,
        "activeAt": rfc3339(alert.active_at_ms),
    }
    if alert.keep_firing_since_ms is not None:
        out["keepFiringSince"] = rfc3339(alert.keep_firing_since_ms)
    out["value"] = go_e(alert.value)
    return out


def go_e(value: float) -> str:
    """strconv.FormatFloat(v, 'e', -1, 64): shortest digits, two-digit exponent."""
    special = go_special(value)
    if special is not None:
        return special
    text = next(
        (t for t in (f"{value:.{n}e}" for n in range(17)) if float(t) == value), f"{value:.16e}"
    )
    head, _, power = text.partition("e")
    return f"{head}e{power[0]}{int(power[1:]):02d}"
