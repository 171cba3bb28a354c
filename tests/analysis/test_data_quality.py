"""Data quality in the readout: counts that say whether the evidence can be trusted."""

from __future__ import annotations

import math
import random
from datetime import timedelta

import pytest

from ramplight import control
from ramplight.analysis import service as analysis
from ramplight.analysis.options import ReadoutOptions
from ramplight.analysis.overview import quality_mark
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


# The figures as the v1 readout computed them, one statement each, before they were folded into
# the readout's statement: the reference the folded figures must equal.
V1_UNITS_SQL = """
WITH per_unit AS (
    SELECT unit_id,
           count(DISTINCT assigned_variation) AS n_assigned,
           arg_min(assigned_variation, ts) AS variation,
           bool_or(served_variation <> assigned_variation) AS fell_back
    FROM exposures
    WHERE environment = $environment AND flag_key = $flag_key
    GROUP BY unit_id
)
SELECT variation,
       count(*) FILTER (WHERE n_assigned = 1) AS units,
       count(*) FILTER (WHERE n_assigned = 1 AND fell_back) AS fallback_units,
       count(*) FILTER (WHERE n_assigned > 1) AS multiple_variation_units
FROM per_unit
GROUP BY variation
"""
V1_JOIN_SQL = """
WITH units AS (
    SELECT unit_id, min(ts) AS first_ts
    FROM exposures
    WHERE environment = $environment AND flag_key = $flag_key
    GROUP BY unit_id
),
candidates AS (
    SELECT e.unit_id, e.ts,
           coalesce(e.flag_key = $flag_key, false)
               OR e.ts >= (SELECT min(first_ts) FROM units) AS relevant
    FROM events e
    WHERE e.environment = $environment
      AND (e.flag_key = $flag_key OR (e.flag_key IS NULL AND e.assignment_unit = $assignment_unit))
)
SELECT count(*) FILTER (WHERE c.relevant) AS events,
       count(*) FILTER (WHERE c.relevant AND u.unit_id IS NOT NULL AND c.ts >= u.first_ts) AS joinable,
       count(*) FILTER (WHERE u.unit_id IS NOT NULL AND c.ts < u.first_ts) AS before_exposure
FROM candidates c LEFT JOIN units u USING (unit_id)
"""


def messy_evidence(seed: int) -> Evidence:
    """Units in two variations, fallbacks, exposures before the flag, events long before exposure,
    events of unexposed units, of other flags, units, environments, names."""
    rng = random.Random(seed)
    ev = Evidence()
    for i in range(300):
        unit = f"c{i}"
        variation = rng.choice(["control", "candidate", "fallback"])
        start = T0 + timedelta(minutes=rng.randrange(-120, 3000))  # some before the flag existed
        served = rng.choice([None, None, None, "control", "fallback"])
        ev.expose(unit, variation, start, served=served)
        if served and served != variation:
            ev.exposures[-1]["fallback_reason"] = rng.choice(["timeout", "error", None])
        if rng.random() < 0.1:  # a second assigned variation later, or the same again
            ev.expose(
                unit, rng.choice(["control", "candidate"]), start + timedelta(minutes=rng.randrange(1, 60))
            )
        if rng.random() < 0.05:
            ev.expose(unit, variation, start - timedelta(hours=1))
            ev.exposures[-1]["environment"] = "staging"  # another environment's exposure
        for _ in range(rng.randrange(0, 6)):
            at = start + timedelta(minutes=rng.randrange(-20_000, 600))  # up to two weeks before
            ev.event(unit, rng.choice(["spend", "turn", "page_view"]), at, rng.random())
            ev.events[-1]["flag_key"] = rng.choice([None, None, FLAG, "other_flag"])
            if rng.random() < 0.05:
                ev.events[-1]["assignment_unit"] = "user"
            if rng.random() < 0.05:
                ev.events[-1]["environment"] = "staging"
    for i in range(40):  # never exposed
        at = T0 + timedelta(minutes=rng.randrange(-3000, 3000))
        ev.event(f"stranger{i}", "spend", at, 1.0)
        ev.events[-1]["flag_key"] = rng.choice([None, FLAG])
    ev.expose("c0", "control", T0 - timedelta(days=30))  # the flag's first exposure, long before
    for row in ev.events:
        row.setdefault("flag_key", None)
    return ev


