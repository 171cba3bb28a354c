"""CUPED in the readout: stratified by phase like every other effect, missing pre-periods kept missing."""

from __future__ import annotations

from datetime import timedelta

import numpy as np
import pytest

from ramplight import control
from ramplight.analysis import service as analysis
from ramplight.core.stats import (
    RegressionMoments,
    SampleMoments,
    cuped_summaries,
    stratified_summaries,
    welch_test,
)
from ramplight.store.duckdb import DuckDBStore
from tests.analysis.conftest import FLAG, T0, Evidence, make_flag, save_metrics


def comparison(report: dict, key: str) -> dict:
    entry = next(m for m in report["metrics"] if m["key"] == key)
    return entry["comparisons"][0]


def width(effect: dict) -> float:
    return effect["ci_high"] - effect["ci_low"]


def test_cuped_under_a_ramp_with_a_time_trend_is_stratified_by_phase(store: DuckDBStore) -> None:
    """No effect; the outcome rises by 3 and its pre-period by 1 in the second week, while the
    candidate goes from 5 % to 20 %. Pooling the phases makes CUPED report the trend as a lift."""
    make_flag(store, candidate=5, at=T0)
    control.ramp(store, FLAG, "production", "candidate", 20, "test", clock=lambda: T0 + timedelta(days=7))
    save_metrics(
        store, {"key": "spend", "type": "event", "event": "spend", "aggregation": "sum", "cuped_days": 14}
    )
    rng = np.random.default_rng(31)
    ev = Evidence()
    for i in range(8000):
        phase = i % 2
        start = T0 + timedelta(days=7 * phase, minutes=i)
        variation = "candidate" if rng.random() < (0.05, 0.20)[phase] else "control"
        habit = rng.gamma(2.0, 5.0)
        ev.expose(f"c{i}", variation, start)
        ev.event(f"c{i}", "spend", start - timedelta(days=3), habit + 1.0 * phase + rng.normal(0, 2))
        ev.event(f"c{i}", "spend", start + timedelta(hours=1), habit + 3.0 * phase + rng.normal(0, 2))
    ev.load(store)
    got = comparison(analysis.report(store, FLAG, "production"), "spend")
    fixed, cuped = got["fixed"], got["cuped"]
    assert fixed["ci_low"] < 0 < fixed["ci_high"]
    assert cuped["ci_low"] < 0 < cuped["ci_high"]
    assert width(cuped) < 0.5 * width(fixed)


def test_units_without_a_pre_period_form_their_own_stratum_instead_of_entering_with_0(
    store: DuckDBStore,
) -> None:
    """A third of the units are new (no pre-period events) and spend more than the regulars."""
    make_flag(store)
    save_metrics(
        store, {"key": "spend", "type": "event", "event": "spend", "aggregation": "sum", "cuped_days": 14}
    )
    rng = np.random.default_rng(6)
    ev = Evidence()
    post: dict[tuple[str, bool], list[float]] = {}
    pre: dict[str, list[float]] = {"control": [], "candidate": []}
    for i in range(900):
        variation = ("control", "candidate")[i % 2]
        start = T0 + timedelta(minutes=i)
        new = i % 3 == 0
        habit = rng.gamma(2.0, 5.0)
        ev.expose(f"c{i}", variation, start)
        if not new:
            before = habit + rng.normal(0, 2)
            ev.event(f"c{i}", "spend", start - timedelta(days=3), before)
            pre[variation].append(before)
        after = (40.0 if new else habit) + rng.normal(0, 2) + (1.0 if variation == "candidate" else 0.0)
        ev.event(f"c{i}", "spend", start + timedelta(hours=1), after)
        post.setdefault((variation, new), []).append(after)
    ev.load(store)
    got = comparison(analysis.report(store, FLAG, "production"), "spend")["cuped"]

    regulars = [RegressionMoments.from_values(post[(v, False)], pre[v]) for v in ("control", "candidate")]
    newcomers = [SampleMoments.from_values(post[(v, True)]).summary() for v in ("control", "candidate")]
    c_regular, t_regular = cuped_summaries(*regulars)
    expected = welch_test(*stratified_summaries([(c_regular, t_regular), (newcomers[0], newcomers[1])]))
    assert got["difference"] == pytest.approx(expected.absolute.estimate, rel=1e-9)
    assert got["ci_low"] == pytest.approx(expected.absolute.ci_lower, rel=1e-9)
    assert got["ci_low"] < 1.0 < got["ci_high"]

    # What entering them with a pre-period of 0 gave: the slope fits "new" as "spends nothing".
    zero_filled = [
        RegressionMoments.from_values(
            post[(v, False)] + post[(v, True)], pre[v] + [0.0] * len(post[(v, True)])
        )
        for v in ("control", "candidate")
    ]
    naive = welch_test(*cuped_summaries(*zero_filled)).absolute
    assert width(got) < 0.5 * (naive.ci_upper - naive.ci_lower)
