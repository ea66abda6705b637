"""One line of the hygiene report: what was found, on what, and the fix to make."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Finding:
    #: alert | kpi | source
    area: str
    #: flapping | noisy | resolved_unseen | never_acknowledged | slow_ack | never_reviewed |
    #: overdue_review | unused | silent_events | silent_metric
    kind: str
    #: The alert name, KPI name, event name or metric name.
    subject: str
    #: What was measured, in one sentence.
    detail: str
    #: The fix to make, in one sentence.
    fix: str

    def to_json(self) -> dict[str, str]:
        return {
            "area": self.area,
            "kind": self.kind,
            "subject": self.subject,
            "detail": self.detail,
            "fix": self.fix,
        }
