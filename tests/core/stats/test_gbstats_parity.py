"""Where Ramplight uses gbstats' method, it gives gbstats' numbers on the same sufficient statistics.

gbstats 0.8.0 is a test-only reference (installed with --no-deps; see docs/statistics.md).
"""

import math
from typing import Literal

import numpy as np
import pytest
from gbstats.bayesian.tests import EffectBayesianABTest, EffectBayesianConfig
from gbstats.bayesian.tests import GaussianPrior as GbGaussianPrior
from gbstats.frequentist.tests import (
    FrequentistConfig,
    OneSidedTreatmentGreaterTTest,
    OneSidedTreatmentLesserTTest,
    SequentialConfig,
    SequentialTwoSidedTTest,
    TwoSidedTTest,
)
from gbstats.models.statistics import (
    QuantileStatistic,
    RatioStatistic,
    RegressionAdjustedStatistic,
    SampleMeanStatistic,
    compute_theta,
)
from gbstats.utils import check_srm

from ramplight.core.stats import (
    EffectResult,
    GaussianPrior,
    QuantileEstimate,
    RatioMoments,
    RegressionMoments,
    SampleMoments,
    bayes_test,
    cuped_summaries,
    noninferiority_test,
    sequential_test,
    srm_test,
    theta_cuped,
    welch_test,
)

Scale = Literal["absolute", "relative"]
SCALES: tuple[Scale, ...] = ("absolute", "relative")
REL = 1e-6


def close(expected: float) -> object:
    # Relative 1e-6; the absolute floor only covers p-values that gbstats rounds via 1 - cdf.
    return pytest.approx(expected, rel=REL, abs=1e-13)


def gb_mean(m: SampleMoments) -> SampleMeanStatistic:
    return SampleMeanStatistic(n=m.n, sum=m.sum, sum_squares=m.sum_sq)


def gb_ratio(m: RatioMoments) -> RatioStatistic:
    return RatioStatistic(
        n=m.n,
        m_statistic=gb_mean(m.numerator),
        d_statistic=gb_mean(m.denominator),
        m_d_sum_of_products=m.sum_md,
    )


def gb_regression(m: RegressionMoments) -> RegressionAdjustedStatistic:
    return RegressionAdjustedStatistic(
        n=m.n,
        post_statistic=gb_mean(m.post),
        pre_statistic=gb_mean(m.pre),
        post_pre_sum_of_products=m.sum_post_pre,
        theta=0,
    )


def on_scale(result: EffectResult, scale: Scale) -> tuple[float, float, float, float, float]:
    estimate = result.absolute if scale == "absolute" else result.relative
    assert estimate is not None
    return (
        estimate.estimate,
        estimate.std_error,
        estimate.ci_lower,
        estimate.ci_upper,
        estimate.p_value,
    )


def mean_pair(seed: int) -> tuple[SampleMoments, SampleMoments]:
    """Skewed revenue-like values, unequal arm sizes and variances, a modest lift."""
    rng = np.random.default_rng(seed)
    control = rng.lognormal(1.0, 1.0, 3_000 + 500 * seed)
    treatment = rng.lognormal(1.0 + 0.02 * seed, 1.1, 2_000 + 700 * seed)
    return SampleMoments.from_values(control), SampleMoments.from_values(treatment)


def binary_pair(seed: int) -> tuple[SampleMoments, SampleMoments]:
    rng = np.random.default_rng(100 + seed)
    control = rng.binomial(1, 0.10, 8_000).astype(float)
    treatment = rng.binomial(1, 0.11 + 0.002 * seed, 8_500).astype(float)
    return SampleMoments.from_values(control), SampleMoments.from_values(treatment)


def ratio_pair(seed: int) -> tuple[RatioMoments, RatioMoments]:
    """Tokens per request: per-unit token sums over per-unit request counts."""
    rng = np.random.default_rng(200 + seed)

    def arm(n: int, tokens_per_request: float) -> RatioMoments:
        requests = rng.poisson(3.0, n) + 1.0
        tokens = rng.gamma(requests * 4.0, tokens_per_request / 4.0)
        return RatioMoments.from_values(tokens, requests)

    return arm(4_000, 300.0), arm(4_200, 300.0 * (1 + 0.01 * seed))


def regression_pair(seed: int) -> tuple[RegressionMoments, RegressionMoments]:
    rng = np.random.default_rng(300 + seed)

    def arm(n: int, lift: float) -> RegressionMoments:
        pre = rng.gamma(2.0, 5.0, n)
        post = 0.8 * pre + rng.normal(2.0 + lift, 4.0, n)
        return RegressionMoments.from_values(post, pre)

    return arm(5_000, 0.0), arm(4_500, 0.15 * seed)


SEEDS = (1, 2, 3, 4)


