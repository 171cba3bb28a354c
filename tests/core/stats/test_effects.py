import math
from collections.abc import Callable

import numpy as np
import pytest

from ramplight.core.errors import ValidationError
from ramplight.core.stats import ArmSummary, SampleMoments, welch_test

EXPERIMENTS = 2_000
MomentsFactory = Callable[[np.ndarray], list[SampleMoments]]


def test_welch_intervals_cover_the_true_difference_and_lift_95_percent_of_the_time(
    rng: np.random.Generator, moments_per_row: MomentsFactory
) -> None:
    # Skewed (lognormal) per-unit revenue, unequal variances, a 5 % lift.
    sigma_c, sigma_t = 0.8, 0.9
    control = rng.lognormal(0.0, sigma_c, (EXPERIMENTS, 600))
    treatment = rng.lognormal(math.log(1.05) - (sigma_t**2 - sigma_c**2) / 2, sigma_t, (EXPERIMENTS, 500))
    mu_c = math.exp(sigma_c**2 / 2)
    mu_t = 1.05 * mu_c
    covered_abs = covered_rel = 0
    for c, t in zip(moments_per_row(control), moments_per_row(treatment), strict=True):
        result = welch_test(c.summary(), t.summary())
        assert result.relative is not None
        covered_abs += result.absolute.ci_lower <= mu_t - mu_c <= result.absolute.ci_upper
        covered_rel += result.relative.ci_lower <= 0.05 <= result.relative.ci_upper
    print(f"welch coverage: absolute {covered_abs / EXPERIMENTS}, relative {covered_rel / EXPERIMENTS}")
    assert covered_abs / EXPERIMENTS == pytest.approx(0.95, abs=0.01)
    assert covered_rel / EXPERIMENTS == pytest.approx(0.95, abs=0.01)


def test_p_value_is_below_alpha_exactly_when_the_interval_excludes_zero(
    rng: np.random.Generator,
) -> None:
    for _ in range(200):
        control = SampleMoments.from_values(rng.normal(1.0, 1.0, 50))
        treatment = SampleMoments.from_values(rng.normal(1.3, 1.5, 40))
        result = welch_test(control.summary(), treatment.summary(), alpha=0.1)
        for estimate in (result.absolute, result.relative):
            assert estimate is not None
            excludes_zero = estimate.ci_lower > 0 or estimate.ci_upper < 0
            assert (estimate.p_value < 0.1) == excludes_zero


def test_lift_is_undefined_when_the_control_mean_is_zero() -> None:
    control = SampleMoments(n=100, sum=0.0, sum_sq=0.0)
    treatment = SampleMoments(n=100, sum=3.0, sum_sq=3.0)
    result = welch_test(control.summary(), treatment.summary())
    assert result.relative is None
    assert result.absolute.estimate == pytest.approx(0.03)


@pytest.mark.parametrize(
    ("control", "treatment"),
    [
        (SampleMoments(n=1, sum=1.0, sum_sq=1.0), SampleMoments(n=50, sum=60.0, sum_sq=90.0)),
        (SampleMoments(n=0, sum=0.0, sum_sq=0.0), SampleMoments(n=50, sum=60.0, sum_sq=90.0)),
        (SampleMoments(n=80, sum=80.0, sum_sq=80.0), SampleMoments(n=90, sum=90.0, sum_sq=90.0)),
    ],
    ids=["one-control-unit", "empty-control", "constant-values"],
)
def test_data_that_cannot_support_inference_gives_an_interval_that_claims_nothing(
    control: SampleMoments, treatment: SampleMoments
) -> None:
    absolute = welch_test(control.summary(), treatment.summary()).absolute
    assert (absolute.ci_lower, absolute.ci_upper) == (-math.inf, math.inf)
    assert absolute.p_value == 1.0
    assert absolute.std_error == math.inf


def test_narrower_alpha_gives_a_wider_interval() -> None:
    control = ArmSummary(n=1_000, mean=10.0, variance=4.0, unadjusted_mean=10.0)
    treatment = ArmSummary(n=1_000, mean=10.3, variance=4.0, unadjusted_mean=10.3)
    wide = welch_test(control, treatment, alpha=0.01).absolute
    narrow = welch_test(control, treatment, alpha=0.2).absolute
    assert wide.ci_lower < narrow.ci_lower < narrow.ci_upper < wide.ci_upper


@pytest.mark.parametrize("alpha", [0.0, 1.0, -0.1, 1.5])
def test_alpha_outside_the_unit_interval_is_rejected(alpha: float) -> None:
    arm = ArmSummary(n=10, mean=1.0, variance=1.0, unadjusted_mean=1.0)
    with pytest.raises(ValidationError, match="alpha"):
        welch_test(arm, arm, alpha=alpha)
