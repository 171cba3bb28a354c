"""The readout computed in DuckDB agrees with the same figures computed row by row in Python."""

from __future__ import annotations

import statistics
from datetime import timedelta

import numpy as np
import pytest
import sqlglot

from ramplight import control
from ramplight.analysis import service as analysis
from ramplight.analysis.options import ReadoutOptions
from ramplight.core.errors import ValidationError
from ramplight.store.duckdb import DuckDBStore
from tests.analysis.conftest import FLAG, T0, Evidence, make_flag, save_metrics


def metric(report: dict, key: str) -> dict:
    return next(m for m in report["metrics"] if m["key"] == key)


def arm(entry: dict, variation: str) -> dict:
    return next(v for v in entry["variations"] if v["variation"] == variation)


@pytest.fixture
def small(store: DuckDBStore) -> dict:
    """60 conversations; each metric's per-unit value is known by construction."""
    make_flag(store)
    save_metrics(
        store,
        {
            "key": "latency",
            "type": "event",
            "event": "latency_ms",
            "aggregation": "mean",
            "direction": "decrease",
        },
        {"key": "cost", "type": "event", "event": "cost_usd", "aggregation": "sum"},
        {"key": "turns", "type": "event", "event": "turn", "aggregation": "count", "window_hours": 1},
        {"key": "escalated", "type": "event", "event": "escalation", "aggregation": "binary"},
        {
            "key": "peak_tokens",
            "type": "event",
            "event": "turn",
            "aggregation": "max",
            "value": "properties.tokens",
        },
        {"key": "cost_per_turn", "type": "ratio", "numerator": "cost", "denominator": "turns"},
        {"key": "faithfulness", "type": "eval", "eval": "faithfulness"},
        {"key": "llm_ms", "type": "span", "span_field": "duration_ms", "aggregation": "mean"},
        {"key": "llm_errors", "type": "span", "span_field": "error", "aggregation": "sum"},
    )
    ev = Evidence()
    expected: dict[str, dict[str, list[float]]] = {}
    for i in range(60):
        unit, variation = f"c{i}", ("control", "candidate")[i % 2]
        start = T0 + timedelta(minutes=i)
        ev.expose(unit, variation, start)
        ev.expose(unit, variation, start + timedelta(minutes=5))  # a second exposure: still one unit
        latencies = [1000.0 + 10 * i + 5 * k for k in range(i % 3 + 1)]
        for k, value in enumerate(latencies):
            ev.event(unit, "latency_ms", start + timedelta(seconds=k + 1), value)
        ev.event(unit, "latency_ms", start - timedelta(minutes=1), 99_999)  # before exposure: ignored
        ev.event(unit, "cost_usd", start + timedelta(seconds=30), 0.01 * (i % 4))
        turns = i % 4
        for k in range(turns):
            ev.event(unit, "turn", start + timedelta(minutes=10 * k), None, tokens=100 + i + k)
        ev.event(unit, "turn", start + timedelta(hours=2), None, tokens=5000)  # outside the 1 h window
        if i % 5 == 0:
            ev.event(unit, "escalation", start + timedelta(minutes=3))
        ev.score(unit, "faithfulness", start + timedelta(minutes=2), 0.5 + 0.01 * i)
        ev.span(unit, start + timedelta(seconds=1), 200.0 + i, status="error" if i % 7 == 0 else "ok")
        by = expected.setdefault(variation, {})
        by.setdefault("latency", []).append(statistics.fmean(latencies))
        by.setdefault("cost", []).append(0.01 * (i % 4))
        in_window = sum(1 for k in range(turns) if 10 * k < 60)
        by.setdefault("turns", []).append(in_window)
        by.setdefault("escalated", []).append(1.0 if i % 5 == 0 else 0.0)
        by.setdefault("peak_tokens", []).append(5000.0)  # max over all events (no window on this metric)
        by.setdefault("faithfulness", []).append(0.5 + 0.01 * i)
        by.setdefault("llm_ms", []).append(200.0 + i)
        by.setdefault("llm_errors", []).append(1.0 if i % 7 == 0 else 0.0)
    ev.load(store)
    return expected


