"""Data quality in the readout: counts that say whether the evidence can be trusted."""

from __future__ import annotations

import math
from datetime import timedelta

import pytest

from ramplight import control
from ramplight.analysis import service as analysis
from ramplight.analysis.readout import ReadoutOptions
from ramplight.store.duckdb import DuckDBStore
from tests.analysis.conftest import FLAG, T0, Evidence, make_flag, save_metrics


def test_events_before_exposure_are_counted_when_every_unit_has_pre_period_events(
    store: DuckDBStore,
) -> None:
    make_flag(store)
    save_metrics(store, {"key": "spend", "type": "event", "event": "spend", "aggregation": "sum"})
    ev = Evidence()
    for i in range(20):
        ev.expose(f"c{i}", ("control", "candidate")[i % 2], T0)
        ev.event(f"c{i}", "spend", T0 - timedelta(days=2), 1.0)  # before everyone's first exposure
        ev.event(f"c{i}", "spend", T0 + timedelta(hours=1), 2.0)
    ev.load(store)
    quality = analysis.report(store, FLAG, "production")["data_quality"]
    assert quality["events_before_exposure"] == 20
    assert quality["events"] == 20  # the outcomes that should join: those after the first exposure
    assert quality["joinable_events"] == 20


def test_as_served_readouts_test_the_split_on_assigned_variations(store: DuckDBStore) -> None:
    make_flag(store, candidate=50)
    ev = Evidence()
    for i in range(2000):
        variation = ("control", "candidate")[i % 2]
        fell_back = variation == "candidate" and i % 10 < 6  # 60 % of the candidate's units
        ev.expose(f"c{i}", variation, T0 + timedelta(seconds=i), served="control" if fell_back else None)
    ev.load(store)
    report = analysis.report(store, FLAG, "production", options=ReadoutOptions(served=True))
    (phase,) = report["phases"]
    assert (phase["units"]["control"], phase["units"]["candidate"]) == (1600, 400)  # served, for reading
    assert phase["srm"]["observed"] == {"control": 1000, "candidate": 1000}
    assert phase["srm"]["mismatch"] is False
    assert report["srm_overall"]["mismatch"] is False


def test_a_small_imbalance_in_every_phase_is_flagged_across_phases(store: DuckDBStore) -> None:
    make_flag(store, candidate=50, at=T0)
    control.ramp(store, FLAG, "production", "candidate", 20, "test", clock=lambda: T0 + timedelta(days=7))
    ev = Evidence()
    for phase, candidates in ((0, 5_150), (1, 2_100)):  # expected 5,000 and 2,000 of 10,000
        for i in range(10_000):
            variation = "candidate" if i < candidates else "control"
            ev.expose(f"p{phase}u{i}", variation, T0 + timedelta(days=7 * phase, seconds=i))
    ev.load(store)
    report = analysis.report(store, FLAG, "production")
    assert [p["srm"]["mismatch"] for p in report["phases"]] == [False, False]
    overall = report["srm_overall"]
    # X² = 150²/5000 · 2 + 100²/2000 + 100²/8000 = 9 + 6.25 on 2 df.
    assert overall["chi_square"] == pytest.approx(15.25, rel=1e-9)
    assert overall["df"] == 2 and overall["phases"] == [0, 1]
    assert overall["p_value"] == pytest.approx(math.exp(-15.25 / 2), rel=1e-9)  # chi-square(2) tail
    assert overall["mismatch"] is True


def test_units_first_exposed_before_the_flag_existed_are_counted_and_left_out(store: DuckDBStore) -> None:
    make_flag(store, candidate=50, at=T0)
    save_metrics(store, {"key": "spend", "type": "event", "event": "spend", "aggregation": "sum"})
    ev = Evidence()
    for i in range(45):
        variation = ("control", "candidate")[i % 2]
        if i >= 40:  # a skewed clock: stamped a day before the flag was created
            ev.expose(f"c{i}", variation, T0 - timedelta(days=1))
        ev.expose(f"c{i}", variation, T0 + timedelta(minutes=i))
        ev.event(f"c{i}", "spend", T0 + timedelta(minutes=i, seconds=30), 1.0)
    ev.load(store)
    report = analysis.report(store, FLAG, "production")
    assert report["data_quality"]["exposures_before_flag"] == 5
    assert report["data_quality"]["units_exposed_before_flag"] == 5
    assert sum(report["phases"][0]["units"].values()) == 40
    spend = next(m for m in report["metrics"] if m["key"] == "spend")
    assert sum(v["units"] for v in spend["variations"]) == 40
