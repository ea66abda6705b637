"""Business events and the counters and gauges beside them: the shop (shop.py) and the SaaS
product (saas.py).

Checkout conversion depends on checkout health: during a latency incident most would-be buyers
give up, which is the link later analysis should find.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from opsmetrics.demo import saas, shop
from opsmetrics.demo.context import SeriesSpec, Step
from opsmetrics.demo.sampling import Ids
from opsmetrics.model import Event, Float64Array


def series() -> list[SeriesSpec]:
    return shop.series() + saas.series()


@dataclass(slots=True)
class BusinessStep:
    events: list[Event]
    #: Columns in the order of `series()`: per-step changes (totals) or levels (gauges).
    columns: Float64Array


def simulate(step: Step) -> BusinessStep:
    ids = Ids(int(step.ts[0]))
    shop_columns, shop_events = shop.simulate(step, ids)
    shoppers = [(e.ts, e.entity) for e in shop_events if e.name == "add_to_cart"]
    saas_columns, saas_events = saas.simulate(step, ids, shoppers)
    return BusinessStep(shop_events + saas_events, np.hstack([shop_columns, saas_columns]))