def test_every_metric_type_matches_a_row_by_row_computation(store: DuckDBStore, small: dict) -> None:
    report = analysis.report(store, FLAG, "production")
    assert report["schema"] == "ramplight.readout/v2"
    for key in (
        "latency",
        "cost",
        "turns",
        "escalated",
        "peak_tokens",
        "faithfulness",
        "llm_ms",
        "llm_errors",
    ):
        for variation in ("control", "candidate"):
            values = small[variation][key]
            got = arm(metric(report, key), variation)
            assert got["units"] == len(values), key
            assert got["mean"] == pytest.approx(statistics.fmean(values), rel=1e-12), key
            assert got["stddev"] == pytest.approx(statistics.stdev(values), rel=1e-9), key
    ratio = metric(report, "cost_per_turn")
    for variation in ("control", "candidate"):
        expected = sum(small[variation]["cost"]) / sum(small[variation]["turns"])
        assert arm(ratio, variation)["mean"] == pytest.approx(expected, rel=1e-12)


def test_the_effect_is_welch_on_the_per_unit_values(store: DuckDBStore, small: dict) -> None:
    from scipy import stats

    report = analysis.report(store, FLAG, "production", ["latency"])
    comparison = metric(report, "latency")["comparisons"][0]
    control, candidate = np.array(small["control"]["latency"]), np.array(small["candidate"]["latency"])
    welch = stats.ttest_ind(candidate, control, equal_var=False)
    assert comparison["fixed"]["difference"] == pytest.approx(candidate.mean() - control.mean(), rel=1e-9)
    assert comparison["fixed"]["p_value"] == pytest.approx(welch.pvalue, rel=1e-6)
    seq, fixed = comparison["sequential"], comparison["fixed"]
    assert seq["ci_high"] - seq["ci_low"] > fixed["ci_high"] - fixed["ci_low"]  # always-valid costs width


def test_units_exposed_to_two_variations_are_counted_and_left_out(store: DuckDBStore) -> None:
    make_flag(store)
    save_metrics(store, {"key": "latency", "type": "event", "event": "latency_ms", "aggregation": "mean"})
    ev = Evidence()
    for i in range(10):
        ev.expose(f"c{i}", "control", T0)
        ev.event(f"c{i}", "latency_ms", T0 + timedelta(seconds=1), 100.0)
    ev.expose("c0", "candidate", T0 + timedelta(minutes=1))
    ev.load(store)
    report = analysis.report(store, FLAG, "production")
    assert report["data_quality"]["multiple_variation_units"] == 1
    assert arm(metric(report, "latency"), "control")["units"] == 9


def test_as_served_moves_fallbacks_to_the_variation_that_ran(store: DuckDBStore) -> None:
    make_flag(store)
    save_metrics(store, {"key": "latency", "type": "event", "event": "latency_ms", "aggregation": "mean"})
    ev = Evidence()
    for i in range(20):
        served = "control" if i < 4 else None
        ev.expose(f"c{i}", "candidate", T0, served=served)
        ev.event(f"c{i}", "latency_ms", T0 + timedelta(seconds=1), 3000.0 if served else 100.0)
    ev.load(store)
    itt = analysis.report(store, FLAG, "production")
    served = analysis.report(store, FLAG, "production", options=ReadoutOptions(served=True))
    assert arm(metric(itt, "latency"), "candidate")["units"] == 20
    assert arm(metric(served, "latency"), "candidate")["units"] == 16
    assert arm(metric(served, "latency"), "control")["mean"] == 3000.0
    assert served["analysis"] == "as_served"


