"""A trace's span tree and critical path (analysis/waterfall.py), on hand-built traces, and the
same critical path as the store's recursive statement (`critical_path_query`) on DuckDB."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from ramplight.analysis import service as analysis
from ramplight.analysis.execute import fetch
from ramplight.analysis.sql import critical_path_query, trace_spans_query
from ramplight.analysis.waterfall import critical_path, span_tree
from ramplight.store.duckdb import DuckDBStore
from tests.analysis.conftest import FLAG, T0, Evidence, make_flag

T = datetime(2026, 11, 1, 12, tzinfo=UTC)


def span(span_id: str, parent: str | None, start: float, end: float, name: str = "") -> dict:
    return {"span_id": span_id, "parent_span_id": parent, "name": name or span_id,
            "start_ts": T + timedelta(milliseconds=start), "end_ts": T + timedelta(milliseconds=end),
            "status": "ok"}  # fmt: skip


TRACE = [
    span("root", None, 0, 1000),
    span("retrieve", "root", 10, 300),
    span("rerank", "retrieve", 20, 120),
    span("search", "retrieve", 15, 290),  # ends last under retrieve
    span("generate", "root", 310, 990),  # ends last under root
    span("tool", "generate", 320, 500),
    span("llm", "generate", 330, 980),
    span("llm2", "generate", 400, 980),  # ends with llm: the least span id wins (llm)
]


def test_the_critical_path_follows_the_child_that_ends_last() -> None:
    assert critical_path(TRACE) == ["root", "generate", "llm"]
    assert critical_path(list(reversed(TRACE))) == ["root", "generate", "llm"]  # order-free
    assert critical_path([]) == []


def test_the_tree_is_depth_first_by_start_with_offsets_from_the_trace_start() -> None:
    rows = span_tree(TRACE)
    assert [(r.span_id, r.depth) for r in rows] == [
        ("root", 0), ("retrieve", 1), ("search", 2), ("rerank", 2),
        ("generate", 1), ("tool", 2), ("llm", 2), ("llm2", 2),
    ]  # fmt: skip
    llm = next(r for r in rows if r.span_id == "llm")
    assert (llm.start_ms, llm.end_ms, llm.duration_ms, llm.on_critical_path) == (330, 980, 650, True)
    assert [r.span_id for r in rows if r.on_critical_path] == ["root", "generate", "llm"]


def test_every_root_starts_a_path_and_an_orphan_is_shown_at_the_top_but_starts_none() -> None:
    parts = [
        span("a", None, 0, 100), span("a1", "a", 5, 90),
        span("tool", None, 30, 60),  # exported apart: a second root
        span("b", "gone", 50, 400), span("c", "b", 60, 390),  # its parent never arrived
    ]  # fmt: skip
    assert critical_path(parts) == ["a", "a1", "tool"]
    assert [(r.span_id, r.depth) for r in span_tree(parts)] == [
        ("a", 0),
        ("a1", 1),
        ("tool", 0),
        ("b", 0),
        ("c", 1),
    ]


def test_it_agrees_with_the_stores_critical_path_statement(store: DuckDBStore) -> None:
    make_flag(store)
    ev = Evidence()
    ev.expose("u1", "candidate", T0)
    for s in TRACE:
        ev.spans.append(
            {
                "trace_id": "t1",
                "span_id": s["span_id"],
                "parent_span_id": s["parent_span_id"],
                "name": s["name"],
                "start_ts": T0 + (s["start_ts"] - T) + timedelta(seconds=1),
                "end_ts": T0 + (s["end_ts"] - T) + timedelta(seconds=1),
                "duration_ms": (s["end_ts"] - s["start_ts"]).total_seconds() * 1000,
                "status": "ok",
                "environment": "production",
                "unit_id": "u1" if s["parent_span_id"] is None else None,
                "received_at": T0,
            }
        )
    ev.load(store)
    spec, _ = analysis.spec_for(store, FLAG, "production", [])
    in_store = {row["name"] for row in fetch(store, critical_path_query(spec))}
    rows = fetch(store, trace_spans_query("production", ["t1"]))
    assert len(rows) == len(TRACE)
    assert in_store == set(critical_path(rows)) == {"root", "generate", "llm"}