@pytest.mark.parametrize("scale", SCALES)
@pytest.mark.parametrize("seed", SEEDS)
def test_welch_test_matches_gbstats_two_sided_t_test_on_means(seed: int, scale: Scale) -> None:
    for control, treatment in (mean_pair(seed), binary_pair(seed)):
        theirs = TwoSidedTTest(
            gb_mean(control), gb_mean(treatment), FrequentistConfig(difference_type=scale)
        ).compute_result()
        ours = welch_test(control.summary(), treatment.summary())
        estimate, std_error, lower, upper, p_value = on_scale(ours, scale)
        assert estimate == close(theirs.expected)
        assert std_error == close(theirs.uplift.stddev)
        assert (lower, upper) == (close(theirs.ci[0]), close(theirs.ci[1]))
        assert p_value == close(theirs.p_value)


@pytest.mark.parametrize("alpha", [0.01, 0.1])
def test_welch_test_matches_gbstats_at_other_alphas(alpha: float) -> None:
    control, treatment = mean_pair(2)
    theirs = TwoSidedTTest(
        gb_mean(control), gb_mean(treatment), FrequentistConfig(alpha=alpha)
    ).compute_result()
    _, _, lower, upper, _ = on_scale(
        welch_test(control.summary(), treatment.summary(), alpha=alpha), "relative"
    )
    assert (lower, upper) == (close(theirs.ci[0]), close(theirs.ci[1]))


@pytest.mark.parametrize("scale", SCALES)
@pytest.mark.parametrize("seed", SEEDS)
def test_ratio_metrics_match_gbstats_delta_method(seed: int, scale: Scale) -> None:
    control, treatment = ratio_pair(seed)
    theirs = TwoSidedTTest(
        gb_ratio(control), gb_ratio(treatment), FrequentistConfig(difference_type=scale)
    ).compute_result()
    estimate, std_error, lower, upper, p_value = on_scale(
        welch_test(control.summary(), treatment.summary()), scale
    )
    assert estimate == close(theirs.expected)
    assert std_error == close(theirs.uplift.stddev)
    assert (lower, upper) == (close(theirs.ci[0]), close(theirs.ci[1]))
    assert p_value == close(theirs.p_value)


@pytest.mark.parametrize("seed", SEEDS)
def test_cuped_theta_is_gbstats_pooled_theta(seed: int) -> None:
    control, treatment = regression_pair(seed)
    assert theta_cuped(control, treatment) == close(
        compute_theta(gb_regression(control), gb_regression(treatment))
    )


@pytest.mark.parametrize("scale", SCALES)
@pytest.mark.parametrize("seed", SEEDS)
def test_cuped_effects_match_gbstats_regression_adjusted_t_test(seed: int, scale: Scale) -> None:
    control, treatment = regression_pair(seed)
    theirs = TwoSidedTTest(
        gb_regression(control), gb_regression(treatment), FrequentistConfig(difference_type=scale)
    ).compute_result()
    estimate, std_error, lower, upper, p_value = on_scale(
        welch_test(*cuped_summaries(control, treatment)), scale
    )
    assert estimate == close(theirs.expected)
    assert std_error == close(theirs.uplift.stddev)
    assert (lower, upper) == (close(theirs.ci[0]), close(theirs.ci[1]))
    assert p_value == close(theirs.p_value)


@pytest.mark.parametrize("tuning", [1_000.0, 5_000.0, 50_000.0])
@pytest.mark.parametrize("scale", SCALES)
@pytest.mark.parametrize("seed", SEEDS)
def test_confidence_sequence_matches_gbstats_sequential_test(seed: int, scale: Scale, tuning: float) -> None:
    means = mean_pair(seed)
    regressions = regression_pair(seed)
    pairs = [
        (gb_mean(means[0]), gb_mean(means[1]), means[0].summary(), means[1].summary()),
        (gb_regression(regressions[0]), gb_regression(regressions[1]), *cuped_summaries(*regressions)),
    ]
    for stat_a, stat_b, control, treatment in pairs:
        theirs = SequentialTwoSidedTTest(
            stat_a,
            stat_b,
            SequentialConfig(difference_type=scale, sequential_tuning_parameter=tuning),
        ).compute_result()
        _, std_error, lower, upper, p_value = on_scale(
            sequential_test(control, treatment, tuning=tuning), scale
        )
        assert std_error == close(theirs.uplift.stddev)
        assert (lower, upper) == (close(theirs.ci[0]), close(theirs.ci[1]))
        assert p_value == close(theirs.p_value)


