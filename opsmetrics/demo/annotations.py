"""The story told as annotations: deploys, incidents, campaigns, the onboarding release."""

from __future__ import annotations

from opsmetrics.demo.incidents import (
    MEMORY_REGRESSION_SERVICE,
    Campaign,
    Deploy,
    Plan,
    Span,
)
from opsmetrics.model import Annotation

ONBOARDING_SERVICE = "web-app"


def story_annotations(plan: Plan) -> list[Annotation]:
    out = [_deploy_annotation(d) for d in plan.deploys]
    out += [latency_incident(span, 100 + i) for i, span in enumerate(plan.incidents)]
    if plan.memory_regression is not None:
        out.extend(_regression_annotations(plan.memory_regression))
    if plan.onboarding_bug is not None:
        out.extend(_onboarding_annotations(plan.onboarding_bug))
    out += [_campaign_annotation(c) for c in plan.campaigns]
    return out


def latency_incident(span: Span, number: int) -> Annotation:
    return Annotation(
        id=f"demo-incident-{span.start}",
        ts=span.start,
        end=span.end,
        title=f"INC-{number}: checkout latency and 5xx errors",
        tags=["incident", "service:checkout", "severity:critical", "demo"],
        text="Checkout p95 latency above 2 s and elevated 5xx; DB connection pool "
        "exhausted, most payments time out. Mitigated by restarting the payment gateway client.",
    )


def _deploy_annotation(d: Deploy) -> Annotation:
    return Annotation(
        id=f"demo-deploy-{d.service}-{d.ts}",
        ts=d.ts,
        title=f"Deploy {d.service} {d.version}",
        tags=["deploy", f"service:{d.service}", f"version:{d.version}", "demo"],
    )


def _regression_annotations(span: Span) -> list[Annotation]:
    service = MEMORY_REGRESSION_SERVICE
    return [
        Annotation(
            id=f"demo-deploy-{service}-{span.start}",
            ts=span.start,
            title=f"Deploy {service} v3.0.0 (new product cache)",
            tags=["deploy", f"service:{service}", "version:v3.0.0", "demo"],
            text="Introduces an in-process product cache; memory grows after rollout.",
        ),
        Annotation(
            id=f"demo-deploy-{service}-{span.end}",
            ts=span.end,
            title=f"Rollback {service} to v2.x (cache memory regression)",
            tags=["deploy", "rollback", f"service:{service}", "demo"],
        ),
    ]


def _onboarding_annotations(span: Span) -> list[Annotation]:
    service = ONBOARDING_SERVICE
    return [
        Annotation(
            id=f"demo-deploy-{service}-{span.start}",
            ts=span.start,
            title=f"Deploy {service} v5.0.0 (redesigned onboarding wizard)",
            tags=["deploy", f"service:{service}", "version:v5.0.0", "demo"],
        ),
        Annotation(
            id=f"demo-incident-onboarding-{span.start}",
            ts=span.start,
            end=span.end,
            title="INC-200: onboarding wizard fails for new accounts",
            tags=["incident", f"service:{service}", "onboarding", "severity:major", "demo"],
            text="The new wizard's 'connect data source' step errors for accounts without a "
            "workspace; new users stop using the product. Fixed in v5.0.1.",
        ),
        Annotation(
            id=f"demo-deploy-{service}-{span.end}",
            ts=span.end,
            title=f"Deploy {service} v5.0.1 (onboarding fix)",
            tags=["deploy", f"service:{service}", "version:v5.0.1", "demo"],
        ),
    ]


def _campaign_annotation(c: Campaign) -> Annotation:
    return Annotation(
        id=f"demo-campaign-{c.channel}-{c.span.start}",
        ts=c.span.start,
        end=c.span.end,
        title=f"Campaign: {c.title}",
        tags=["campaign", f"channel:{c.channel}", "demo"],
        text="Shop traffic about +80 % while it runs; extra marketing spend on the channel.",
    )
