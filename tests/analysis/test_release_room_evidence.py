"""The flag page's evidence beyond the readout, on a real DuckDB store with the generated dataset:
the difference series at its checkpoints, and the segment review per targeting attribute."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from ramplight import release
from ramplight.analysis.options import ReadoutOptions
from ramplight.core.errors import ValidationError
from ramplight.store.duckdb import DuckDBStore
from tests.analysis.conftest import FLAG, T0
from tests.analysis.dataset import PLANS, generate


@pytest.fixture
def planned(store: DuckDBStore) -> DuckDBStore:
    generate(store)
    plan = {"flag_key": FLAG, "candidate": "candidate", "goals": [{"metric": "resolved"}],
            "guardrails": [{"metric": "latency", "margin": 0.05}]}  # fmt: skip
    release.save_plan(store, plan, None, "test", clock=lambda: T0 - timedelta(days=1))
    return store


def test_the_series_reads_out_each_checkpoint_as_of_its_moment(planned: DuckDBStore) -> None:
    series = release.difference_series(planned, FLAG, "production", max_points=6)
    moments = [datetime.fromisoformat(c["ts"]) for c in series["checkpoints"]]
    assert 2 <= len(moments) <= 6 and moments == sorted(moments)
    # The ramps on day 2 and day 4 are checkpoints (the evidence runs from T0 - 1 h to ~day 4.7).
    assert T0 + timedelta(days=2) in moments and T0 + timedelta(days=4) in moments
    assert set(series["metrics"]) == {"resolved", "latency"}
    points = series["metrics"]["latency"]
    assert [p["ts"] for p in points] == [c["ts"] for c in series["checkpoints"]][-len(points) :]
    units = [p["units"] for p in points]
    assert units == sorted(units) and units[0] < units[-1]  # evidence accumulates
    # Each checkpoint is the readout as of that moment; the last reads all the evidence.
    at_ramp = next(p for p in points if datetime.fromisoformat(p["ts"]) == T0 + timedelta(days=2))
    # With the plan's options, as the page's readout: the always-valid interval is tuned for the
    # plan's stage size, not the units seen by then.
    direct = release.judge(
        planned, FLAG, "production", options=ReadoutOptions(until=T0 + timedelta(days=2))
    ).readout
    (comparison,) = next(m for m in direct["metrics"] if m["key"] == "latency")["comparisons"]
    assert at_ramp["relative"] == pytest.approx(comparison["fixed"]["relative"], rel=1e-12)
    assert at_ramp["relative_sequential"][0] == pytest.approx(comparison["sequential"]["relative_ci_low"])
    full = release.judge(planned, FLAG, "production").readout
    (latest,) = next(m for m in full["metrics"] if m["key"] == "latency")["comparisons"]
    assert points[-1]["relative"] == pytest.approx(latest["fixed"]["relative"], rel=1e-12)
    assert points[-1]["mde_relative"] == pytest.approx(latest["mde_relative"], rel=1e-12)


def test_the_segment_review_splits_the_plans_metrics_by_an_exposure_attribute(planned: DuckDBStore) -> None:
    attributes = release.segment_attributes(planned, FLAG, "production")
    assert attributes == [{"attribute": "plan", "values": 3}, {"attribute": "tier", "values": 5}]
    review = release.segment_review(planned, FLAG, "production", "plan")
    latency = [m for m in review["metrics"] if m["key"] == "latency"]
    assert sorted(m["segment"] for m in latency) == sorted(PLANS)
    total = release.judge(planned, FLAG, "production").readout
    (whole,) = [m for m in total["metrics"] if m["key"] == "latency"]
    for variation in ("control", "candidate"):
        per_segment = sum(
            next(v for v in m["variations"] if v["variation"] == variation)["units"] for m in latency
        )
        assert per_segment == next(v for v in whole["variations"] if v["variation"] == variation)["units"]
    with pytest.raises(ValidationError, match=r"no attribute 'region'.*attributes: plan, tier"):
        release.segment_review(planned, FLAG, "production", "region")


def test_eval_scores_and_traces_per_variation_with_a_representative_slow_trace(planned: DuckDBStore) -> None:
    found = release.evals_and_traces(planned, FLAG, "production")
    keys = [m["key"] for m in found["evals"]]
    assert keys == ["faithfulness · llm_judge", "faithfulness · human"]  # most scored first
    # The same figures as the dataset's own eval metric (faithfulness by the LLM judge).
    defined = release.judge(planned, FLAG, "production", ["faithfulness"]).readout
    (mine,) = [m for m in defined["metrics"] if m["key"] == "faithfulness"]
    assert found["evals"][0]["variations"] == mine["variations"]
    assert set(found["traces"]) == {"control", "candidate"}
    for variation, waterfall in found["waterfalls"].items():
        # The root at the 95th percentile by duration (nearest rank), and its tree.
        assert waterfall["rank"] == -(-waterfall["roots"] * 95 // 100)
        roots = [s for s in waterfall["spans"] if s.depth == 0]
        assert all(r.on_critical_path for r in roots if r.span_id)  # a path from every root
        assert any(r.duration_ms == pytest.approx(waterfall["duration_ms"]) for r in roots)
        assert variation in found["traces"]


def test_each_variations_waterfall_has_its_own_span_limit(
    planned: DuckDBStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One statement per trace: a large trace never crowds another variation's waterfall out,
    and a cut one says so."""
    whole = release.evals_and_traces(planned, FLAG, "production")["waterfalls"]
    assert whole and not any(w["truncated"] for w in whole.values())
    assert all(len(w["spans"]) > 2 for w in whole.values())
    monkeypatch.setattr(release, "WATERFALL_SPANS", 2)
    cut = release.evals_and_traces(planned, FLAG, "production")["waterfalls"]
    assert set(cut) == set(whole)  # every variation still has its waterfall
    assert all(len(w["spans"]) == 2 and w["truncated"] for w in cut.values())
