"""Owners' review cycles: from each KPI's `owner` and `cadence`, the review list as of an
instant (docs/reviews.md).

A KPI falls due one cadence period (a day, a week, a calendar month or quarter) after its last
review; a KPI never reviewed counts from its first recorded definition version. It is
*overdue* once that moment has passed, *due* in the last stretch before it (a quarter of the
period, at most a day) or when it was never reviewed, and *reviewed* otherwise. The list holds
the KPIs that need their owner: due or overdue, off target (the KPI pages' evaluation: status
past a threshold, or the value on the wrong side of its target), or with no owner at all.
"""

from __future__ import annotations

import enum
import math
import secrets
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from opsmetrics.alerting.notifiers.base import rfc3339
from opsmetrics.catalog.kpi_model import Cadence, Direction, KpiDefinition, Unit
from opsmetrics.errors import BadDataError, OpsMetricsError
from opsmetrics.query.kpi import KpiEvaluator, KpiPoint, Status
from opsmetrics.reports.tables import ReportTable
from opsmetrics.storage.base import StateStore
from opsmetrics.storage.review_records import KpiReview

DAY_MS = 86_400_000
HOUR_MS = 3_600_000
#: The owner group of KPIs that have none.
NO_OWNER = "(no owner)"
#: How many reviews GET /api/v1/kpis/{name}/reviews returns, newest first.
HISTORY_LIMIT = 50
MAX_NOTE_CHARS = 2000
MAX_AUTHOR_CHARS = 200
_MONTHS = {Cadence.MONTHLY: 1, Cadence.QUARTERLY: 3}
_DAYS = {Cadence.DAILY: 1, Cadence.WEEKLY: 7}
_BAD = (Status.WARNING, Status.CRITICAL)

#: What people write as `owner:` (which must not be empty) when a KPI has nobody.
PLACEHOLDER_OWNERS = frozenset(
    {"-", "?", "n/a", "na", "none", "nobody", "tbd", "todo", "unassigned", "unknown"}
)

#: The current point of a KPI (None when it cannot be evaluated).
PointSource = Callable[[str], KpiPoint | None]


class ReviewState(enum.Enum):
    REVIEWED = "reviewed"
    DUE = "due"
    OVERDUE = "overdue"


@dataclass(frozen=True, slots=True)
class ReviewItem:
    """One KPI's review standing at `now_ms`."""

    kpi: KpiDefinition
    state: ReviewState
    last: KpiReview | None
    #: When the next review falls due; None for a KPI never reviewed with no recorded version.
    due_ms: int | None
    #: How long past due_ms (0 unless overdue).
    overdue_ms: int
    point: KpiPoint | None
    #: The definition version now; a review of an older one is flagged.
    version: int | None
    #: The instant the standing is for.
    as_of_ms: int

    @property
    def off_target(self) -> bool | None:
        return off_target(self.point, self.kpi.direction)

    @property
    def changed_since_review(self) -> bool:
        last = self.last
        return bool(last and last.version and self.version and self.version > last.version)

    @property
    def flags(self) -> list[str]:
        found = [] if self.state is ReviewState.REVIEWED else [self.state.value]
        found += ["never reviewed"] if self.last is None else []
        found += ["off target"] if self.off_target else []
        found += [] if has_owner(self.kpi) else ["no owner"]
        found += ["changed since review"] if self.changed_since_review else []
        return found

    @property
    def needs_attention(self) -> bool:
        attention = self.state is not ReviewState.REVIEWED or bool(self.off_target)
        return attention or not has_owner(self.kpi)


def has_owner(kpi: KpiDefinition) -> bool:
    return kpi.owner.strip().lower() not in PLACEHOLDER_OWNERS | {""}


def off_target(point: KpiPoint | None, direction: Direction) -> bool | None:
    """Status past a threshold, or the value on the wrong side of its target; None without a
    value (a target-is-best KPI is judged by its thresholds, which are distances)."""
    if point is None or point.value is None:
        return None
    if point.status in _BAD:
        return True
    if point.target is None or direction is Direction.TARGET_IS_BEST:
        return False
    if direction is Direction.HIGHER_IS_BETTER:
        return point.value < point.target
    return point.value > point.target


def due_after(start_ms: int, cadence: Cadence, tz: str = "UTC") -> int:
    """One cadence period after `start_ms`, by the wall clock of `tz` (a month is a calendar
    month: 31 January + 1 month is the end of February)."""
    zone = ZoneInfo(tz)
    local = datetime.fromtimestamp(start_ms / 1000, zone)
    if cadence in _DAYS:
        later = local + timedelta(days=_DAYS[cadence])
    else:
        later = _add_months(local, _MONTHS[cadence])
    return round(later.replace(tzinfo=zone).timestamp() * 1000)