@pytest.mark.parametrize("direction", ["increase", "decrease"])
@pytest.mark.parametrize("scale", SCALES)
@pytest.mark.parametrize("seed", SEEDS)
def test_bayes_with_flat_prior_matches_gbstats_effect_bayesian_test(
    seed: int, scale: Scale, direction: Literal["increase", "decrease"]
) -> None:
    control, treatment = mean_pair(seed)
    theirs = EffectBayesianABTest(
        gb_mean(control),
        gb_mean(treatment),
        EffectBayesianConfig(difference_type=scale, inverse=direction == "decrease"),
    ).compute_result()
    result = bayes_test(control.summary(), treatment.summary(), direction=direction)
    ours = result.absolute if scale == "absolute" else result.relative
    assert ours is not None
    assert ours.mean == close(theirs.expected)
    assert ours.std == close(theirs.uplift.stddev)
    assert (ours.ci_lower, ours.ci_upper) == (close(theirs.ci[0]), close(theirs.ci[1]))
    assert ours.chance_to_win == close(theirs.chance_to_win)
    assert (ours.risk_control, ours.risk_treatment) == (
        close(theirs.risk[0]),
        close(theirs.risk[1]),
    )


@pytest.mark.parametrize("scale", SCALES)
@pytest.mark.parametrize("seed", SEEDS)
def test_bayes_with_proper_prior_matches_gbstats_relative_prior(seed: int, scale: Scale) -> None:
    control, treatment = binary_pair(seed)
    theirs = EffectBayesianABTest(
        gb_mean(control),
        gb_mean(treatment),
        EffectBayesianConfig(
            difference_type=scale,
            prior_type="relative",
            prior_effect=GbGaussianPrior(mean=0.01, variance=0.0004, proper=True),
        ),
    ).compute_result()
    result = bayes_test(
        control.summary(),
        treatment.summary(),
        prior=GaussianPrior(mean=0.01, variance=0.0004),
    )
    ours = result.absolute if scale == "absolute" else result.relative
    assert ours is not None
    assert ours.mean == close(theirs.expected)
    assert ours.std == close(theirs.uplift.stddev)
    assert ours.chance_to_win == close(theirs.chance_to_win)
    assert (ours.risk_control, ours.risk_treatment) == (
        close(theirs.risk[0]),
        close(theirs.risk[1]),
    )


@pytest.mark.parametrize("margin_type", SCALES)
@pytest.mark.parametrize("seed", SEEDS)
def test_noninferiority_matches_gbstats_one_sided_t_tests(seed: int, margin_type: Scale) -> None:
    control, treatment = mean_pair(seed)
    margin = 0.02 if margin_type == "relative" else 0.1
    greater = OneSidedTreatmentGreaterTTest(
        gb_mean(control),
        gb_mean(treatment),
        FrequentistConfig(difference_type=margin_type, test_value=-margin),
    ).compute_result()
    ours = noninferiority_test(control.summary(), treatment.summary(), margin=margin, margin_type=margin_type)
    assert ours.p_value == close(greater.p_value)
    assert ours.bound == close(greater.ci[0])
    # Lower-is-better: same p-value as gbstats; its upper bound is taken from the estimate
    # (gbstats 0.8.0 returns [-inf, estimate - width]); we return estimate + width.
    lesser = OneSidedTreatmentLesserTTest(
        gb_mean(control),
        gb_mean(treatment),
        FrequentistConfig(difference_type=margin_type, test_value=margin),
    ).compute_result()
    ours = noninferiority_test(
        control.summary(),
        treatment.summary(),
        margin=margin,
        margin_type=margin_type,
        direction="decrease",
    )
    assert ours.p_value == close(lesser.p_value)
    assert ours.estimate is not None
    assert ours.bound == close(2 * ours.estimate - lesser.ci[1])


@pytest.mark.parametrize(
    ("observed", "weights"),
    [
        ([5_000, 5_100], [0.5, 0.5]),
        ([5_000, 5_400], [0.5, 0.5]),
        ([1_000, 2_050, 950], [0.25, 0.5, 0.25]),
        ([812, 4_100], [1.0, 5.0]),
    ],
)
def test_srm_p_value_matches_gbstats_check_srm(observed: list[int], weights: list[float]) -> None:
    assert srm_test(observed, weights).p_value == close(check_srm(observed, weights))


@pytest.mark.parametrize("level", [0.5, 0.95, 0.99])
def test_quantile_standard_error_is_gbstats_up_to_its_n_minus_one_factor(level: float) -> None:
    values = np.random.default_rng(7).lognormal(5.0, 0.6, 20_000)
    ours = QuantileEstimate.from_values(values, level)
    theirs = QuantileStatistic(
        n=ours.n,
        n_star=ours.n,
        nu=level,
        quantile_hat=ours.value,
        quantile_lower=ours.lower_value,
        quantile_upper=ours.upper_value,
    )
    gb_std_error = math.sqrt(theirs.variance / theirs.n)
    assert ours.std_error == close(gb_std_error * math.sqrt(ours.n / (ours.n - 1)))
