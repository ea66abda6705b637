"""The events a KPI evaluation left out, and why: `meta.excluded` of the KPI API.

Each event formula of a KPI (its leaves: a library KPI has several) asks storage which events
in scope (the event's name, the periods evaluated) it left out and why (exclusion_records.py).
A KPI's report is one entry per event name; where several parts of a formula read the same
event (`nps`: promoters, detractors, responses) their counts overlap, so an entry keeps the
largest count of any part for each reason and field, not the sum.

A missing property or a wrong type is a problem with the data; a row outside a filter is the
filter doing its job. `total` and the warnings count the first two only; `outside_filter` is
reported beside them. A period whose every in-scope event was left out for a data problem has
no value (`note` says why) rather than a count of 0.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from opsmetrics.storage.exclusion_records import ExclusionBucket, ExclusionCheck, Reason

#: Reasons that mean the data does not fit the definition (warned about; no value when all).
PROBLEMS = (Reason.MISSING_PROPERTY, Reason.WRONG_TYPE)
Key = tuple[Reason, str]  # (reason, field)


@dataclass(frozen=True, slots=True)
class InputExclusions:
    """One event's in-scope events (`of`), those left out for a data problem (`total`), and
    those left out per (reason, field)."""

    event: str
    of: int
    total: int
    counts: tuple[tuple[Key, int], ...]

    def by_reason(self, reason: Reason) -> dict[str, int]:
        return {f: n for (r, f), n in self.counts if r is reason and n}

    def warning(self) -> str | None:
        """ "12 of 40 nps_response events excluded: 12 without props.score"."""
        if not self.total:
            return None
        missing = self.by_reason(Reason.MISSING_PROPERTY).items()
        parts = [f"{n} without {f}" for f, n in missing]
        wrong = self.by_reason(Reason.WRONG_TYPE).items()
        parts += [f"{n} with {f} not a number" for f, n in wrong]
        return f"{self.total} of {self.of} {self.event} events excluded: {', '.join(parts)}"


@dataclass(frozen=True, slots=True)
class Excluded:
    """What one evaluation left out, one entry per event name (sorted)."""

    inputs: tuple[InputExclusions, ...] = ()

    @property
    def total(self) -> int:
        return sum(i.total for i in self.inputs)

    @property
    def of(self) -> int:
        return sum(i.of for i in self.inputs)

    def by_reason(self, reason: Reason) -> dict[str, int]:
        out: dict[str, int] = {}
        for i in self.inputs:
            for f, n in i.by_reason(reason).items():
                out[f] = out.get(f, 0) + n
        return out

    def warnings(self) -> list[str]:
        return [w for i in self.inputs if (w := i.warning()) is not None]


#: An evaluation that left nothing out.
NOTHING = Excluded()


def of_buckets(
    event: str, checks: tuple[ExclusionCheck, ...], buckets: Iterable[ExclusionBucket]
) -> InputExclusions:
    """One event formula's buckets summed over periods and groups."""
    of = 0
    counts: dict[Key, int] = {}
    for b in buckets:
        of += b.rows
        for c, n in zip(checks, b.excluded, strict=True):
            counts[(c.reason, c.field)] = counts.get((c.reason, c.field), 0) + n
    total = sum(n for (reason, _), n in counts.items() if reason in PROBLEMS)
    return InputExclusions(event, of, total, tuple(counts.items()))


def merged(*groups: Iterable[InputExclusions]) -> tuple[InputExclusions, ...]:
    """Entries of several parts of a formula, one per event: the largest count of each."""
    by_event: dict[str, InputExclusions] = {}
    for entry in (e for g in groups for e in g):
        seen = by_event.get(entry.event)
        by_event[entry.event] = entry if seen is None else _larger(seen, entry)
    return tuple(by_event[name] for name in sorted(by_event))


def _larger(a: InputExclusions, b: InputExclusions) -> InputExclusions:
    counts = dict(a.counts)
    for key, n in b.counts:
        counts[key] = max(counts.get(key, 0), n)
    total = max(a.total, b.total)
    return InputExclusions(a.event, max(a.of, b.of), total, tuple(counts.items()))


def unusable(checks: tuple[ExclusionCheck, ...], bucket: ExclusionBucket) -> bool:
    """Every in-scope event of the bucket was left out for a data problem."""
    problems = sum(n for c, n in zip(checks, bucket.excluded, strict=True) if c.reason in PROBLEMS)
    return bucket.rows > 0 and problems == bucket.rows


def note(event: str, checks: tuple[ExclusionCheck, ...], bucket: ExclusionBucket) -> str:
    """Why a period has no value: "no value: all 40 nps_response events lack props.score"."""
    fields = sorted({c.field for c, n in zip(checks, bucket.excluded, strict=True) if n})
    return (
        f"no value: all {bucket.rows} {event} events in the period were excluded "
        f"(missing or non-numeric {', '.join(fields)})"
    )