def _add_months(local: datetime, months: int) -> datetime:
    month0 = local.month - 1 + months
    year, month = local.year + month0 // 12, month0 % 12 + 1
    for day in range(local.day, 27, -1):  # clamp 29–31 to the month's last day
        try:
            return local.replace(year=year, month=month, day=day)
        except ValueError:
            continue
    return local.replace(year=year, month=month)


def review_item(
    kpi: KpiDefinition,
    last: KpiReview | None,
    since_ms: int | None,
    point: KpiPoint | None,
    now_ms: int,
    version: int | None = None,
) -> ReviewItem:
    """`since_ms`: when the KPI's first version was recorded (the start for one never
    reviewed)."""
    base = last.reviewed_ms if last is not None else since_ms
    if base is None:
        return ReviewItem(kpi, ReviewState.DUE, last, None, 0, point, version, now_ms)
    due = due_after(base, kpi.cadence)
    lead = min(DAY_MS, (due - base) // 4)
    if now_ms >= due:
        state = ReviewState.OVERDUE
    elif last is None or due - now_ms <= lead:
        state = ReviewState.DUE
    else:
        state = ReviewState.REVIEWED
    overdue = now_ms - due if state is ReviewState.OVERDUE else 0
    return ReviewItem(kpi, state, last, due, overdue, point, version, now_ms)


def review_items(
    kpis: Iterable[KpiDefinition], store: StateStore, points: PointSource, now_ms: int
) -> list[ReviewItem]:
    """Every KPI's review standing, in catalog order."""
    kpis = list(kpis)
    latest = store.latest_reviews([k.name for k in kpis])
    items = []
    for kpi in kpis:
        versions = store.kpi_versions(kpi.name)
        since = versions[0].recorded_ms if versions else None
        version = versions[-1].version if versions else None
        items.append(
            review_item(kpi, latest.get(kpi.name), since, points(kpi.name), now_ms, version)
        )
    return items


def evaluator_points(evaluator: KpiEvaluator) -> PointSource:
    """Current points from an evaluator; a KPI that cannot be evaluated has none."""

    def point(name: str) -> KpiPoint | None:
        try:
            return evaluator.current(name)
        except OpsMetricsError:
            return None

    return point


def by_owner(items: Iterable[ReviewItem], owner: str | None = None) -> dict[str, list[ReviewItem]]:
    """The review list: items that need attention grouped by owner (sorted; NO_OWNER last),
    overdue first and longest overdue first; only `owner`'s when given."""
    groups: dict[str, list[ReviewItem]] = {}
    for item in items:
        name = item.kpi.owner if has_owner(item.kpi) else NO_OWNER
        if item.needs_attention and (owner is None or name == owner):
            groups.setdefault(name, []).append(item)
    order = sorted(groups, key=lambda o: (o == NO_OWNER, o))
    return {o: sorted(groups[o], key=_urgency) for o in order}


def _urgency(item: ReviewItem) -> tuple[int, int, str]:
    rank = {ReviewState.OVERDUE: 0, ReviewState.DUE: 1, ReviewState.REVIEWED: 2}[item.state]
    return rank, -item.overdue_ms, item.kpi.name


# --- new reviews ------------------------------------------------------------------------
def new_review(
    kpi: KpiDefinition,
    author: str,
    note: str,
    point: KpiPoint | None,
    version: int | None,
    now_ms: int,
) -> KpiReview:
    """A review to store; BadDataError naming the field when author or note is unusable."""
    author, note = author.strip(), note.strip()
    if not author:
        raise BadDataError('author: must not be empty; say who reviewed the KPI ("ana")')
    if len(author) > MAX_AUTHOR_CHARS:
        raise BadDataError(f"author: {len(author)} characters; use at most {MAX_AUTHOR_CHARS}")
    for name, text in (("author", author), ("note", note)):
        if "\x00" in text:  # PostgreSQL text cannot hold it
            raise BadDataError(f"{name}: contains a NUL character (\\u0000); remove it")
    if len(note) > MAX_NOTE_CHARS:
        raise BadDataError(
            f"note: {len(note)} characters; keep it under {MAX_NOTE_CHARS} (link to a document)"
        )
    status = point.status.value if point is not None else Status.UNKNOWN.value
    value = point.value if point is not None else None
    value = value if value is None or math.isfinite(value) else None
    review_id = f"{now_ms:013d}-{secrets.token_hex(4)}"
    return KpiReview(review_id, kpi.name, now_ms, author, note, version, status, value)


# --- text -------------------------------------------------------------------------------
def standing_text(item: ReviewItem) -> str:
    """ "overdue by 2 days", "due in 5 h", "due now (never reviewed)", "reviewed"."""
    if item.state is ReviewState.OVERDUE:
        return f"overdue by {human_duration(item.overdue_ms)}"
    if item.state is ReviewState.DUE:
        if item.due_ms is None or item.last is None:
            return "due now (never reviewed)"
        return f"due in {human_duration(item.due_ms - item.as_of_ms)}"
    return "reviewed"


def human_duration(ms: int) -> str:
    """ "3 days", "1 day 4 h", "5 h", "12 min": plain words for reports."""
    days, hours, minutes = ms // DAY_MS, ms % DAY_MS // HOUR_MS, ms % HOUR_MS // 60_000
    if days:
        unit = "day" if days == 1 else "days"
        return f"{days} {unit} {hours} h" if hours and days < 3 else f"{days} {unit}"
    if hours:
        return f"{hours} h {minutes} min" if minutes and hours < 3 else f"{hours} h"
    return f"{max(1, minutes)} min"


def value_text(kpi: KpiDefinition, value: float | None) -> str:
    if value is None or not math.isfinite(value):
        return "no value"
    if kpi.unit is Unit.PERCENT:
        return f"{value * 100:.3g} %"
    suffix = "" if kpi.unit in (Unit.COUNT, Unit.RATIO, Unit.SCORE) else f" {kpi.unit.value}"
    return f"{value:,.4g}{suffix}"


def point_text(item: ReviewItem) -> str:
    p = item.point
    if p is None or p.value is None:
        return "no value"
    target = f" vs target {value_text(item.kpi, p.target)}" if p.target is not None else ""
    return f"{value_text(item.kpi, p.value)}{target} ({p.status.value})"


def last_review_text(item: ReviewItem) -> str:
    last = item.last
    if last is None:
        return "never"
    day = datetime.fromtimestamp(last.reviewed_ms / 1000, ZoneInfo("UTC")).strftime("%Y-%m-%d")
    note = f": {last.note}" if last.note else ""
    return f"{day} by {last.author}{note}"


def todo_text(item: ReviewItem) -> str:
    """What the owner should do about the item, in one sentence."""
    kpi = item.kpi
    if not has_owner(kpi):
        return f"Set `owner:` of {kpi.name} ({kpi.source}) to a team or person who reviews it."
    if item.off_target:
        return f"Look at why {kpi.title or kpi.name} is off target, then mark it reviewed."
    if item.changed_since_review:
        return "Its definition changed since the last review: check it, then mark it reviewed."
    return f"Review {kpi.title or kpi.name} and mark it reviewed."


# --- a report section -------------------------------------------------------------------
REVIEW_COLUMNS = ("KPI", "Owner", "Review", "Last review", "Now", "To do")


def review_table(items: Iterable[ReviewItem], owner: str | None = None) -> ReportTable:
    """The review list as a report table: every owner's items, or only `owner`'s (for a
    report with `audience: owner`)."""
    groups = by_owner(items, owner)
    rows: list[tuple[str, ...]] = [
        (
            i.kpi.title or i.kpi.name, group, standing_text(i), last_review_text(i),
            point_text(i), todo_text(i),
        )
        for group, listed in groups.items()
        for i in listed
    ]  # fmt: skip
    whose = f" of {owner}" if owner else ""
    return ReportTable(
        title=f"KPIs to review{whose}",
        columns=REVIEW_COLUMNS,
        rows=rows,
        note="Mark a KPI reviewed on its page, with `opsmetrics kpi review NAME`, or with "
        "POST /api/v1/kpis/NAME/reviews.",
        empty=f"Every KPI{whose} was reviewed within its cadence and is on target.",
    )


# --- JSON -------------------------------------------------------------------------------
def review_json(review: KpiReview) -> dict[str, object]:
    return {
        "id": review.id,
        "kpi": review.kpi,
        "reviewed": rfc3339(review.reviewed_ms),
        "reviewed_ms": review.reviewed_ms,
        "author": review.author,
        "note": review.note,
        "version": review.version,
        "status": review.status,
        "value": review.value,
    }


def item_json(item: ReviewItem) -> dict[str, object]:
    p = item.point
    value = p.value if p is not None and p.value is not None and math.isfinite(p.value) else None
    return {
        "kpi": item.kpi.name,
        "title": item.kpi.title,
        "owner": item.kpi.owner,
        "cadence": item.kpi.cadence.value,
        "state": item.state.value,
        "standing": standing_text(item),
        "due": rfc3339(item.due_ms) if item.due_ms is not None else None,
        "overdue_seconds": item.overdue_ms / 1000,
        "last_review": review_json(item.last) if item.last is not None else None,
        "value": value,
        "target": p.target if p is not None else None,
        "status": p.status.value if p is not None else Status.UNKNOWN.value,
        "off_target": item.off_target,
        "version": item.version,
        "flags": item.flags,
        "todo": todo_text(item),
    }


def review_list_json(items: list[ReviewItem], owner: str | None, now_ms: int) -> dict[str, object]:
    groups = by_owner(items, owner)
    return {
        "as_of": rfc3339(now_ms),
        "owners": [
            {"owner": o, "kpis": [item_json(i) for i in listed]} for o, listed in groups.items()
        ],
    }
