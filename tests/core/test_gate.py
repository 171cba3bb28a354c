"""The eval gate's paired non-inferiority test, against scipy's t distribution computed apart."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from scipy import stats

from ramplight.core.errors import ValidationError
from ramplight.core.gate import gate, read_scores


def _scores(control: list[float], candidate: list[float], name: str = "faithfulness") -> dict:
    rows = [{"item": f"q{i}", "variation": "control", "scores": {name: v}} for i, v in enumerate(control)]
    rows += [
        {"item": f"q{i}", "variation": "candidate", "name": name, "score": v} for i, v in enumerate(candidate)
    ]
    return read_scores(rows, ("control", "candidate"))


def test_the_lower_bound_is_the_paired_t_bound() -> None:
    rng = np.random.default_rng(3)
    control = rng.uniform(0.6, 0.9, 40)
    candidate = control + rng.normal(-0.01, 0.03, 40)
    result = gate(_scores(list(control), list(candidate)), "control", "candidate", {"faithfulness": 0.02})
    (score,) = result.scores
    d = candidate - control
    expected = d.mean() - stats.t.ppf(0.95, 39) * d.std(ddof=1) / math.sqrt(40)
    assert score.pairs == 40 and math.isclose(score.lower_bound, expected, rel_tol=1e-12)
    assert score.passed is bool(expected > -0.02) and result.passed is score.passed
    relative = gate(_scores(list(control), list(candidate)), "control", "candidate", {"faithfulness": 0.02},
                    relative=True).scores[0]  # fmt: skip
    assert math.isclose(relative.margin, 0.02 * control.mean(), rel_tol=1e-12)


def test_lower_is_better_flips_the_difference_and_unpaired_items_are_left_out() -> None:
    scores = _scores([100, 110, 120, 130], [90, 100, 115, 120, 500], name="latency_ms")
    result = gate(
        scores, "control", "candidate", {"latency_ms": 5}, lower_is_better=frozenset({"latency_ms"})
    )
    (score,) = result.scores
    assert (score.pairs, score.difference, result.unpaired) == (4, 8.75, {"latency_ms": 1})
    assert score.passed is True


@given(
    st.lists(st.floats(0, 1), min_size=3, max_size=30),
    st.floats(-0.5, 0.5),
    st.floats(0, 0.5),
)
def test_a_better_candidate_never_fails_where_a_worse_one_passes(
    base: list[float], shift: float, margin: float
) -> None:
    noise = [0.01 * ((i * 7) % 5 - 2) for i in range(len(base))]
    worse = gate(_scores(base, [b + n + shift for b, n in zip(base, noise, strict=True)]), "control", "candidate",
                 {"faithfulness": margin}).scores[0]  # fmt: skip
    better = gate(_scores(base, [b + n + shift + 0.1 for b, n in zip(base, noise, strict=True)]), "control",
                  "candidate", {"faithfulness": margin}).scores[0]  # fmt: skip
    assert better.lower_bound is not None and worse.lower_bound is not None
    assert math.isclose(better.lower_bound - worse.lower_bound, 0.1, abs_tol=1e-9)
    assert not (worse.passed and not better.passed)


def test_bad_input_is_named_by_line() -> None:
    rows = [{"item": "q1", "variation": "control", "scores": {"f": "high"}}, {"variation": "control"}]
    with pytest.raises(ValidationError) as caught:
        read_scores(rows, ("control", "candidate"))
    assert {p.field for p in caught.value.problems} == {"line 1.scores.f", "line 2.item"}
    with pytest.raises(ValidationError, match="no scores named 'helpfulness'"):
        gate(_scores([1, 2], [1, 2]), "control", "candidate", {"helpfulness": 0.1})
    too_few = gate(_scores([1], [1]), "control", "candidate", {"faithfulness": 0.1})
    assert too_few.passed is False and "fewer than 2" in too_few.scores[0].reason
