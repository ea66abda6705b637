"""The shop's refunds, kept in the shop's own database rather than sent as events: a SQLite
file (`shop.sqlite` in the data directory) that the demo's SQL source `shop_refunds`
(demo/config/sources/shop.yaml) reads incrementally by `updated_at`, as a team would read its
production database.

About 1 % of orders are refunded, with the shop's daily and weekly rhythm. During a checkout
incident failed payments are retried and some customers are charged twice: refunds with the
reason `charged_twice` follow, approved within the hour. A refund is decided (8 % rejected)
within about a day and paid out one to three days later; each change moves the row's
`updated_at`, so the source's cursor keeps moving while the demo runs.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from opsmetrics.demo.incidents import Plan
from opsmetrics.demo.seasonality import DAY_MS, daily_factor, weekly_factor
from opsmetrics.demo.shop import (
    AVG_ORDER_MINOR,
    ORDER_SIGMA,
    P_ADD_TO_CART,
    P_CART_VIEW,
    P_CHECKOUT,
    P_PAY,
    SESSIONS_PER_MIN,
    SHOP_USERS,
)
from opsmetrics.storage.external.demo_shop import (
    Refund,
    advance_shop_db,
    create_shop_db,
    simulated_until,
)

log = logging.getLogger(__name__)

FILE = "shop.sqlite"
ORDERS_PER_MIN = SESSIONS_PER_MIN * P_ADD_TO_CART * P_CART_VIEW * P_CHECKOUT * P_PAY
#: Share of orders refunded in normal times.
REFUND_SHARE = 0.01
#: Extra refunds during a checkout incident (charged twice), relative to the normal rate.
INCIDENT_EXTRA = 3.0
REASONS = ("damaged", "wrong_size", "late_delivery", "not_as_described", "changed_mind")
REASON_WEIGHTS = np.array([0.2, 0.3, 0.15, 0.15, 0.2])
CHARGED_TWICE = "charged_twice"
P_REJECT = 0.08
HOUR_S = 3600
BIN_S = 60
#: The database starts this long before the history window, so that the window's first days
#: pay out refunds requested before them, as every later day does.
LEAD_S = 4 * 24 * HOUR_S


def _text(seconds: np.ndarray) -> np.ndarray:
    """SQLite's timestamp text, `YYYY-MM-DD HH:MM:SS` (UTC)."""
    iso = np.datetime_as_string(seconds.astype("datetime64[s]"), unit="s")
    return np.char.replace(iso, "T", " ")


def _one(seconds: int) -> str:
    return str(_text(np.array([seconds]))[0])


def _spread(
    bins: np.ndarray, width: np.ndarray, counts: np.ndarray, rng: np.random.Generator
) -> np.ndarray:
    """A whole second in (bin, bin + width] for each of the counts of each bin."""
    back = np.floor(rng.random(int(counts.sum())) * np.repeat(width, counts)).astype(np.int64)
    out: np.ndarray = np.repeat(bins + width, counts) - back
    return out


def _arrivals(
    plan: Plan, start_s: int, end_s: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Refund requests in (start_s, end_s], in order: their second, and whether each is a
    double charge from a checkout incident."""
    bins = np.arange(start_s, end_s, BIN_S, dtype=np.int64)
    width = np.minimum(BIN_S, end_s - bins)
    mid_ms = (bins + width // 2) * 1000
    rate = ORDERS_PER_MIN * REFUND_SHARE * width / 60 * daily_factor(mid_ms) * weekly_factor(mid_ms)
    normal = _spread(bins, width, rng.poisson(rate), rng)
    extra = _spread(
        bins, width, rng.poisson(rate * INCIDENT_EXTRA * plan.incident_mask(mid_ms)), rng
    )
    at = np.concatenate([normal, extra])
    twice = np.r_[np.zeros(len(normal), bool), np.ones(len(extra), bool)]
    order = np.argsort(at, kind="stable")
    return at[order], twice[order]


def _delays(
    rng: np.random.Generator, twice: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Seconds to the decision, whether it is a rejection, seconds from it to the pay-out."""
    n = len(twice)
    decide = np.where(twice, rng.integers(600, HOUR_S, n), rng.integers(HOUR_S, 30 * HOUR_S, n))
    rejected = ~twice & (rng.random(n) < P_REJECT)
    pay = np.where(
        twice, rng.integers(6 * HOUR_S, 24 * HOUR_S, n), rng.integers(24 * HOUR_S, 72 * HOUR_S, n)
    )
    return decide, rejected, pay


def refunds(plan: Plan, start_s: int, end_s: int, first_id: int, seed: int) -> list[Refund]:
    """The refunds requested in (start_s, end_s], numbered from first_id; the same for the same
    window and seed."""
    rng = np.random.default_rng([seed, 0x5E0F, start_s])
    at, twice = _arrivals(plan, start_s, end_s, rng)
    n = len(at)
    if n == 0:
        return []
    decide, rejected, pay = _delays(rng, twice)
    reason = np.where(
        twice, CHARGED_TWICE, np.array(REASONS)[rng.choice(len(REASONS), n, p=REASON_WEIGHTS)]
    )
    amount = np.maximum(100, rng.lognormal(np.log(AVG_ORDER_MINOR), ORDER_SIGMA, n)).astype(
        np.int64
    )
    users, orders = rng.integers(0, SHOP_USERS, n), rng.integers(10**7, 10**8, n)
    created, decided, paid = _text(at), _text(at + decide), _text(at + decide + pay)
    return [
        Refund(first_id + i, f"order-{orders[i]}", f"u{users[i]}", int(amount[i]), "EUR",
               str(reason[i]), str(created[i]), str(decided[i]),
               "rejected" if rejected[i] else "approved", None if rejected[i] else str(paid[i]))
        for i in range(n)
    ]  # fmt: skip


class ShopDatabase:
    """The shop database in a data directory: `sync(now)` simulates it up to now."""

    def __init__(self, data_dir: Path, plan: Plan, seed: int) -> None:
        self.path = data_dir / FILE
        self._plan, self._seed = plan, seed

    def sync(self, now_ms: int, floor_ms: int) -> int:
        """Write the refunds requested since the last sync (the whole history the first time,
        never before `floor_ms`) and the changes due by now; returns how many are new."""
        now_s, floor_s = now_ms // 1000, floor_ms // 1000
        until, floor = _one(now_s), _one(floor_s)
        found = simulated_until(self.path)
        if found is None:
            start = max(self._plan.origin // 1000 - LEAD_S, floor_s)
            new = refunds(self._plan, start, now_s, 1, self._seed)
            self.path.parent.mkdir(parents=True, exist_ok=True)
            create_shop_db(self.path, new, until, floor)
            log.info("demo shop database: %d refunds in %s", len(new), self.path)
            return len(new)
        last_text, last_id = found
        last_s = int(np.datetime64(last_text.replace(" ", "T"), "s").astype(np.int64))
        if now_s <= last_s:
            return 0
        new = refunds(self._plan, max(last_s, floor_s), now_s, last_id + 1, self._seed)
        advance_shop_db(self.path, new, until, floor)
        return len(new)


def late_floor(now_ms: int, events_late_window_ms: int) -> int:
    """The oldest moment a refund row may carry: a day inside the events' late window, so the
    source's first run (or a run after a long stop) is not refused as too old."""
    return now_ms - events_late_window_ms + DAY_MS