def test_segments_split_the_readout_by_an_exposure_attribute(store: DuckDBStore) -> None:
    make_flag(store)
    save_metrics(store, {"key": "latency", "type": "event", "event": "latency_ms", "aggregation": "mean"})
    ev = Evidence()
    for i in range(40):
        plan = "enterprise" if i % 3 == 0 else "pro"
        variation = ("control", "candidate")[i % 2]
        ev.expose(f"c{i}", variation, T0, plan=plan)
        slow = 500.0 if plan == "enterprise" and variation == "candidate" else 0.0
        ev.event(f"c{i}", "latency_ms", T0 + timedelta(seconds=1), 1000.0 + slow + i % 3)
    ev.load(store)
    report = analysis.report(store, FLAG, "production", options=ReadoutOptions(segment="plan"))
    by_segment = {m["segment"]: m for m in report["metrics"]}
    assert set(by_segment) == {"enterprise", "pro"}
    assert by_segment["enterprise"]["comparisons"][0]["fixed"]["difference"] == pytest.approx(500, abs=3)
    assert abs(by_segment["pro"]["comparisons"][0]["fixed"]["difference"]) < 3


def test_cuped_uses_the_pre_period_and_narrows_the_interval(store: DuckDBStore) -> None:
    make_flag(store)
    save_metrics(
        store, {"key": "spend", "type": "event", "event": "spend", "aggregation": "sum", "cuped_days": 14}
    )
    rng = np.random.default_rng(4)
    ev = Evidence()
    for i in range(400):
        variation = ("control", "candidate")[i % 2]
        habit = rng.gamma(2.0, 10.0)
        start = T0 + timedelta(hours=i)
        ev.expose(f"c{i}", variation, start)
        ev.event(f"c{i}", "spend", start - timedelta(days=3), habit + rng.normal(0, 2))
        ev.event(f"c{i}", "spend", start - timedelta(days=20), 1e6)  # before the CUPED window: ignored
        ev.event(
            f"c{i}", "spend", start + timedelta(hours=1), habit + rng.normal(0, 2) + (1.0 if i % 2 else 0.0)
        )
    ev.load(store)
    comparison = metric(analysis.report(store, FLAG, "production"), "spend")["comparisons"][0]
    fixed, cuped = comparison["fixed"], comparison["cuped"]
    assert cuped["ci_high"] - cuped["ci_low"] < 0.5 * (fixed["ci_high"] - fixed["ci_low"])
    assert cuped["ci_low"] < 1.0 < cuped["ci_high"]


def test_a_ramp_under_a_time_trend_biases_the_pooled_estimate_not_the_stratified_one(
    store: DuckDBStore,
) -> None:
    make_flag(store, candidate=5, at=T0)
    control.ramp(store, FLAG, "production", "candidate", 20, "test", clock=lambda: T0 + timedelta(days=7))
    save_metrics(store, {"key": "spend", "type": "event", "event": "spend", "aggregation": "mean"})
    rng = np.random.default_rng(11)
    ev = Evidence()
    for i in range(8000):
        phase = i % 2  # half the units arrive in each week
        start = T0 + timedelta(days=7 * phase, minutes=i)
        variation = "candidate" if rng.random() < (0.05, 0.20)[phase] else "control"
        ev.expose(f"c{i}", variation, start)
        ev.event(
            f"c{i}", "spend", start + timedelta(minutes=1), rng.normal(10.0 + 5.0 * phase, 1.0)
        )  # no effect
    ev.load(store)
    report = analysis.report(store, FLAG, "production")
    assert [p["weights"]["candidate"] for p in report["phases"]] == [5.0, 20.0]
    assert all(not p["srm"]["mismatch"] for p in report["phases"])
    entry = metric(report, "spend")
    pooled = arm(entry, "candidate")["mean"] - arm(entry, "control")["mean"]
    stratified = entry["comparisons"][0]["fixed"]
    assert pooled > 1.0  # the candidate's units are mostly from the later, higher week
    assert stratified["ci_low"] < 0 < stratified["ci_high"]
    assert len(entry["comparisons"][0]["per_phase"]) == 2


def test_srm_is_flagged_for_a_phase_whose_split_is_off(store: DuckDBStore) -> None:
    make_flag(store, candidate=50)
    ev = Evidence()
    for i in range(2000):
        ev.expose(f"c{i}", "candidate" if i % 5 < 2 else "control", T0 + timedelta(seconds=i))  # 40/60
    ev.load(store)
    (phase,) = analysis.report(store, FLAG, "production")["phases"]
    assert phase["srm"]["mismatch"] is True
    assert phase["srm"]["observed"] == {"control": 1200, "candidate": 800}


