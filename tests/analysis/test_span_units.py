"""A span without a unit id inherits its trace's: from the trace's root span, else from the flag's
exposure that shares the trace id. How many spans reach an exposed unit is a data-quality figure."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from ramplight.analysis import service
from ramplight.store.duckdb import DuckDBStore
from tests.analysis.conftest import FLAG, T0, Evidence, make_flag, save_metrics


def _span(
    ev: Evidence, trace: str, span: str, parent: str | None, unit: str | None, at: Any, tokens: int
) -> None:
    ev.spans.append(
        {"trace_id": trace, "span_id": span, "parent_span_id": parent, "name": "chat" if parent else "conversation",
         "start_ts": at, "end_ts": at + timedelta(seconds=1), "duration_ms": 1000.0, "status": "ok",
         "environment": "production", "unit_id": unit, "output_tokens": tokens, "received_at": at}
    )  # fmt: skip


def test_spans_inherit_their_traces_unit_and_the_readout_says_how_many_joined(store: DuckDBStore) -> None:
    make_flag(store, candidate=50, at=T0)
    save_metrics(
        store,
        {
            "key": "tokens",
            "type": "span",
            "span_field": "output_tokens",
            "span_name": "chat",
            "aggregation": "sum",
        },
    )
    ev = Evidence()
    at = T0 + timedelta(hours=1)
    for unit, variation in (("u1", "control"), ("u2", "candidate"), ("u3", "control"), ("u4", "candidate")):
        ev.expose(unit, variation, at)
        ev.exposures[-1]["trace_id"] = f"x-{unit}"
    ev.exposures[1]["trace_id"] = "trace-2"  # the SDK put the span's trace id on u2's exposure
    _span(ev, "trace-5", "root-5", None, "u3", at, 0)
    _span(ev, "trace-5", "f", "root-5", None, at, 10)
    _span(ev, "x-u4", "g", "root-not-sent", None, at, 30)
    # u1: the unit is on the root span only; its two model calls inherit it.
    _span(ev, "trace-1", "root-1", None, "u1", at, 0)
    _span(ev, "trace-1", "a", "root-1", None, at, 100)
    _span(ev, "trace-1", "b", "root-1", None, at, 50)
    # u2: no span names a unit; the exposure with the same trace id does.
    _span(ev, "trace-2", "root-2", None, None, at, 0)
    _span(ev, "trace-2", "c", "root-2", None, at, 70)
    # A trace nobody can place, and a span of a unit that was never exposed.
    _span(ev, "trace-3", "d", None, None, at, 999)
    _span(ev, "trace-4", "e", None, "u9", at, 999)
    ev.load(store)

    report = service.report(store, FLAG, "production")
    tokens = {v["variation"]: v for v in report["metrics"][0]["variations"]}
    assert (tokens["control"]["units"], tokens["control"]["mean"]) == (2, (150 + 10) / 2)
    assert (tokens["candidate"]["units"], tokens["candidate"]["mean"]) == (2, (70 + 30) / 2)
    assert report["data_quality"]["spans"] == {
        "spans": 10,
        "spans_with_unit": 3,
        "spans_with_inherited_unit": 9,
        "spans_joined": 8,
    }
