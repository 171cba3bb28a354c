"""The difference-over-time chart and its view model: the band, the estimates, zero and the margin
sit at their values on the drawn y scale; a marker per release event at its time; checkpoints."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from datetime import UTC, datetime, timedelta

import pytest

from ramplight.analysis.checkpoints import checkpoint_times, comparison_point
from ramplight.server import charts, room

NS = {"s": charts.SVG_NS}
T = datetime(2026, 11, 1, tzinfo=UTC)


def y_scale(root: ET.Element) -> tuple[float, float, float, float]:
    """(value, y) of the first and last grid lines: the drawn y scale."""
    grid = root.findall("s:line[@class='grid']", NS)
    return (
        float(grid[0].get("data-value", "")),
        float(grid[0].get("y1", "")),
        float(grid[-1].get("data-value", "")),
        float(grid[-1].get("y1", "")),
    )


def y_of(root: ET.Element, value: float) -> float:
    v0, y0, v1, y1 = y_scale(root)
    return y0 + (value - v0) / (v1 - v0) * (y1 - y0)


def x_of(start: datetime, end: datetime, moment: datetime, width: float = 720) -> float:
    x0, x1 = 64, width - 44
    return x0 + (moment - start) / (end - start) * (x1 - x0)


POINTS = [
    charts.DiffPoint(T + timedelta(hours=1), 0.10, (0.01, 0.19), (-0.02, 0.22), 400),
    charts.DiffPoint(T + timedelta(hours=2), 0.07, (0.03, 0.11), (0.01, 0.13), 1200),
    charts.DiffPoint(T + timedelta(hours=3), 0.062, (0.04, 0.084), (0.03, 0.094), 2600),
]
EVENTS = [
    charts.Event(T + timedelta(minutes=90), "change", "ramp: control 80 % · candidate 20 % by ana"),
    charts.Event(T + timedelta(minutes=150), "kill", "killed by <bo>"),
    charts.Event(T + timedelta(minutes=170), "guardian", "decision: rollback by guardian"),
]


def test_the_band_estimates_zero_and_margin_sit_at_their_values() -> None:
    start, end = T, T + timedelta(hours=4)
    root = ET.fromstring(
        charts.difference_chart("latency_ms", POINTS, start, end, margin=0.05, events=EVENTS)
    )
    assert root.get("role") == "img"
    label = root.get("aria-label", "")
    assert "latency_ms: difference over time at 3 checkpoints" in label
    assert "latest +6.2 %" in label and "margin +5 %" in label and "3 release events" in label
    margin = root.find("s:line[@class='margin']", NS)
    zero = root.find("s:line[@class='zero']", NS)
    assert margin is not None and zero is not None and margin.get("stroke-dasharray")
    assert float(margin.get("y1", "")) == pytest.approx(y_of(root, 0.05), abs=0.01)
    assert float(zero.get("y1", "")) == pytest.approx(y_of(root, 0.0), abs=0.01)
    dots = root.findall("s:circle[@class='estimate']", NS)
    assert [float(d.get("data-value", "")) for d in dots] == [0.10, 0.07, 0.062]
    for dot, point in zip(dots, POINTS, strict=True):
        assert float(dot.get("cy", "")) == pytest.approx(y_of(root, point.estimate or 0), abs=0.01)
        assert float(dot.get("cx", "")) == pytest.approx(x_of(start, end, point.ts), abs=0.01)
    band = root.find("s:polygon[@class='band']", NS)
    assert band is not None
    corners = [tuple(map(float, p.split(","))) for p in band.get("points", "").split()]
    # Upper bounds left to right, then lower bounds right to left; the first checkpoint's upper
    # bound (+22 %) lies beyond the axis, which follows the latest interval: drawn at its edge.
    v0, _, v1, _ = y_scale(root)
    assert v1 < 0.22
    assert [c[1] for c in corners] == pytest.approx(
        [y_of(root, min(max(v, v0), v1)) for v in (0.22, 0.13, 0.094, 0.03, 0.01, -0.02)], abs=0.01
    )
    whiskers = root.findall("s:line[@class='fixed']", NS)
    assert len(whiskers) == 3
    assert float(whiskers[0].get("y1", "")) == pytest.approx(y_of(root, 0.01), abs=0.01)


def test_a_marker_per_release_event_at_its_time_with_its_title_escaped() -> None:
    start, end = T, T + timedelta(hours=4)
    svg = charts.difference_chart("m", POINTS, start, end, events=EVENTS)
    root = ET.fromstring(svg)
    markers = [m for m in root.findall("s:line", NS) if "event-marker" in m.get("class", "")]
    assert [m.get("class") for m in markers] == [
        "event-marker event-change", "event-marker event-kill", "event-marker event-guardian",
    ]  # fmt: skip
    for marker, event in zip(markers, EVENTS, strict=True):
        assert float(marker.get("x1", "")) == pytest.approx(x_of(start, end, event.ts), abs=0.01)
        title = marker.find("s:title", NS)
        assert title is not None and title.text == event.text
    assert "killed by &lt;bo&gt;" in svg
    assert root.find("s:line[@class='margin']", NS) is None  # no margin given: none drawn


def test_early_wide_intervals_are_cut_at_the_axis_edge() -> None:
    wide = [charts.DiffPoint(T, 0.5, None, (-40.0, 41.0), 10), *POINTS]
    root = ET.fromstring(charts.difference_chart("m", wide, T, T + timedelta(hours=4), margin=0.05))
    _, y0, v1, y1 = y_scale(root)
    assert v1 < 2  # the axis follows the latest interval, not the first one's ±4,000 %
    band = root.find("s:polygon[@class='band']", NS)
    assert band is not None
    ys = [float(p.split(",")[1]) for p in band.get("points", "").split()]
    assert min(ys) == pytest.approx(min(y0, y1)) and max(ys) == pytest.approx(max(y0, y1))


def test_checkpoints_keep_the_ramp_steps_fill_evenly_and_end_at_the_last_evidence() -> None:
    first, last = T, T + timedelta(hours=10)
    steps = [T - timedelta(days=1), T + timedelta(hours=3), T + timedelta(hours=7, minutes=1)]
    times = checkpoint_times(first, last, steps, 12)
    assert len(times) <= 12 and times[-1] == last and times == sorted(times)
    assert steps[1] in times and steps[2] in times and steps[0] not in times  # before the first exposure
    assert all(first < t <= last for t in times)
    assert len(checkpoint_times(first, last, [], 5)) == 5
    many = [T + timedelta(minutes=20 * k) for k in range(1, 29)]
    assert len(checkpoint_times(first, last, many, 12)) == 12
    assert checkpoint_times(first, first, steps) == [first]


def test_the_view_puts_the_margin_on_the_harm_side_and_states_the_smallest_detectable_harm() -> None:
    fixed = {"difference": 30.0, "ci_low": 10.0, "ci_high": 50.0, "relative": 0.03,
             "relative_ci_low": 0.01, "relative_ci_high": 0.05}  # fmt: skip
    readout = {
        "metrics": [
            {"key": "latency_ms", "direction": "decrease",
             "variations": [{"variation": "control", "units": 600, "mean": 1000.0},
                            {"variation": "candidate", "units": 400, "mean": 1030.0}],
             "comparisons": [{"variation": "candidate", "vs": "control", "fixed": fixed,
                              "sequential": {**fixed, "relative_ci_low": -0.01, "relative_ci_high": 0.07},
                              "mde_relative": -0.021}]},
        ]
    }  # fmt: skip
    recommendation = {
        "guardrails": [{"metric": "latency_ms", "status": "unproven", "margin": 0.05, "margin_type": "relative",
                        "harm": 0.03, "smallest_detectable_harm": 0.021}],
    }  # fmt: skip
    point = comparison_point(readout, "latency_ms", "candidate")
    assert point is not None and point["units"] == 1000 and point["relative_sequential"] == [-0.01, 0.07]
    series = {
        "candidate": "candidate",
        "first": T.isoformat(),
        "checkpoints": [{"ts": (T + timedelta(hours=1)).isoformat(), "step": False, "final": True}],
        "metrics": {"latency_ms": [{"ts": (T + timedelta(hours=1)).isoformat(), **point}]},
    }
    rows = room.metric_rows(readout, recommendation, "candidate")
    entries = [room.TimelineEntry(T + timedelta(minutes=30), "change", "ramp: candidate 20 %", "ana", "")]
    (view,) = room.difference_views(series, rows, recommendation, entries, 0.05)
    assert view.key == "latency_ms" and view.kind == "guardrail" and view.unit == "%"
    assert view.points[0].estimate == 0.03 and view.points[0].sequential == (-0.01, 0.07)
    root = ET.fromstring(view.chart)
    margin = root.find("s:line[@class='margin']", NS)
    assert margin is not None and float(margin.get("data-value", "")) == 0.05  # harm above: slower
    assert len([m for m in root.findall("s:line", NS) if "event-marker" in m.get("class", "")]) == 1
    assert view.detectable.startswith("Smallest harm this stage could detect now: 2.1\u00a0%")
    assert "1,000 units" in view.detectable and "would likely be seen" in view.detectable
    assert room.difference_views(None, rows, recommendation, entries, 0.05) == []
