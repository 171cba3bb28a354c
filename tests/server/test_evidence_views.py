"""The eval/trace view models and the waterfall chart: intervals, the critical path marked, text."""

from __future__ import annotations

import math
import xml.etree.ElementTree as ET
from datetime import UTC, datetime, timedelta

import pytest

from ramplight.analysis.waterfall import span_tree
from ramplight.server import charts, room

NS = {"s": charts.SVG_NS}
T = datetime(2026, 11, 1, tzinfo=UTC)


def test_the_waterfall_draws_a_bar_per_span_indented_with_the_critical_path_dark() -> None:
    bars = [
        charts.Bar("invoke_agent", 0, 0, 1000, True),
        charts.Bar("retrieval <kb>", 1, 10, 300, False, error=True),
        charts.Bar("chat", 1, 310, 990, True),
    ]
    svg = charts.waterfall_chart("candidate: trace t1", bars)
    root = ET.fromstring(svg)
    assert root.get("role") == "img"
    assert (
        root.get("aria-label")
        == "candidate: trace t1: 3 spans over 1,000 ms; critical path: invoke_agent → chat"
    )
    groups = root.findall("s:g", NS)
    assert [g.get("class") for g in groups] == ["span critical", "span", "span critical"]
    assert [g.get("data-depth") for g in groups] == ["0", "1", "1"]
    grid = root.findall("s:line[@class='grid']", NS)
    v0, x0 = float(grid[0].get("data-value", "")), float(grid[0].get("x1", ""))
    v1, x1 = float(grid[-1].get("data-value", "")), float(grid[-1].get("x1", ""))
    rects = [g.find("s:rect", NS) for g in groups]
    chat = rects[2]
    assert chat is not None
    assert float(chat.get("x", "")) == pytest.approx(x0 + (310 - v0) / (v1 - v0) * (x1 - x0), abs=0.01)
    assert float(chat.get("width", "")) == pytest.approx(680 / (v1 - v0) * (x1 - x0), abs=0.01)
    labels = [g.find("s:text", NS) for g in groups]
    assert float(labels[1].get("x", "")) > float(labels[0].get("x", ""))  # type: ignore[union-attr]
    retrieval = rects[1]
    assert retrieval is not None and retrieval.get("stroke") == "#b3261e"
    title = retrieval.find("s:title", NS)
    assert title is not None and title.text == "retrieval <kb>: 10–300 ms (290 ms), error"
    assert "retrieval &lt;kb&gt;" in svg


def test_the_evidence_views_give_eval_intervals_trace_figures_and_waterfalls() -> None:
    spans = [
        {"span_id": "r", "parent_span_id": None, "name": "root", "start_ts": T, "end_ts": T + timedelta(seconds=2),
         "status": "ok"},
        {"span_id": "c", "parent_span_id": "r", "name": "chat", "start_ts": T + timedelta(milliseconds=100),
         "end_ts": T + timedelta(milliseconds=1900), "status": "error"},
    ]  # fmt: skip
    found = {
        "alpha": 0.05,
        "control": "control",
        "evals": [{"key": "faithfulness · llm_judge", "description": "40 scores",
                   "variations": [{"variation": "control", "units": 25, "mean": 0.8, "stddev": 0.1},
                                  {"variation": "candidate", "units": 16, "mean": 0.9, "stddev": 0.2},
                                  {"variation": "fallback", "units": 0, "mean": None, "stddev": None}],
                   "comparisons": [{"variation": "candidate", "vs": "control",
                                    "fixed": {"relative": 0.125, "relative_ci_low": 0.01, "relative_ci_high": 0.24}}]}],
        "traces": {"candidate": {"units": 100, "traced_units": 10, "traces": 12, "cost_usd": 0.5, "cost_per_trace": 0.5 / 12,
                                 "spans_without_cost": 3,
                                 "spans": [{"name": "root", "root": True, "latency_p50_ms": 900.0, "latency_p95_ms": 2000.0,
                                            "input_tokens": 0, "output_tokens": 0},
                                           {"name": "chat", "root": False, "latency_p50_ms": 800.0, "latency_p95_ms": 1800.0,
                                            "input_tokens": 1200, "output_tokens": 300}],
                                 "critical_path": [{"name": "root", "share": 1.0}, {"name": "chat", "share": 0.75}],
                                 "cancellation": {"cancelled_share": 0.25, "cost_share": 0.1}}},
        "waterfalls": {"candidate": {"trace_id": "t9", "duration_ms": 2000.0, "rank": 12, "roots": 12,
                                     "spans": span_tree(spans)}},
    }  # fmt: skip
    views = room.evidence_views(found, "candidate")
    (faith,) = views["evals"]
    assert [v.variation for v in faith.variations] == ["control", "candidate"]  # none scored: left out
    control = faith.variations[0]
    half = 1.959963984540054 * 0.1 / 5
    assert control.interval == pytest.approx((0.8 - half, 0.8 + half))
    assert faith.relative == 0.125 and faith.relative_interval == (0.01, 0.24)
    (trace,) = views["traces"]
    assert (trace.p50_ms, trace.p95_ms, trace.input_tokens, trace.output_tokens) == (900.0, 2000.0, 1200, 300)
    assert trace.unpriced_spans == 3 and trace.cancelled_share == 0.25
    assert math.isclose(trace.cost_per_trace or 0, 0.5 / 12)
    assert trace.critical_path == [("root", 1.0), ("chat", 0.75)]
    (waterfall,) = views["waterfalls"]
    assert waterfall.trace_id == "t9" and len(waterfall.spans) == 2
    label = ET.fromstring(waterfall.chart).get("aria-label", "")
    assert "critical path: root → chat" in label and "slower than 11 of 12 traces" in label
    assert room.evidence_views(None, None) == {"evals": [], "traces": [], "waterfalls": []}
