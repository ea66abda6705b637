"""The demo's improvement initiative: the checkout campaign whose effect the simulator plants
(demo/incidents.py CHECKOUT_CAMPAIGN_*: +15 % to pay from midnight 15 days before now).

It is created in the state store, as POST /api/v1/initiatives would, rather than shipped in
demo/config/initiatives/: its start follows the demo's "now", which a file cannot.
"""

from __future__ import annotations

from datetime import UTC, datetime

from opsmetrics.catalog.initiatives import Initiative, InitiativeKpi
from opsmetrics.demo.incidents import Plan
from opsmetrics.storage.initiative_records import InitiativeRecord

NAME = "checkout_campaign"


def campaign_initiative(plan: Plan) -> InitiativeRecord | None:
    if plan.checkout_campaign is None:
        return None
    got = Initiative(
        name=NAME,
        title="Checkout campaign: free shipping banner and one-click pay",
        owner="growth-team",
        description="Expected to lift checkout conversion by 15 % (the demo plants exactly that).",
        kpis=[InitiativeKpi(kpi="checkout_conversion_rate", direction="up", expected=0.15)],
        start=datetime.fromtimestamp(plan.checkout_campaign / 1000, UTC),
    )
    return InitiativeRecord(NAME, got.model_dump_json(), plan.checkout_campaign, "demo")
