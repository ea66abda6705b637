"""Rows of the tokens table: a bearer token's scope and the hash of its secret."""

from __future__ import annotations

import enum
from dataclasses import dataclass


class Scope(enum.Enum):
    INGEST = "ingest"
    READ = "read"
    ADMIN = "admin"
    #: A publishable key, safe in page source: only POST /api/v1/sdk/events, only from its
    #: origins, at its rate. No endpoint behind `require(...)` needs this scope, so it opens
    #: nothing else.
    EVENTS = "events"

    def allows(self, needed: Scope) -> bool:
        return self is Scope.ADMIN or self is needed


@dataclass(frozen=True, slots=True)
class TokenRecord:
    id: str
    name: str
    scope: Scope
    hash: str
    created_ms: int
    #: Publishable keys only: the page origins (`https://shop.example`) it is accepted from.
    origins: tuple[str, ...] = ()
    #: Publishable keys only: requests per minute per client address (a token bucket).
    rate_per_min: int | None = None

    @property
    def origins_column(self) -> str | None:
        """The origins as stored: space-separated (an origin has no spaces), NULL for none."""
        return " ".join(self.origins) or None


def origins_from_column(text: str | None) -> tuple[str, ...]:
    return tuple(text.split()) if text else ()
