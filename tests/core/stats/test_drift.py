import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from scipy import stats

from ramplight.core.errors import ValidationError
from ramplight.core.stats import (
    PSI_EPSILON,
    chi_square_test,
    drift_verdict,
    ks_test,
    psi,
    worst_verdict,
)


def test_psi_of_a_half_half_split_moving_to_a_quarter_is_the_hand_value() -> None:
    want = (0.25 - 0.5) * math.log(0.25 / 0.5) + (0.75 - 0.5) * math.log(0.75 / 0.5)
    assert psi([50, 50], [25, 75]) == pytest.approx(want, abs=1e-15)
    assert want == pytest.approx(0.2747, abs=1e-4)


def test_an_empty_bin_counts_as_epsilon_so_the_index_stays_finite() -> None:
    want = (0.5 - PSI_EPSILON) * math.log(0.5 / PSI_EPSILON) + (0.5 - 1.0) * math.log(0.5 / 1.0)
    assert psi([10, 0], [5, 5]) == pytest.approx(want, abs=1e-12)


counts = st.lists(st.integers(0, 1_000), min_size=1, max_size=12).filter(lambda c: sum(c) > 0)


@given(st.data())
def test_psi_is_non_negative_symmetric_and_zero_for_the_same_shares(data: st.DataObject) -> None:
    a = data.draw(counts)
    b = data.draw(
        st.lists(st.integers(0, 1_000), min_size=len(a), max_size=len(a)).filter(lambda c: sum(c) > 0)
    )
    assert psi(a, b) >= 0
    assert psi(a, b) == pytest.approx(psi(b, a), abs=1e-12)
    assert psi(a, a) == 0
    assert psi(a, [3 * x for x in a]) == pytest.approx(0, abs=1e-15)


def test_psi_refuses_bins_that_do_not_match_or_an_empty_side() -> None:
    with pytest.raises(ValidationError):
        psi([1, 2], [1])
    with pytest.raises(ValidationError):
        psi([0, 0], [1, 1])


def test_the_ks_p_value_is_scipys_asymptotic_one() -> None:
    rng = np.random.default_rng(1)
    a, b = rng.normal(0, 1, 700), rng.normal(0.1, 1, 400)
    expected = stats.ks_2samp(a, b, method="asymp")
    result = ks_test(float(expected.statistic), len(a), len(b))
    assert result.method == "ks"
    assert result.p_value == pytest.approx(expected.pvalue, rel=1e-12)


@given(st.floats(0, 1), st.integers(1, 10_000), st.integers(1, 10_000))
def test_a_ks_p_value_is_a_probability(statistic: float, n: int, m: int) -> None:
    assert 0 <= ks_test(statistic, n, m).p_value <= 1


def test_chi_square_is_scipys_test_of_homogeneity_without_continuity_correction() -> None:
    ref, cmp = [120, 80, 0, 40], [90, 110, 0, 70]
    expected = stats.chi2_contingency([[120, 80, 40], [90, 110, 70]], correction=False)
    result = chi_square_test(ref, cmp)
    assert (result.statistic, result.p_value, result.df) == pytest.approx(
        (expected.statistic, expected.pvalue, expected.dof), rel=1e-12
    )


def test_one_category_on_both_sides_is_no_difference() -> None:
    assert chi_square_test([10, 0], [30, 0]).p_value == 1.0


@pytest.mark.parametrize(
    ("index", "p_value", "verdict"),
    [
        (0.02, 1e-9, "stable"),
        (0.0999, 1e-9, "stable"),
        (0.1, 1e-9, "moderate"),
        (0.25, 1e-9, "moderate"),
        (0.2501, 1e-9, "major"),
        (0.6, 0.3, "inconclusive"),
        (0.15, 0.05, "inconclusive"),
    ],
)
def test_the_verdict_reads_the_psi_thresholds_when_the_test_rejects(
    index: float, p_value: float, verdict: str
) -> None:
    assert drift_verdict(index, p_value, alpha=0.05) == verdict


def test_the_worst_verdict_leads() -> None:
    assert worst_verdict(["stable", "major", "inconclusive"]) == "major"
    assert worst_verdict(["stable", "inconclusive"]) == "inconclusive"
    assert worst_verdict([]) is None
