import math

import pytest
from scipy import stats

from ramplight.core.errors import ValidationError
from ramplight.core.stats import combined_srm_test, srm_test


def test_a_52_48_split_against_50_50_weights_is_flagged_at_large_n() -> None:
    result = srm_test([52_000, 48_000], [0.5, 0.5])
    assert result.mismatch
    assert result.p_value < 1e-30
    assert result.df == 1


def test_a_52_48_split_is_not_flagged_at_small_n() -> None:
    result = srm_test([520, 480], [0.5, 0.5])
    assert not result.mismatch
    assert result.p_value == pytest.approx(0.2059, abs=1e-4)  # chi-square 1.6 on 1 df


def test_a_ramp_with_unequal_weights_is_checked_against_those_weights() -> None:
    assert not srm_test([9_520, 480], [0.95, 0.05]).mismatch
    assert srm_test([9_000, 1_000], [0.95, 0.05]).mismatch


def test_units_in_a_variation_with_zero_weight_are_a_mismatch() -> None:
    result = srm_test([1_000, 1_000, 3], [0.5, 0.5, 0.0])
    assert result.mismatch
    assert result.p_value == 0.0
    assert result.chi_square == math.inf


def test_an_empty_zero_weight_variation_is_left_out_of_the_degrees_of_freedom() -> None:
    assert srm_test([1_000, 1_010, 0], [0.5, 0.5, 0.0]).df == 1


def test_no_units_yet_is_not_a_mismatch() -> None:
    assert srm_test([0, 0], [0.5, 0.5]).p_value == 1.0


@pytest.mark.parametrize(
    ("observed", "weights"),
    [([10], [1.0]), ([10, 10], [0.5]), ([-1, 10], [0.5, 0.5]), ([10, 10], [0.0, 0.0])],
)
def test_malformed_inputs_are_rejected(observed: list[int], weights: list[float]) -> None:
    with pytest.raises(ValidationError):
        srm_test(observed, weights)


def test_a_small_imbalance_in_every_phase_adds_up_in_the_combined_test() -> None:
    phases = [([5_130, 4_870], [50.0, 50.0]), ([8_100, 1_900], [80.0, 20.0]), ([5_150, 4_850], [50.0, 50.0])]
    assert not any(srm_test(observed, weights).mismatch for observed, weights in phases)
    combined = combined_srm_test(phases)
    chi_square = sum(srm_test(observed, weights).chi_square for observed, weights in phases)
    assert combined.df == 3
    assert combined.chi_square == pytest.approx(chi_square, rel=1e-12)
    assert combined.p_value == pytest.approx(stats.chi2.sf(chi_square, 3), rel=1e-9)
    assert combined.mismatch


def test_units_in_a_zero_weight_variation_make_the_combined_test_a_mismatch() -> None:
    combined = combined_srm_test([([500, 500], [50.0, 50.0]), ([10, 990], [0.0, 100.0])])
    assert combined.mismatch and combined.p_value == 0.0


def test_the_sequential_srm_p_value_stays_valid_when_checked_after_every_batch() -> None:
    """Checked 40 times per path, the always-valid p-value rarely ever dips below α under the
    null, while a repeated chi-square does so far more often; a real 55/45 split is caught."""
    import numpy as np

    from ramplight.core.stats.srm import sequential_srm_p_value

    rng = np.random.default_rng(11)
    paths, looks, per_look, alpha = 300, 40, 50, 0.05
    sequential_alarms = chi_square_alarms = 0
    for _ in range(paths):
        counts = np.cumsum(rng.binomial(per_look, 0.5, size=looks))
        totals = per_look * np.arange(1, looks + 1)
        seq = [
            sequential_srm_p_value([int(c), int(t - c)], [50, 50])
            for c, t in zip(counts, totals, strict=True)
        ]
        chi = [srm_test([int(c), int(t - c)], [50, 50]).p_value for c, t in zip(counts, totals, strict=True)]
        sequential_alarms += min(seq) < alpha
        chi_square_alarms += min(chi) < alpha
    assert sequential_alarms / paths <= alpha
    assert chi_square_alarms / paths > 2 * alpha
    assert sequential_srm_p_value([5500, 4500], [50, 50]) < 1e-6
    assert sequential_srm_p_value([3, 1], [100, 0]) == 0.0  # units in a variation of weight 0
