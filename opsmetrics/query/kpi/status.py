"""Status and target attainment of a value, by the KPI's direction (docs/kpis.md)."""

from __future__ import annotations

from opsmetrics.catalog.kpi_model import Direction, Thresholds
from opsmetrics.query.kpi.model import Status


def status_of(
    value: float | None, target: float | None, thresholds: Thresholds, direction: Direction
) -> Status:
    """CRITICAL past `critical`, WARNING past `warning`, else OK; UNKNOWN without a value.

    higher_is_better: below the threshold; lower_is_better: above it; target_is_best: the
    thresholds are distances from the target (UNKNOWN without a target).
    """
    if value is None:
        return Status.UNKNOWN
    match direction:
        case Direction.HIGHER_IS_BETTER:
            measure, worse = -value, [_neg(thresholds.critical), _neg(thresholds.warning)]
        case Direction.LOWER_IS_BETTER:
            measure, worse = value, [thresholds.critical, thresholds.warning]
        case Direction.TARGET_IS_BEST:
            if target is None:
                return Status.UNKNOWN
            measure, worse = abs(value - target), [thresholds.critical, thresholds.warning]
    if worse[0] is not None and measure > worse[0]:
        return Status.CRITICAL
    if worse[1] is not None and measure > worse[1]:
        return Status.WARNING
    return Status.OK


def attainment_of(value: float | None, target: float | None, direction: Direction) -> float | None:
    """How much of the target is reached: value/target (higher is better), target/value
    (lower is better), 1 - |value - target|/|target| (target is best); None if undefined."""
    if value is None or target is None:
        return None
    match direction:
        case Direction.HIGHER_IS_BETTER:
            return value / target if target else None
        case Direction.LOWER_IS_BETTER:
            return target / value if value else None
        case Direction.TARGET_IS_BEST:
            return 1 - abs(value - target) / abs(target) if target else None


def change_of(value: float | None, compare: float | None) -> float | None:
    """value/compare - 1; None when either is missing or compare is 0."""
    if value is None or compare is None or compare == 0:
        return None
    return value / compare - 1


def _neg(x: float | None) -> float | None:
    return None if x is None else -x