@pytest.mark.parametrize("seed", [1, 2, 3])
@pytest.mark.parametrize("with_metrics", [True, False])
def test_the_folded_data_quality_figures_equal_the_v1_statements(
    store: DuckDBStore, seed: int, with_metrics: bool
) -> None:
    make_flag(store, candidate=50)
    if with_metrics:
        save_metrics(
            store,
            {"key": "spend", "type": "event", "event": "spend", "aggregation": "sum"},
            {"key": "turns", "type": "event", "event": "turn", "aggregation": "count", "cuped_days": 7},
        )
    messy_evidence(seed).load(store)
    params = {"environment": "production", "flag_key": FLAG}
    con = store.connection()
    by_variation = {r[0]: r for r in con.execute(V1_UNITS_SQL, params).fetchall()}
    events, joinable, before = con.execute(
        V1_JOIN_SQL, {**params, "assignment_unit": "conversation"}
    ).fetchone()

    quality = analysis.report(store, FLAG, "production")["data_quality"]
    variations = analysis.report(store, FLAG, "production")["variations"]
    assert quality["multiple_variation_units"] == sum(r[3] for r in by_variation.values()) > 0
    assert (quality["events"], quality["joinable_events"], quality["events_before_exposure"]) == (
        events,
        joinable,
        before,
    )
    assert 0 < joinable < events and before > 0
    assert quality["exposed_units"] == sum(r[1] for r in by_variation.values())
    for entry in variations:
        row = by_variation.get(entry["variation"], (None, 0, 0, 0))
        assert (entry["units"], entry["fallback_units"]) == (row[1], row[2]), entry["variation"]
    assert sum(entry["fallback_units"] for entry in variations) > 0


def test_without_units_to_analyse_the_data_quality_figures_still_come(store: DuckDBStore) -> None:
    make_flag(store)
    ev = Evidence()
    ev.expose("c0", "control", T0)
    ev.expose("c0", "candidate", T0 + timedelta(minutes=1))  # its only unit is left out
    for minutes in (-5, 5, 10):
        ev.event("c0", "spend", T0 + timedelta(minutes=minutes), 1.0)
    ev.event("c1", "spend", T0 + timedelta(minutes=1), 1.0)  # never exposed
    ev.load(store)
    report = analysis.report(store, FLAG, "production")
    assert report["data_quality"]["multiple_variation_units"] == 1
    assert report["data_quality"]["exposed_units"] == 0
    assert (report["data_quality"]["events"], report["data_quality"]["joinable_events"]) == (3, 2)
    assert report["data_quality"]["events_before_exposure"] == 1
    assert report["phases"][0]["units"] == {"control": 0, "candidate": 0, "fallback": 0}


def test_units_a_targeting_rule_assigned_are_counted_and_left_out_of_the_comparison(
    store: DuckDBStore,
) -> None:
    # Staff get the candidate by a rule; everyone else is randomized 50/50. Staff are 30 % of the
    # candidate's units and resolve everything: compared with them, the split fails (SRM) and the
    # candidate looks far better than it is.
    make_flag(store, candidate=50)
    save_metrics(store, {"key": "resolved", "type": "event", "event": "resolved", "aggregation": "binary"})
    ev = Evidence()
    rng = random.Random(3)
    for i in range(2000):
        variation = ("control", "candidate")[i % 2]
        reason = ("rollout", None)[i % 3 == 0]  # NULL: an older SDK, taken as rollout
        ev.expose(f"c{i}", variation, T0 + timedelta(seconds=i), reason=reason)
        if rng.random() < 0.5:
            ev.event(f"c{i}", "resolved", T0 + timedelta(seconds=i, minutes=5))
    for i in range(430):
        ev.expose(f"staff{i}", "candidate", T0 + timedelta(seconds=i), reason="rule")
        ev.event(f"staff{i}", "resolved", T0 + timedelta(seconds=i, minutes=5))
    ev.expose("c1", "candidate", T0 + timedelta(hours=2), reason="off")  # a kill's exposure: still randomized
    ev.load(store)
    report = analysis.report(store, FLAG, "production")
    (phase,) = report["phases"]
    assert (phase["units"]["control"], phase["units"]["candidate"]) == (1000, 1000)
    assert phase["srm"]["mismatch"] is False
    assert report["data_quality"]["rule_assigned_units"] == 430
    assert report["data_quality"]["exposed_units"] == 2000
    (metric,) = report["metrics"]
    rates = {v["variation"]: v["mean"] for v in metric["variations"]}
    assert abs(rates["candidate"] - rates["control"]) < 0.1  # the staff's 100 % left out
    # The release room's data-quality line says who is not compared, without calling it a problem.
    mark = quality_mark(report)
    assert mark.mark == "ok"
    assert mark.note.endswith("; 430 units a targeting rule assigned are not compared")