def test_guardrail_margin_and_quantiles(store: DuckDBStore) -> None:
    make_flag(store)
    save_metrics(
        store,
        {
            "key": "latency",
            "type": "event",
            "event": "latency_ms",
            "aggregation": "mean",
            "direction": "decrease",
            "guardrail_margin": 0.05,
        },
        {"key": "p95", "type": "quantile", "event": "latency_ms", "quantile": 0.95, "direction": "decrease"},
    )
    rng = np.random.default_rng(2)
    ev = Evidence()
    values: dict[str, list[float]] = {"control": [], "candidate": []}
    for i in range(3000):
        variation = ("control", "candidate")[i % 2]
        ev.expose(f"c{i}", variation, T0)
        for k in range(3):
            value = float(rng.lognormal(7.0, 0.3)) * (1.3 if variation == "candidate" else 1.0)
            values[variation].append(value)
            ev.event(f"c{i}", "latency_ms", T0 + timedelta(seconds=k + 1), value)
    ev.load(store)
    report = analysis.report(store, FLAG, "production")
    guard = metric(report, "latency")["comparisons"][0]["guardrail"]
    assert guard["breached"] is True and guard["holds"] is False
    p95 = metric(report, "p95")
    for variation, sample in values.items():
        assert arm(p95, variation)["value"] == pytest.approx(np.quantile(sample, 0.95), rel=1e-9)
    assert p95["comparisons"][0]["fixed"]["ci_low"] > 0


def test_sql_metrics_join_the_users_own_tables(store: DuckDBStore) -> None:
    make_flag(store)
    store.connection().execute(
        "CREATE TABLE tickets (conversation VARCHAR, opened TIMESTAMPTZ, minutes DOUBLE)"
    )
    ev = Evidence()
    for i in range(20):
        ev.expose(f"c{i}", ("control", "candidate")[i % 2], T0)
        store.connection().execute(
            "INSERT INTO tickets VALUES (?, ?, ?)", [f"c{i}", T0 + timedelta(hours=1), float(i)]
        )
    ev.load(store)
    save_metrics(
        store,
        {
            "key": "ticket_minutes",
            "type": "sql",
            "aggregation": "sum",
            "sql": "SELECT conversation AS unit_id, opened AS ts, minutes AS value FROM tickets",
        },
    )
    entry = metric(analysis.report(store, FLAG, "production"), "ticket_minutes")
    assert arm(entry, "control")["mean"] == pytest.approx(statistics.fmean(range(0, 20, 2)))


@pytest.mark.parametrize("dialect", ["duckdb", "postgres", "clickhouse"])
def test_the_readout_sql_renders_for_each_dialect_and_parses_back(
    store: DuckDBStore, small: dict, dialect: str
) -> None:
    sql = analysis.readout_sql(store, FLAG, "production", dialect=dialect)
    parsed = sqlglot.parse_one(sql.rstrip(";"), read=dialect)
    assert parsed.find(sqlglot.exp.With) is not None
    if dialect == "duckdb":
        rows = store.connection().execute(sql).fetchall()
        assert {r[1] for r in rows} == {"control", "candidate"}


def test_invalid_metric_definitions_name_the_field(store: DuckDBStore) -> None:
    cases = [
        ({"key": "r", "type": "ratio", "numerator": "nope", "denominator": "nope"}, "numerator"),
        ({"key": "v", "type": "event", "event": "x", "value": "properties..a"}, "value"),
        ({"key": "s", "type": "sql", "sql": "SELECT 1 AS unit_id"}, "sql"),
        ({"key": "q", "type": "quantile", "event": "x", "quantile": 95}, "quantile"),
        ({"key": "e", "type": "event"}, "event"),
    ]
    for doc, field in cases:
        with pytest.raises(ValidationError) as caught:
            control.save_metric(store, doc, None)
        assert caught.value.problems[0].field == field, doc


