"""The server-side SVG charts: positions map the numbers on the drawn scale, text is escaped."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from datetime import UTC, datetime, timedelta

import pytest

from ramplight.server import charts

NS = {"s": charts.SVG_NS}


def parse(svg: str) -> ET.Element:
    return ET.fromstring(svg)


def tick_scale(root: ET.Element) -> tuple[float, float, float, float]:
    """The drawn scale, read back from the first and last ticks: (value, x) of each."""
    ticks = root.findall("s:line[@class='tick']", NS)
    first, last = ticks[0], ticks[-1]
    return (
        float(first.get("data-value", "")),
        float(first.get("x1", "")),
        float(last.get("data-value", "")),
        float(last.get("x1", "")),
    )


def x_of(root: ET.Element, value: float) -> float:
    v0, x0, v1, x1 = tick_scale(root)
    return x0 + (value - v0) / (v1 - v0) * (x1 - x0)


def test_the_intervals_the_estimate_zero_and_the_margin_sit_where_their_numbers_are() -> None:
    svg = charts.interval_plot(
        "latency_ms", estimate=0.024, fixed=(0.002, 0.045), sequential=(-0.0125, 0.0597), margin=0.05,
        verdict="inconclusive",
    )  # fmt: skip
    root = parse(svg)
    fixed = root.find("s:line[@class='fixed']", NS)
    seq = root.find("s:line[@class='sequential']", NS)
    zero = root.find("s:line[@class='zero']", NS)
    margin = root.find("s:line[@class='margin']", NS)
    estimate = root.find("s:circle[@class='estimate']", NS)
    assert (
        fixed is not None
        and seq is not None
        and zero is not None
        and margin is not None
        and estimate is not None
    )
    assert float(fixed.get("x1", "")) == pytest.approx(x_of(root, 0.002), abs=0.01)
    assert float(fixed.get("x2", "")) == pytest.approx(x_of(root, 0.045), abs=0.01)
    assert float(seq.get("x1", "")) == pytest.approx(x_of(root, -0.0125), abs=0.01)
    assert float(seq.get("x2", "")) == pytest.approx(x_of(root, 0.0597), abs=0.01)
    assert float(zero.get("x1", "")) == pytest.approx(x_of(root, 0.0), abs=0.01)
    assert float(margin.get("x1", "")) == pytest.approx(x_of(root, 0.05), abs=0.01)
    assert margin.get("stroke-dasharray")  # dashed
    assert float(estimate.get("cx", "")) == pytest.approx(x_of(root, 0.024), abs=0.01)
    # The scale covers everything drawn, and its ticks are labelled with the unit.
    v0, _, v1, _ = tick_scale(root)
    assert v0 <= -0.0125 and v1 >= 0.0597
    labels = [t.text or "" for t in root.findall("s:text[@class='tick-label']", NS)]
    assert labels and all(label.endswith("%") for label in labels)
    assert "0" in [label.split()[0] for label in labels]
    verdict = root.find("s:text[@class='verdict']", NS)
    assert verdict is not None and verdict.text == "inconclusive"  # in words, not colour alone


@pytest.mark.parametrize(
    ("verdict", "words"), [("ruled_out", "harm ruled out"), ("detected", "harm detected")]
)
def test_the_verdict_is_written_and_coloured(verdict: str, words: str) -> None:
    root = parse(charts.interval_plot("m", estimate=-1.0, fixed=(-2.0, -0.5), unit="ms", verdict=verdict))
    text = root.find("s:text[@class='verdict']", NS)
    assert text is not None and text.text == words and text.get("fill") == charts.VERDICTS[verdict][0]
    assert root.find("s:line[@class='margin']", NS) is None  # no margin, no line
    assert root.find("s:line[@class='sequential']", NS) is None
    labels = [t.text or "" for t in root.findall("s:text[@class='tick-label']", NS)]
    assert all(label == "0" or label.endswith(" ms") for label in labels)


def test_metric_names_and_event_text_are_escaped() -> None:
    name = 'a<b>&"c'
    root = parse(charts.interval_plot(name, estimate=0.1, fixed=(0.0, 0.2)))
    assert root.get("aria-label", "").startswith(name)
    title = root.find("s:title", NS)
    assert title is not None and (title.text or "").startswith(name)
    start = datetime(2026, 1, 1, tzinfo=UTC)
    events = [charts.Event(start + timedelta(minutes=5), "decision", "<script>&</script>")]
    svg = charts.timeline_chart(events, start, start + timedelta(hours=1))
    assert "<script>" not in svg
    marker = parse(svg).find(".//s:circle/s:title", NS)
    assert marker is not None and marker.text == "<script>&</script>"
    series = charts.series_chart(
        name, {name: [(start, 1.0), (start + timedelta(hours=1), 2.0)]}, start, start + timedelta(hours=1)
    )
    legend = parse(series).find("s:text[@class='legend']", NS)
    assert legend is not None and legend.text == name


def test_timeline_markers_and_series_points_sit_at_their_times() -> None:
    start = datetime(2026, 1, 1, tzinfo=UTC)
    end = start + timedelta(hours=4)
    events = [charts.Event(start + timedelta(hours=1), "change", "ramp to 20 %")]
    root = parse(charts.timeline_chart(events, start, end, width=416))
    (circle,) = root.findall(".//s:circle", NS)
    assert float(circle.get("cx", "")) == pytest.approx(40 + 336 / 4)
    points = {"control": [(start, 10.0), (end, 20.0)]}
    chart = parse(charts.series_chart("m", points, start, end, width=416))
    dots = chart.findall(".//s:g[@class='series']/s:circle", NS)
    assert [float(d.get("cx", "")) for d in dots] == pytest.approx([56, 376])
    assert float(dots[0].get("cy", "")) > float(dots[1].get("cy", ""))  # higher value, higher up


def test_nice_ticks_cover_the_range_with_round_steps() -> None:
    assert charts.nice_ticks(-0.0125, 0.06) == pytest.approx([-0.02, 0.0, 0.02, 0.04, 0.06])
    assert charts.nice_ticks(0, 7) == pytest.approx([0, 2, 4, 6, 8])


def test_the_metric_rows_put_the_margin_on_the_side_where_harm_is() -> None:
    from ramplight.server import room

    fixed = {"difference": -3.0, "ci_low": -5.0, "ci_high": -1.0, "relative": -0.03,
             "relative_ci_low": -0.05, "relative_ci_high": -0.01}  # fmt: skip
    readout = {
        "metrics": [
            {"key": "conversion", "direction": "increase",
             "variations": [{"variation": "control", "units": 10, "mean": 1.0},
                            {"variation": "candidate", "units": 10, "mean": 0.97},
                            {"variation": "fallback", "units": 0, "mean": None}],
             "comparisons": [{"variation": "candidate", "vs": "control", "fixed": fixed}]},
            {"key": "<tokens>", "direction": "decrease", "variations": [],
             "comparisons": [{"variation": "candidate", "vs": "control", "fixed": fixed}]},
        ]
    }  # fmt: skip
    recommendation = {
        "guardrails": [{"metric": "conversion", "status": "breached", "margin": 0.02, "margin_type": "relative",
                        "harm": 0.03, "harm_low": 0.01, "harm_high": 0.05}],
        "goals": [{"metric": "<tokens>"}],
    }  # fmt: skip
    conversion, tokens = room.metric_rows(readout, recommendation, "candidate")
    assert (conversion.kind, conversion.verdict, tokens.kind, tokens.verdict) == (
        "guardrail", "detected", "primary", "none",
    )  # fmt: skip
    assert [m[0] for m in conversion.means] == ["control", "candidate"]  # no unexposed variation
    root = parse(conversion.plot)
    margin = root.find("s:line[@class='margin']", NS)
    assert margin is not None and float(margin.get("x1", "")) == pytest.approx(x_of(root, -0.02), abs=0.01)
    assert conversion.margin == "2\u00a0% (harm below)"
    assert "&lt;tokens&gt;" in tokens.plot


def test_the_timeline_view_names_kills_decisions_and_guardian_actions() -> None:
    from ramplight.server import room

    timeline = {
        "events": [
            {"ts": "2026-01-01T10:00:00+00:00", "kind": "change", "action": "ramp", "actor": "ana",
             "reason": "wider", "weights": {"control": 80.0, "candidate": 20.0}},
            {"ts": "2026-01-01T11:00:00+00:00", "kind": "change", "action": "kill", "actor": "bo", "reason": None},
            {"ts": "2026-01-01T12:00:00+00:00", "kind": "decision", "action": "rollback",
             "actor": "guardian", "reason": None, "recommended": "roll back: latency"},
        ],
        "series": {"m": [{"hour": "2026-01-01T10:00:00+00:00", "variation": "control", "mean": 1.0}]},
    }  # fmt: skip
    view = room.timeline_view(timeline)
    assert [(e.kind, e.what) for e in view["entries"]] == [
        ("guardian", "decision: rollback"), ("kill", "killed"), ("change", "ramp: control 80 % · candidate 20 %"),
    ]  # fmt: skip
    assert view["entries"][0].reason == "roll back: latency"
    assert len(parse(view["chart"]).findall(".//s:g", NS)) == 3
    assert [metric for metric, _ in view["series"]] == ["m"]
    assert room.timeline_view(None)["entries"] == []
