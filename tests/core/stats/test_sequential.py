import math

import numpy as np
import pytest

from ramplight.core.stats import (
    DEFAULT_TUNING,
    SampleMoments,
    boundary_multiplier,
    sequential_test,
    welch_test,
)

EXPERIMENTS = 2_000
LOOKS = 25
BATCH = 200  # units per arm between looks


def cumulative_normal_moments(
    rng: np.random.Generator, mean: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Running n, sum and sum of squares of N(mean, 1) units, drawn batch by batch.

    Within a batch the sample mean and the sum of squared deviations are independent,
    N(m·mean, m) and chi-square(m − 1), so moments are exact without drawing every unit.
    """
    batch_sum = rng.normal(BATCH * mean, math.sqrt(BATCH), (EXPERIMENTS, LOOKS))
    deviations = rng.chisquare(BATCH - 1, (EXPERIMENTS, LOOKS))
    batch_sum_sq = deviations + batch_sum**2 / BATCH
    n = BATCH * np.arange(1, LOOKS + 1)
    return n, batch_sum.cumsum(axis=1), batch_sum_sq.cumsum(axis=1)


def test_confidence_sequence_keeps_coverage_under_continuous_peeking_where_fixed_does_not(
    rng: np.random.Generator,
) -> None:
    true_effect = 0.1
    n, c_sum, c_sq = cumulative_normal_moments(rng, 1.0)
    _, t_sum, t_sq = cumulative_normal_moments(rng, 1.0 + true_effect)
    fixed_ever_missed = np.zeros(EXPERIMENTS, dtype=bool)
    sequential_ever_missed = np.zeros(EXPERIMENTS, dtype=bool)
    for e in range(EXPERIMENTS):
        for look in range(LOOKS):
            control = SampleMoments(int(n[look]), float(c_sum[e, look]), float(c_sq[e, look]))
            treatment = SampleMoments(int(n[look]), float(t_sum[e, look]), float(t_sq[e, look]))
            fixed = welch_test(control.summary(), treatment.summary()).absolute
            sequential = sequential_test(control.summary(), treatment.summary()).absolute
            fixed_ever_missed[e] |= not fixed.ci_lower <= true_effect <= fixed.ci_upper
            sequential_ever_missed[e] |= not sequential.ci_lower <= true_effect <= sequential.ci_upper
    fixed_coverage = 1 - fixed_ever_missed.mean()
    sequential_coverage = 1 - sequential_ever_missed.mean()
    print(f"coverage over {LOOKS} looks: fixed {fixed_coverage:.3f}, sequence {sequential_coverage:.3f}")
    assert sequential_coverage >= 0.95
    assert fixed_coverage < 0.85


def test_confidence_sequence_is_wider_than_the_fixed_interval_and_still_shrinks() -> None:
    widths = []
    for n in (1_000, 10_000, 100_000):
        control = SampleMoments(n=n, sum=1.0 * n, sum_sq=2.0 * n)
        treatment = SampleMoments(n=n, sum=1.01 * n, sum_sq=2.03 * n)
        fixed = welch_test(control.summary(), treatment.summary()).absolute
        sequential = sequential_test(control.summary(), treatment.summary()).absolute
        assert sequential.ci_upper - sequential.ci_lower > fixed.ci_upper - fixed.ci_lower
        widths.append(sequential.ci_upper - sequential.ci_lower)
    assert widths == sorted(widths, reverse=True)


@pytest.mark.parametrize("n", [100, 5_000, 400_000])
def test_always_valid_p_value_is_below_alpha_exactly_when_the_sequence_excludes_zero(
    n: int,
) -> None:
    for lift in np.linspace(0.0, 0.3, 31):
        control = SampleMoments(n=n, sum=1.0 * n, sum_sq=3.0 * n)
        treatment = SampleMoments(n=n, sum=(1.0 + lift) * n, sum_sq=3.0 * n)
        result = sequential_test(control.summary(), treatment.summary()).absolute
        excludes_zero = result.ci_lower > 0
        assert (result.p_value < 0.05) == excludes_zero


@pytest.mark.parametrize("n", [1_000, 5_000, 100_000])
def test_tuning_the_sequence_for_n_units_makes_it_nearly_tightest_at_n(n: int) -> None:
    tuned = boundary_multiplier(n, 0.05, n)
    others = [boundary_multiplier(n, 0.05, t) for t in np.geomspace(n / 100, n * 100, 401)]
    assert tuned <= min(others) * (1 + 1e-4)
    assert boundary_multiplier(n, 0.05, DEFAULT_TUNING) > 1.959964  # always wider than fixed
