"""Silences, acknowledgements and inhibition, kept in memory and persisted in storage."""

from __future__ import annotations

import json
import threading
from collections.abc import Sequence
from typing import Any

from opsmetrics.alerting.model import Alert
from opsmetrics.alerting.silences import (
    Ack,
    Inhibitions,
    Silence,
    SilenceMatcher,
    new_silence_id,
)
from opsmetrics.catalog.notify import InhibitModel
from opsmetrics.errors import BadDataError, NotFoundError
from opsmetrics.storage.alert_records import AckRow, SilenceRow
from opsmetrics.storage.base import Storage


class Quieting:
    def __init__(self, storage: Storage, inhibit_rules: Sequence[InhibitModel]) -> None:
        self._storage = storage
        self._rules = tuple(inhibit_rules)
        self._lock = threading.Lock()
        self._silences = {row.id: _silence(row) for row in storage.silences()}
        self._acks = {r.fingerprint: Ack(r.fingerprint, r.by, r.comment, r.at_ms)
                      for r in storage.acks()}  # fmt: skip

    # --- silences -----------------------------------------------------------------------
    def put_silence(
        self,
        matchers: tuple[SilenceMatcher, ...],
        starts_ms: int,
        ends_ms: int,
        created_by: str,
        comment: str,
        now_ms: int,
        id: str | None = None,
    ) -> str:
        """Create a silence, or replace the one with `id`; returns its id."""
        if ends_ms <= starts_ms:
            raise BadDataError("endsAt: must be after startsAt")
        if ends_ms <= now_ms:
            raise BadDataError("endsAt: must be in the future")
        if id is not None and id not in self._silences:
            raise NotFoundError(f"silence {id!r} not found; omit id to create a new silence")
        silence = Silence(
            id or new_silence_id(), matchers, starts_ms, ends_ms, created_by, comment, now_ms
        )
        self._save(silence)
        return silence.id

    def expire_silence(self, id: str, now_ms: int) -> None:
        with self._lock:
            silence = self._silences.get(id)
        if silence is None:
            raise NotFoundError(f"silence {id!r} not found; list them with GET /api/v1/silences")
        if silence.state(now_ms) == "expired":
            return
        ends = max(now_ms, silence.starts_ms)
        self._save(
            Silence(id, silence.matchers, min(silence.starts_ms, ends), ends,
                    silence.created_by, silence.comment, now_ms)
        )  # fmt: skip

    def _save(self, silence: Silence) -> None:
        matchers = json.dumps([m.to_json() for m in silence.matchers])
        self._storage.save_silence(
            SilenceRow(silence.id, matchers, silence.starts_ms, silence.ends_ms,
                       silence.created_by, silence.comment, silence.updated_ms)
        )  # fmt: skip
        with self._lock:
            self._silences[silence.id] = silence

    def silences(self) -> list[Silence]:
        with self._lock:
            return sorted(self._silences.values(), key=lambda s: (s.starts_ms, s.id))

    def forget_ended(self, before_ms: int) -> None:
        """Drop silences that ended before then from memory (storage prunes its own)."""
        with self._lock:
            for id in [i for i, s in self._silences.items() if s.ends_ms < before_ms]:
                del self._silences[id]

    def silenced_by(self, alert: Alert, now_ms: int) -> list[str]:
        return [s.id for s in self.silences() if s.silences(alert.labels, now_ms)]

    # --- acknowledgements ---------------------------------------------------------------
    def ack(self, fingerprint: str, by: str, comment: str, now_ms: int) -> None:
        self._storage.save_ack(AckRow(fingerprint, by, comment, now_ms))
        with self._lock:
            self._acks[fingerprint] = Ack(fingerprint, by, comment, now_ms)

    def drop_ack(self, fingerprint: str) -> None:
        with self._lock:
            had = self._acks.pop(fingerprint, None)
        if had is not None:
            self._storage.delete_ack(fingerprint)

    def is_acked(self, fingerprint: str) -> bool:
        with self._lock:
            return fingerprint in self._acks

    # --- together -----------------------------------------------------------------------
    def inhibitions(self, firing: Sequence[Alert]) -> Inhibitions:
        return Inhibitions(self._rules, firing)

    def is_quiet(self, alert: Alert, inhibitions: Inhibitions, now_ms: int) -> bool:
        """Silenced or inhibited (acknowledged alerts still notify; they only stop repeats)."""
        return bool(self.silenced_by(alert, now_ms) or inhibitions.inhibited_by(alert))

    def status(self, alert: Alert, inhibitions: Inhibitions, now_ms: int) -> dict[str, Any]:
        with self._lock:
            ack = self._acks.get(alert.fingerprint)
        return {
            "acknowledged": ack is not None,
            "acknowledgedBy": ack.by if ack else None,
            "acknowledgedAt": ack.at_ms if ack else None,
            "silencedBy": self.silenced_by(alert, now_ms),
            "inhibitedBy": inhibitions.inhibited_by(alert),
        }


def _silence(row: SilenceRow) -> Silence:
    matchers = tuple(
        SilenceMatcher(m["name"], m["value"], bool(m["isRegex"]), bool(m.get("isEqual", True)))
        for m in json.loads(row.matchers)
    )
    return Silence(row.id, matchers, row.starts_ms, row.ends_ms, row.created_by, row.comment,
                   row.updated_ms)  # fmt: skip
