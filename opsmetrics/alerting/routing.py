"""Which routes an alert takes, and the aggregation group it joins on each."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from opsmetrics.alerting.model import Alert
from opsmetrics.catalog.notify import NotifyConfig, RouteSpec
from opsmetrics.model import Labels

#: A label naming the channels an alert goes to (KPI alert rules' `channels:`).
CHANNELS_LABEL = "channels"


@dataclass(frozen=True, slots=True)
class GroupKey:
    route: int
    labels: Labels  # the group_by label values

    @property
    def text(self) -> str:
        """Alertmanager-like group key: `{}/{route}:{a="x", b="y"}`."""
        inner = ", ".join(f'{k}="{v}"' for k, v in self.labels)
        return f"{{}}/{{route={self.route}}}:{{{inner}}}"

    @property
    def digest(self) -> str:
        """A stable hash of the key (PagerDuty dedup_key, log ids)."""
        return hashlib.sha256(self.text.encode()).hexdigest()[:32]


def route_matches(route: RouteSpec, alert: Alert) -> bool:
    labels = dict(alert.labels)
    if alert.severity == "info" and route.match.get("severity") != "info":
        return False  # info alerts are dashboard only unless a route asks for them
    if any(labels.get(k, "") != v for k, v in route.match.items()):
        return False
    return all(p.fullmatch(labels.get(k, "")) is not None for k, p in route.match_re.items())


def routes_for(config: NotifyConfig, alert: Alert) -> list[RouteSpec]:
    """Routes in order; the first match stops the walk unless it says `continue: true`."""
    out = []
    for route in config.routes:
        if route_matches(route, alert):
            out.append(route)
            if not route.continue_:
                break
    return out


def group_key(route: RouteSpec, alert: Alert) -> GroupKey:
    """The group_by label values; plus the alert's `channels` label, which picks channels."""
    labels = dict(alert.labels)
    if "..." in route.group_by:
        return GroupKey(route.index, alert.labels)
    names = {*route.group_by, *([CHANNELS_LABEL] if CHANNELS_LABEL in labels else [])}
    return GroupKey(route.index, tuple(sorted((n, labels.get(n, "")) for n in names)))


def group_channels(config: NotifyConfig, route: RouteSpec, key: GroupKey) -> tuple[str, ...]:
    """The route's channels, or those an alert names in its `channels` label (comma-separated,
    as KPI alert rules write it) that notify.yaml defines."""
    named = dict(key.labels).get(CHANNELS_LABEL)
    if named is None:
        return route.channels
    return tuple(c for c in (n.strip() for n in named.split(",")) if c in config.channels)
