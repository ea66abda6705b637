"""Rows of the tokens table: a bearer token's scope and the hash of its secret."""

from __future__ import annotations

import enum
from dataclasses import dataclass


class Scope(enum.Enum):
    INGEST = "ingest"
    READ = "read"
    ADMIN = "admin"

    def allows(self, needed: Scope) -> bool:
        return self is Scope.ADMIN or self is needed


@dataclass(frozen=True, slots=True)
class TokenRecord:
    id: str
    name: str
    scope: Scope
    hash: str
    created_ms: int
