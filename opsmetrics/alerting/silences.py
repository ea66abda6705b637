"""Silences (Alertmanager v2 shape), acknowledgements and inhibition: who keeps an alert quiet."""

from __future__ import annotations

import re
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from opsmetrics.alerting.model import Alert
from opsmetrics.catalog.notify import InhibitModel
from opsmetrics.errors import BadDataError
from opsmetrics.model import Labels, Matcher


@dataclass(frozen=True, slots=True)
class SilenceMatcher:
    name: str
    value: str
    is_regex: bool = False
    is_equal: bool = True

    def matcher(self) -> Matcher:
        op = (
            ("=~" if self.is_equal else "!~") if self.is_regex else ("=" if self.is_equal else "!=")
        )
        return Matcher.of(self.name, op, self.value)

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "value": self.value,
            "isRegex": self.is_regex,
            "isEqual": self.is_equal,
        }


@dataclass(frozen=True, slots=True)
class Silence:
    id: str
    matchers: tuple[SilenceMatcher, ...]
    starts_ms: int
    ends_ms: int
    created_by: str
    comment: str
    updated_ms: int

    def state(self, now_ms: int) -> str:
        if now_ms < self.starts_ms:
            return "pending"
        return "active" if now_ms < self.ends_ms else "expired"

    def silences(self, labels: Labels, now_ms: int) -> bool:
        if self.state(now_ms) != "active":
            return False
        values = dict(labels)
        return all(m.matcher().matches(values.get(m.name, "")) for m in self.matchers)


def new_silence_id() -> str:
    return secrets.token_hex(8)


def parse_matchers(raw: Any) -> tuple[SilenceMatcher, ...]:
    """Alertmanager v2 matchers: [{name, value, isRegex, isEqual?}] → matchers, or BadDataError."""
    if not isinstance(raw, list) or not raw:
        raise BadDataError("matchers: give a non-empty list of {name, value, isRegex, isEqual}")
    out = []
    for i, item in enumerate(raw):
        if not isinstance(item, dict) or not isinstance(item.get("name"), str) or not item["name"]:
            raise BadDataError(f"matchers[{i}].name: a label name is required")
        value = item.get("value")
        if not isinstance(value, str):
            raise BadDataError(f"matchers[{i}].value: a string is required")
        is_regex = bool(item.get("isRegex", False))
        if is_regex:
            try:
                re.compile(value)
            except re.error as exc:
                raise BadDataError(
                    f"matchers[{i}].value: invalid regular expression: {exc}"
                ) from None
        out.append(SilenceMatcher(item["name"], value, is_regex, bool(item.get("isEqual", True))))
    if all(m.matcher().matches("") for m in out):
        raise BadDataError("matchers: at least one matcher must not match the empty string")
    return tuple(out)


@dataclass(frozen=True, slots=True)
class Ack:
    fingerprint: str
    by: str
    comment: str
    at_ms: int


class Inhibitions:
    """Which firing alerts inhibit which: built once per tick, O(1) per alert asked about."""

    def __init__(self, rules: Sequence[InhibitModel], firing: Sequence[Alert]) -> None:
        self._rules = tuple(rules)
        self._sources: list[dict[tuple[str, ...], list[str]]] = []
        for rule in self._rules:
            index: dict[tuple[str, ...], list[str]] = {}
            if rule.source_match or rule.equal or rule.target_match:
                for source in firing:
                    labels = dict(source.labels)
                    if _all_match(rule.source_match, labels):
                        key = tuple(labels.get(n, "") for n in rule.equal)
                        index.setdefault(key, []).append(source.fingerprint)
            self._sources.append(index)

    def inhibited_by(self, alert: Alert) -> list[str]:
        """Fingerprints of firing alerts that inhibit `alert` under any rule."""
        if not self._rules:
            return []
        target = dict(alert.labels)
        out: set[str] = set()
        for rule, index in zip(self._rules, self._sources, strict=True):
            if _all_match(rule.target_match, target):
                key = tuple(target.get(n, "") for n in rule.equal)
                out.update(fp for fp in index.get(key, ()) if fp != alert.fingerprint)
        return sorted(out)


def _all_match(match: dict[str, str], labels: dict[str, str]) -> bool:
    return all(labels.get(k, "") == v for k, v in match.items())
