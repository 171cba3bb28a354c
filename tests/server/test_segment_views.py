"""The segment review's view model: a row per segment value (most units first), the relative
difference when the margin is relative, interval plots on one shared scale with the margin."""

from __future__ import annotations

import xml.etree.ElementTree as ET

from ramplight.server import charts, room

NS = {"s": charts.SVG_NS}


def entry(segment: str | None, units: int, rel: float, lo: float, hi: float) -> dict:
    fixed = {"difference": rel * 1000, "ci_low": lo * 1000, "ci_high": hi * 1000, "relative": rel,
             "relative_ci_low": lo, "relative_ci_high": hi, "p_value_holm": 0.5}  # fmt: skip
    return {
        "key": "latency_ms", "direction": "decrease", "segment": segment,
        "variations": [{"variation": "control", "units": units, "mean": 1000.0},
                       {"variation": "candidate", "units": units, "mean": 1000.0 * (1 + rel)}],
        "comparisons": [{"variation": "candidate", "vs": "control", "fixed": fixed,
                         "sequential": {**fixed, "relative_ci_low": lo - 0.1, "relative_ci_high": hi + 0.1}}],
    }  # fmt: skip


def test_a_row_per_segment_most_units_first_on_one_scale() -> None:
    whole = {"metrics": [entry(None, 900, 0.03, 0.01, 0.05)]}
    recommendation = {"guardrails": [{"metric": "latency_ms", "status": "unproven", "margin": 0.05,
                                      "margin_type": "relative", "harm": 0.03}]}  # fmt: skip
    rows = room.metric_rows(whole, recommendation, "candidate")
    segmented = {
        "metrics": [
            entry("free", 300, 0.01, -0.02, 0.04),
            entry("enterprise", 500, 0.4, 0.3, 0.5),
            entry(None, 100, 0.0, -0.5, 0.5),
        ]
    }
    (view,) = room.segment_views(segmented, rows, "candidate")
    assert (view.key, view.kind, view.unit, view.hidden) == ("latency_ms", "guardrail", "%", 0)
    assert [(r.value, r.units, r.estimate) for r in view.rows] == [
        ("enterprise", 1000, 0.4), ("free", 600, 0.01), ("(not set)", 200, 0.0),
    ]  # fmt: skip
    assert view.rows[0].sequential == (0.3 - 0.1, 0.5 + 0.1) and view.rows[0].p_holm == 0.5
    scales = set()
    for row in view.rows:
        root = ET.fromstring(row.plot)
        ticks = root.findall("s:line[@class='tick']", NS)
        scales.add((ticks[0].get("data-value"), ticks[-1].get("data-value")))
        margin = root.find("s:line[@class='margin']", NS)
        assert margin is not None  # the guardrail's margin, on the harm side (slower)
        assert "exploratory" in root.get("aria-label", "")
    assert len(scales) == 1  # one scale for every segment: the plots compare at a glance
    assert room.segment_views(None, rows, "candidate") == []
