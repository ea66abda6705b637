"""The alerts of a report's window, from the incident timelines in the state store (so they
are read as of the slot, across restarts): open at the slot, and resolved within the window."""

from __future__ import annotations

import json
from dataclasses import dataclass

from opsmetrics.storage.base import Storage

#: How far before the window an alert still open at the slot may have fired.
LOOKBACK_MS = 30 * 86_400_000


@dataclass(frozen=True, slots=True)
class AlertLine:
    name: str
    severity: str
    summary: str
    fired_ms: int
    resolved_ms: int | None  # None: still open at the slot

    @property
    def is_open(self) -> bool:
        return self.resolved_ms is None


def window_alerts(storage: Storage, start_ms: int, slot_ms: int) -> list[AlertLine]:
    """Alert instances open at the slot or resolved in [start, slot], newest first."""
    entries = storage.timeline_entries(("fired", "resolved"), start_ms - LOOKBACK_MS)
    fired: dict[tuple[str, int], AlertLine] = {}
    resolved: dict[tuple[str, int], int] = {}
    for e in entries:
        key = (e.fingerprint, e.started_ms)
        if e.kind == "fired" and e.at_ms <= slot_ms:
            detail = _detail(e.detail)
            fired[key] = AlertLine(
                str(detail.get("alertname") or "alert"), str(detail.get("severity") or ""),
                str(detail.get("summary") or ""), e.at_ms, None,
            )  # fmt: skip
        elif e.kind == "resolved" and e.at_ms <= slot_ms:
            resolved[key] = e.at_ms
    out = []
    for key, line in fired.items():
        ended = resolved.get(key)
        if ended is None:
            out.append(line)
        elif ended >= start_ms:
            out.append(AlertLine(line.name, line.severity, line.summary, line.fired_ms, ended))
    return sorted(out, key=lambda a: -a.fired_ms)


def _detail(text: str) -> dict[str, object]:
    try:
        found = json.loads(text)
    except ValueError:
        return {}
    return found if isinstance(found, dict) else {}
