"""Improvement initiatives created through the API (catalog/initiatives.py defines their
fields; files in config/initiatives/ are not stored), and the store protocol that holds them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True, slots=True)
class InitiativeRecord:
    name: str
    definition: str  # the initiative as a JSON object
    created_ms: int
    created_by: str  # the token's name


class InitiativeStore(Protocol):
    """Part of the StateStore (storage/base.py): both state backends hold initiatives."""

    def save_initiative(self, record: InitiativeRecord) -> bool:
        """Store it; False (and nothing written) if an initiative of that name is stored."""
        ...

    def initiatives(self) -> list[InitiativeRecord]:
        """Every stored initiative, by name."""
        ...
