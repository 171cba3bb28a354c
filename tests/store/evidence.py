"""Factories for evidence as ingestion stores it: validated contract items."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
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


def spans(*names: str, trace_id: str = "5b8efff798038103d269b633813fc60c") -> list[Item]:
    """Spans as OTLP intake accepts them (identity from trace id + span id), one per name."""
    from ramplight.core.otlp import Span, accept_spans

    start = NOW - timedelta(minutes=5)
    decoded = [
        Span(trace_id=trace_id, span_id=f"{i + 1:016x}", name=name, start_ts=start, end_ts=start + timedelta(seconds=1),
             duration_ms=1000.0, unit_id="user-1", output_tokens=10 * (i + 1), attributes={"gen_ai.operation.name": "chat"})
        for i, name in enumerate(names)
    ]  # fmt: skip
    return accepted_spans(accept_spans(decoded, "production", NOW))


def accepted_spans(batch: Any) -> list[Item]:
    items: list[Item] = batch.accepted["spans"]
    return items
