"""The story as the events an incident tool and a CI/CD pipeline would send: `deploy`,
`incident_acknowledged` and `incident_resolved`, for the operations KPIs (deployment frequency,
change failure rate, MTTA, MTTR). Written once with the history, like the annotations.
"""

from __future__ import annotations

from opsmetrics.demo.annotations import ONBOARDING_SERVICE
from opsmetrics.demo.incidents import MEMORY_REGRESSION_SERVICE, Plan, Span
from opsmetrics.model import Event, Scalar

#: Minutes until the on-call acknowledges a page, by incident number (cycled).
ACK_MINUTES = (4, 7, 3, 11, 5)


def story_events(plan: Plan) -> list[Event]:
    """Events of everything in `plan` that happened by its end (the history's now)."""
    out = [_deploy(d.ts, d.service, d.version, failed=False) for d in plan.deploys]
    incidents = [(span, "checkout") for span in plan.incidents]
    if plan.memory_regression is not None:
        span = plan.memory_regression
        out.append(_deploy(span.start, MEMORY_REGRESSION_SERVICE, "v3.0.0", failed=True))
        out.append(_deploy(span.end, MEMORY_REGRESSION_SERVICE, "v2.9.1", failed=False))
    if plan.onboarding_bug is not None:
        span = plan.onboarding_bug
        out.append(_deploy(span.start, ONBOARDING_SERVICE, "v5.0.0", failed=True))
        out.append(_deploy(span.end, ONBOARDING_SERVICE, "v5.0.1", failed=False))
        incidents.append((span, ONBOARDING_SERVICE))
    for n, (span, service) in enumerate(incidents):
        out += _incident(span, service, n)
    return [e for e in out if e.ts <= plan.end]


def _deploy(ts: int, service: str, version: str, *, failed: bool) -> Event:
    props: dict[str, Scalar] = {
        "env": "production",
        "service": service,
        "version": version,
        "failed": "true" if failed else "false",
    }
    return Event("deploy", ts, service, None, props, f"demo-deploy-{service}-{ts}")


def _incident(span: Span, service: str, n: int) -> list[Event]:
    props: dict[str, Scalar] = {"service": service}
    ack_s = ACK_MINUTES[n % len(ACK_MINUTES)] * 60
    entity = f"incident:{span.start}"
    return [
        Event(
            "incident_acknowledged",
            span.start + ack_s * 1000,
            entity,
            float(ack_s),
            props,
            f"demo-incident-ack-{span.start}",
        ),
        Event(
            "incident_resolved",
            span.end,
            entity,
            (span.end - span.start) / 1000.0,
            props,
            f"demo-incident-resolved-{span.start}",
        ),
    ]
