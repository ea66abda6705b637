"""The demo shop's own business database: a SQLite file `opsmetrics demo` keeps in its data
directory, which the demo's SQL source (demo/config/sources/shop.yaml) reads like any other.

The simulator (demo/shop_db.py) decides what happens; this module only holds the SQL, since
storage/ is the one place that does. A refund is requested, then approved or rejected, then
(approved) paid out; its row changes status and `updated_at` each time, as in a real shop
database, so the source's cursor moves. The schedule of those changes sits in a second table
the source does not read. Timestamps are SQLite's text, `YYYY-MM-DD HH:MM:SS`, whole seconds.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

SCHEMA = """
CREATE TABLE refunds (
    id INTEGER PRIMARY KEY,
    order_ref TEXT NOT NULL,
    customer_id TEXT NOT NULL,
    amount_cents INTEGER NOT NULL,
    currency TEXT NOT NULL,
    reason TEXT NOT NULL,
    status TEXT NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE INDEX refunds_updated_at ON refunds (updated_at);
CREATE TABLE refund_schedule (
    id INTEGER PRIMARY KEY REFERENCES refunds (id),
    decided_at TEXT NOT NULL,
    decision TEXT NOT NULL,
    paid_at TEXT
);
CREATE TABLE simulated_until (at TEXT NOT NULL);
"""

INSERT_REFUND = "INSERT INTO refunds VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
INSERT_SCHEDULE = "INSERT INTO refund_schedule VALUES (?, ?, ?, ?)"
#: The changes due by now: the decision, then the pay-out (both in one tick when both are due).
#: A change that fell due while the demo was stopped longer than the events' late window is
#: dated at the floor, so the source never reads a row the ingestor would refuse as too old.
DECIDE = """
UPDATE refunds SET status = s.decision, updated_at = max(s.decided_at, :floor)
FROM refund_schedule AS s
WHERE s.id = refunds.id AND refunds.status = 'requested' AND s.decided_at <= :until
"""
PAY_OUT = """
UPDATE refunds SET status = 'paid_out', updated_at = max(s.paid_at, :floor)
FROM refund_schedule AS s
WHERE s.id = refunds.id AND refunds.status = 'approved' AND s.paid_at <= :until
"""


@dataclass(frozen=True, slots=True)
class Refund:
    id: int
    order_ref: str
    customer_id: str
    amount_cents: int
    currency: str
    reason: str
    created_at: str
    decided_at: str
    #: "approved" or "rejected".
    decision: str
    #: When an approved refund is paid out; None for a rejected one.
    paid_at: str | None


@contextlib.contextmanager
def _open(path: Path) -> Iterator[sqlite3.Connection]:
    db = sqlite3.connect(path, isolation_level=None)
    try:
        yield db
    finally:
        db.close()


def _insert(db: sqlite3.Connection, refunds: Sequence[Refund]) -> None:
    db.executemany(
        INSERT_REFUND,
        [(r.id, r.order_ref, r.customer_id, r.amount_cents, r.currency, r.reason, "requested",
          r.created_at, r.created_at) for r in refunds],
    )  # fmt: skip
    db.executemany(INSERT_SCHEDULE, [(r.id, r.decided_at, r.decision, r.paid_at) for r in refunds])


def _apply(db: sqlite3.Connection, until: str, floor: str) -> None:
    db.execute(DECIDE, {"until": until, "floor": floor})
    db.execute(PAY_OUT, {"until": until, "floor": floor})
    db.execute("UPDATE simulated_until SET at = ?", (until,))


def create_shop_db(path: Path, refunds: Sequence[Refund], until: str, floor: str) -> None:
    """Write the database with its history up to `until`, under a temporary name first: a
    reader (or a restarted demo) never finds a half-written file."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.unlink(missing_ok=True)
    with _open(tmp) as db:
        db.executescript(SCHEMA)
        db.execute("BEGIN")
        db.execute("INSERT INTO simulated_until VALUES (?)", (until,))
        _insert(db, refunds)
        _apply(db, until, floor)
        db.execute("COMMIT")
    os.replace(tmp, path)


def simulated_until(path: Path) -> tuple[str, int] | None:
    """Up to when the database is simulated, and its highest refund id; None without a file."""
    if not path.is_file():
        return None
    with _open(path) as db:
        (until,) = db.execute("SELECT at FROM simulated_until").fetchone()
        (last_id,) = db.execute("SELECT coalesce(max(id), 0) FROM refunds").fetchone()
    return str(until), int(last_id)


def advance_shop_db(path: Path, refunds: Sequence[Refund], until: str, floor: str) -> None:
    """New refunds, and every decision and pay-out due by `until`, in one transaction."""
    with _open(path) as db:
        db.execute("BEGIN IMMEDIATE")
        _insert(db, refunds)
        _apply(db, until, floor)
        db.execute("COMMIT")