def test_export_and_frames_give_the_per_unit_relation(store: DuckDBStore, small: dict, tmp_path) -> None:
    path = tmp_path / "units.parquet"
    assert analysis.export_units(store, FLAG, "production", str(path), "parquet", ["latency", "cost"]) == 60
    frame = analysis.unit_frame(store, FLAG, "production", ["latency", "cost"])
    assert list(frame.columns[-2:]) == ["latency", "cost"]
    assert frame.groupby("variation")["latency"].mean()["candidate"] == pytest.approx(
        statistics.fmean(small["candidate"]["latency"])
    )
    readout = analysis.readout_frame(analysis.report(store, FLAG, "production", ["latency"]))
    assert readout.loc[0, "metric"] == "latency"


def test_the_unit_relation_also_comes_as_a_polars_frame(store: DuckDBStore, small: dict) -> None:
    frame = analysis.unit_frame(store, FLAG, "production", ["cost"], kind="polars")
    assert frame.height == 60
    assert frame["cost"].sum() == pytest.approx(
        sum(small["control"]["cost"]) + sum(small["candidate"]["cost"])
    )


def test_power_says_how_many_units_and_days_a_decision_still_needs(store: DuckDBStore) -> None:
    make_flag(store, at=T0)
    save_metrics(store, {"key": "spend", "type": "event", "event": "spend", "aggregation": "mean"})
    rng = np.random.default_rng(5)
    ev = Evidence()
    for i in range(400):
        variation = ("control", "candidate")[i % 2]
        ev.expose(f"c{i}", variation, T0 + timedelta(minutes=i))
        ev.event(f"c{i}", "spend", T0 + timedelta(minutes=i + 1), rng.normal(10.2 if i % 2 else 10.0, 3.0))
    ev.load(store)
    flag = control.get_flag(store, FLAG)
    from ramplight.analysis.readout import build_readout

    metrics = store.list_metrics()
    report = build_readout(
        store, flag, "production", metrics, {m.key: m for m in metrics}, now=T0 + timedelta(days=2)
    )
    comparison = metric(report, "spend")["comparisons"][0]
    power = comparison["power"]
    assert power["units_needed"] > 400  # a ~2 % lift on sd 30 % needs thousands of units
    assert power["units_remaining"] == power["units_needed"] - 400
    assert power["days_remaining"] == pytest.approx(
        power["units_remaining"] / 200, rel=1e-6
    )  # 400 units in 2 days
    assert comparison["mde_relative"] > abs(comparison["fixed"]["relative"])


def test_cuped_on_a_mean_metric_uses_only_units_with_a_post_period_value(store: DuckDBStore) -> None:
    from ramplight.core.stats import RegressionMoments, cuped_summaries, welch_test

    make_flag(store)
    save_metrics(
        store, {"key": "lat", "type": "event", "event": "lat", "aggregation": "mean", "cuped_days": 7}
    )
    rng = np.random.default_rng(8)
    ev = Evidence()
    post: dict[str, list[float]] = {"control": [], "candidate": []}
    pre: dict[str, list[float]] = {"control": [], "candidate": []}
    for i in range(600):
        variation = ("control", "candidate")[i % 2]
        base = rng.normal(100, 20)
        ev.expose(f"c{i}", variation, T0)
        ev.event(f"c{i}", "lat", T0 - timedelta(days=1), base)
        if i % 6 >= 2:  # a third of the units never come back after exposure
            value = base + rng.normal(5 if i % 2 else 0, 5)
            ev.event(f"c{i}", "lat", T0 + timedelta(hours=1), value)
            post[variation].append(value)
            pre[variation].append(base)
    ev.load(store)
    got = metric(analysis.report(store, FLAG, "production"), "lat")["comparisons"][0]["cuped"]
    control = RegressionMoments.from_values(post["control"], pre["control"])
    candidate = RegressionMoments.from_values(post["candidate"], pre["candidate"])
    expected = welch_test(*cuped_summaries(control, candidate))
    assert got["difference"] == pytest.approx(expected.absolute.estimate, rel=1e-9)
    assert got["ci_low"] == pytest.approx(expected.absolute.ci_lower, rel=1e-9)


