"""A real DuckDB store with a flag whose release history (phases) is set by an injected clock."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from ramplight import control
from ramplight.store.base import SqlSandbox
from ramplight.store.duckdb import DuckDBStore
from tests.factories import flag_doc

T0 = datetime(2026, 11, 1, tzinfo=UTC)
FLAG = "support_assistant_profile"


@dataclass
class Evidence:
    """Rows to insert in bulk: append dicts, then `load(store)`."""

    exposures: list[dict[str, Any]] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)
    evals: list[dict[str, Any]] = field(default_factory=list)
    spans: list[dict[str, Any]] = field(default_factory=list)

    def expose(
        self,
        unit: str,
        variation: str,
        at: datetime,
        served: str | None = None,
        reason: str | None = None,
        **attrs: Any,
    ) -> None:
        self.exposures.append(
            {
                "event_id": f"x{len(self.exposures)}",
                "ts": at,
                "received_at": at,
                "environment": "production",
                "flag_key": FLAG,
                "assignment_unit": "conversation",
                "unit_id": unit,
                "assigned_variation": variation,
                "served_variation": served or variation,
                "fallback_reason": "timeout" if served and served != variation else None,
                "evaluation_reason": reason,
                "attributes": json.dumps(attrs) if attrs else None,
            }
        )

    def event(
        self, unit: str, name: str, at: datetime, value: float | None = None, **properties: Any
    ) -> None:
        self.events.append(
            {
                "event_id": f"e{len(self.events)}",
                "ts": at,
                "received_at": at,
                "environment": "production",
                "name": name,
                "unit_id": unit,
                "assignment_unit": "conversation",
                "value": value,
                "properties": json.dumps(properties) if properties else None,
            }
        )

    def score(
        self,
        unit: str | None,
        name: str,
        at: datetime,
        score: float,
        evaluator: str = "llm_judge",
        **extra: Any,
    ) -> None:
        self.evals.append(
            {
                "event_id": f"v{len(self.evals)}",
                "ts": at,
                "received_at": at,
                "environment": "production",
                "unit_id": unit,
                "name": name,
                "score": score,
                "evaluator": evaluator,
                **extra,
            }
        )

    def span(
        self,
        unit: str | None,
        at: datetime,
        duration_ms: float,
        status: str = "ok",
        name: str = "llm.call",
        **extra: Any,
    ) -> None:
        self.spans.append(
            {
                "trace_id": f"t{len(self.spans)}",
                "span_id": f"s{len(self.spans)}",
                "name": name,
                "start_ts": at,
                "end_ts": at + timedelta(milliseconds=duration_ms),
                "duration_ms": duration_ms,
                "status": status,
                "environment": "production",
                "unit_id": unit,
                "received_at": at,
                **extra,
            }
        )

    def load(self, store: DuckDBStore) -> None:
        con = store.connection()
        for table in ("exposures", "events", "evals", "spans"):
            rows = getattr(self, table)
            if rows:
                # Registered by name: the locked-down engine does no replacement scans.
                con.register("frame", pd.DataFrame(rows))
                con.execute(f"INSERT INTO {table} BY NAME SELECT * FROM frame")
                con.unregister("frame")


@pytest.fixture
def store(tmp_path: Path) -> Iterator[DuckDBStore]:
    # `tickets` stands for a team's own table, which the operator lets SQL metrics read.
    opened = DuckDBStore(tmp_path / "analysis.duckdb", sandbox=SqlSandbox(tables=frozenset({"tickets"})))
    control.ensure_default_environments(opened, clock=lambda: T0 - timedelta(days=30))
    yield opened
    opened.close()


def make_flag(store: DuckDBStore, candidate: float = 50, at: datetime = T0) -> None:
    doc = flag_doc(
        environments={
            "production": {
                "default_variation": "control",
                "off_variation": "control",
                "rollout": {"weights": {"control": 100 - candidate, "candidate": candidate}},
            }
        }
    )
    control.create_flag(store, doc, "test", clock=lambda: at)


def save_metrics(store: DuckDBStore, *docs: dict[str, Any]) -> None:
    control.apply_metrics(store, docs)
