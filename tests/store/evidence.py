"""Factories for evidence as ingestion stores it: validated contract items."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import msgspec

from ramplight.core.contract import FlagFacts, Item, validate_batch
from tests.core.builders import exposure_doc

NOW = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
FLAGS = {"checkout_copy": FlagFacts("user", frozenset({"control", "candidate", "fallback"}))}


def accepted(kind: str, *docs: dict[str, Any]) -> list[Item]:
    """Raw contract items through validation (event ids, environment, received_at stamped)."""
    batch = validate_batch({kind: [msgspec.json.encode(d) for d in docs]}, "production", FLAGS, NOW)
    assert batch.problems == (), batch.problems
    return batch.accepted[kind]


def exposures(*unit_ids: str, **fields: Any) -> list[Item]:
    return accepted("exposures", *(exposure_doc(unit_id=u, **fields) for u in unit_ids))