def test_a_lift_carries_the_relative_tests_own_p_value(store: DuckDBStore, small: dict) -> None:
    from ramplight.core.stats import SampleMoments, welch_test

    fixed = metric(analysis.report(store, FLAG, "production", ["latency"]), "latency")["comparisons"][0][
        "fixed"
    ]
    expected = welch_test(
        SampleMoments.from_values(small["control"]["latency"]).summary(),
        SampleMoments.from_values(small["candidate"]["latency"]).summary(),
    )
    assert expected.relative is not None
    assert fixed["relative_p_value"] == pytest.approx(expected.relative.p_value, rel=1e-9)
    assert fixed["p_value"] == pytest.approx(expected.absolute.p_value, rel=1e-9)
    assert fixed["relative_p_value"] != fixed["p_value"]  # two different tests


def test_the_sequence_is_tuned_to_the_units_compared_unless_a_tuning_is_given(
    store: DuckDBStore, small: dict
) -> None:
    from ramplight.core.stats import SampleMoments, sequential_test

    control = SampleMoments.from_values(small["control"]["latency"]).summary()
    candidate = SampleMoments.from_values(small["candidate"]["latency"]).summary()
    derived = metric(analysis.report(store, FLAG, "production", ["latency"]), "latency")["comparisons"][0]
    assert derived["sequential"]["tuning"] == 60.0
    assert derived["sequential"]["tuning_source"] == "current_units"
    expected = sequential_test(control, candidate, tuning=60.0).absolute
    assert derived["sequential"]["ci_low"] == pytest.approx(expected.ci_lower, rel=1e-9)
    pinned = metric(
        analysis.report(store, FLAG, "production", ["latency"], ReadoutOptions(sequential_tuning=20_000)),
        "latency",
    )["comparisons"][0]["sequential"]
    assert pinned["tuning"] == 20_000 and pinned["tuning_source"] == "option"
    assert pinned["ci_low"] == pytest.approx(
        sequential_test(control, candidate, tuning=20_000).absolute.ci_lower, rel=1e-9
    )
    with pytest.raises(ValidationError):
        analysis.report(store, FLAG, "production", ["latency"], ReadoutOptions(sequential_tuning=0))


def test_the_holm_family_leaves_out_ratio_helpers_and_follows_the_selection(
    store: DuckDBStore, small: dict
) -> None:
    from ramplight.core.stats import holm_bonferroni

    def fixed(report: dict, key: str) -> dict:
        return metric(report, key)["comparisons"][0]["fixed"]

    everything = analysis.report(store, FLAG, "production")
    family = everything["correction"]["family"]
    assert everything["correction"]["method"] == "holm"
    assert sorted(family) == sorted(  # every metric but cost and turns, which only feed the ratio
        ["latency", "escalated", "peak_tokens", "cost_per_turn", "faithfulness", "llm_ms", "llm_errors"]
    )
    adjusted = holm_bonferroni([fixed(everything, k)["p_value"] for k in family])
    assert [fixed(everything, k)["p_value_holm"] for k in family] == pytest.approx(adjusted, rel=1e-12)
    assert fixed(everything, "cost")["p_value_holm"] is None

    selected = analysis.report(store, FLAG, "production", ["latency", "cost_per_turn"])
    assert selected["correction"]["family"] == ["latency", "cost_per_turn"]
    assert fixed(selected, "latency")["p_value_holm"] == pytest.approx(
        holm_bonferroni([fixed(selected, k)["p_value"] for k in ("latency", "cost_per_turn")])[0], rel=1e-12
    )

    planned = analysis.report(store, FLAG, "production", options=ReadoutOptions(family=("latency",)))
    assert planned["correction"]["family"] == ["latency"]
    assert fixed(planned, "latency")["p_value_holm"] == fixed(planned, "latency")["p_value"]
    assert fixed(planned, "llm_ms")["p_value_holm"] is None
    with pytest.raises(ValidationError):
        analysis.report(store, FLAG, "production", ["latency"], ReadoutOptions(family=("llm_ms",)))
