"""The stratified estimator across phases: unbiased under a ramp with a time trend, where pooling is not."""

import math

import numpy as np
import numpy.typing as npt
import pytest

from ramplight.core.errors import ValidationError
from ramplight.core.stats import (
    ArmSummary,
    SampleMoments,
    pooled_summaries,
    sequential_test,
    stratified_summaries,
    welch_test,
)


def arm(n: int, mean: float, variance: float, unadjusted_mean: float | None = None) -> ArmSummary:
    return ArmSummary(
        n=n,
        mean=mean,
        variance=variance,
        unadjusted_mean=mean if unadjusted_mean is None else unadjusted_mean,
    )


def values(summary: ArmSummary) -> tuple[float, float, float, float]:
    return (summary.n, summary.mean, summary.variance, summary.unadjusted_mean)


# Phase 0: 12 units, phase 1: 6 units, so the default weights are 2/3 and 1/3.
HAND_STRATA = [
    (arm(8, 1.0, 2.0), arm(4, 3.0, 4.0)),
    (arm(2, 5.0, 1.0), arm(4, 6.0, 2.0)),
]


def test_two_strata_weigh_by_units_and_combine_variances_by_squared_weights() -> None:
    control, treatment = stratified_summaries(HAND_STRATA)
    # mean_c = 2/3·1 + 1/3·5 = 7/3; Var = (2/3)²·2/8 + (1/3)²·1/2 = 1/6; n_c = 10.
    assert values(control) == pytest.approx((10, 7 / 3, 10 * (1 / 6), 7 / 3), rel=1e-12)
    # mean_t = 2/3·3 + 1/3·6 = 4; Var = (2/3)²·4/4 + (1/3)²·2/4 = 1/2; n_t = 8.
    assert values(treatment) == pytest.approx((8, 4.0, 8 * (1 / 2), 4.0), rel=1e-12)
    assert control.variance / control.n == pytest.approx(1 / 6, rel=1e-12)


def test_tests_take_stratified_summaries_directly() -> None:
    control, treatment = stratified_summaries(HAND_STRATA)
    fixed = welch_test(control, treatment)
    sequential = sequential_test(control, treatment)
    assert fixed.absolute.estimate == pytest.approx(5 / 3, rel=1e-12)
    assert fixed.absolute.std_error == pytest.approx(math.sqrt(1 / 6 + 1 / 2), rel=1e-12)
    assert sequential.absolute.std_error == pytest.approx(math.sqrt(1 / 6 + 1 / 2), rel=1e-12)


def test_the_lift_denominator_is_the_stratified_unadjusted_mean() -> None:
    strata = [
        (arm(8, 1.0, 2.0, unadjusted_mean=1.5), arm(4, 3.0, 4.0, unadjusted_mean=2.5)),
        (arm(2, 5.0, 1.0, unadjusted_mean=4.5), arm(4, 6.0, 2.0, unadjusted_mean=6.5)),
    ]
    control, treatment = stratified_summaries(strata)
    assert control.unadjusted_mean == pytest.approx(2 / 3 * 1.5 + 1 / 3 * 4.5, rel=1e-12)
    assert treatment.unadjusted_mean == pytest.approx(2 / 3 * 2.5 + 1 / 3 * 6.5, rel=1e-12)


def test_pooling_ignores_phases_and_adds_the_between_phase_spread() -> None:
    control, treatment = pooled_summaries(HAND_STRATA)
    # mean = (8·1 + 2·5)/10; SS = 7·2 + 1·1 + 8·0.8² + 2·3.2² = 40.6 over n - 1 = 9.
    assert values(control) == pytest.approx((10, 1.8, 40.6 / 9, 1.8), rel=1e-12)
    # mean = (4·3 + 4·6)/8; SS = 3·4 + 3·2 + 4·1.5² + 4·1.5² = 36 over 7.
    assert values(treatment) == pytest.approx((8, 4.5, 36 / 7, 4.5), rel=1e-12)


def test_pooled_summaries_are_the_summaries_of_the_merged_moments(rng: np.random.Generator) -> None:
    phases = [rng.lognormal(size=(2, n)) + shift for n, shift in ((37, 0.0), (120, 0.8), (5, 2.0))]
    moments = [
        (SampleMoments.from_values(x[0]), SampleMoments.from_values(x[1][: len(x[1]) // 2])) for x in phases
    ]
    control, treatment = pooled_summaries([(c.summary(), t.summary()) for c, t in moments])
    merged_c = sum((c for c, _ in moments[1:]), moments[0][0]).summary()
    merged_t = sum((t for _, t in moments[1:]), moments[0][1]).summary()
    assert values(control) == pytest.approx(values(merged_c), rel=1e-12)
    assert values(treatment) == pytest.approx(values(merged_t), rel=1e-12)


def test_one_stratum_reproduces_the_plain_summaries_exactly(rng: np.random.Generator) -> None:
    control = SampleMoments.from_values(rng.normal(size=313)).summary()
    treatment = SampleMoments.from_values(rng.normal(size=97)).summary()
    assert stratified_summaries([(control, treatment)]) == (control, treatment)
    assert stratified_summaries([(control, treatment)], weights=[7.0]) == (control, treatment)


def test_strata_with_fewer_than_two_units_in_an_arm_are_skipped_and_weights_renormalised() -> None:
    too_small = (arm(50, 9.0, 1.0), arm(1, 20.0, 0.0))
    empty_arm = (arm(40, 9.0, 1.0), arm(0, 0.0, 0.0))
    strata = [HAND_STRATA[0], too_small, empty_arm, HAND_STRATA[1]]
    assert stratified_summaries(strata) == stratified_summaries(HAND_STRATA)
    given = stratified_summaries(strata, weights=[0.2, 0.5, 0.1, 0.3])
    control, treatment = stratified_summaries(HAND_STRATA, weights=[0.4, 0.6])
    assert control.mean == pytest.approx(0.4 * 1 + 0.6 * 5, rel=1e-12)
    assert [values(s) for s in given] == [pytest.approx(values(control)), pytest.approx(values(treatment))]


def test_given_weights_are_relative() -> None:
    scaled = stratified_summaries(HAND_STRATA, weights=[2.0, 3.0])
    shares = stratified_summaries(HAND_STRATA, weights=[0.4, 0.6])
    assert [values(s) for s in scaled] == [pytest.approx(values(s), rel=1e-12) for s in shares]


def test_without_a_usable_stratum_the_pooled_summaries_are_returned() -> None:
    strata = [(arm(30, 1.0, 1.0), arm(1, 2.0, 0.0)), (arm(30, 3.0, 1.0), arm(1, 4.0, 0.0))]
    assert stratified_summaries(strata) == pooled_summaries(strata)


@pytest.mark.parametrize(
    ("weights", "message"),
    [
        ([1.0], "got 1 weights for 2 strata"),
        ([1.0, -0.5], r"weights\[1\] must be finite and >= 0"),
        ([math.nan, 1.0], r"weights\[0\] must be finite"),
        ([0.0, 0.0], "sum to 0"),
    ],
)
def test_bad_weights_are_rejected(weights: list[float], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        stratified_summaries(HAND_STRATA, weights=weights)


def test_no_strata_is_an_error() -> None:
    with pytest.raises(ValidationError, match="at least one stratum"):
        stratified_summaries([])
    with pytest.raises(ValidationError, match="at least one stratum"):
        pooled_summaries([])


# -- simulation: a 5 % → 20 % ramp while the baseline rises by half a standard deviation --------

EXPERIMENTS = 2000
PHASES = ((2000, 0.05, 0.0), (2000, 0.20, 0.5))
"""(units, treatment share, baseline mean) per phase; outcomes are normal, control sd 1."""


def _arm_moments(y: npt.NDArray[np.float64], in_arm: npt.NDArray[np.bool_]) -> list[ArmSummary]:
    """One arm's summary per experiment (row), from masked sums."""
    n = in_arm.sum(axis=1)
    sums = np.where(in_arm, y, 0.0).sum(axis=1)
    sums_sq = np.where(in_arm, y * y, 0.0).sum(axis=1)
    return [
        SampleMoments(n=int(k), sum=float(s), sum_sq=float(q)).summary()
        for k, s, q in zip(n, sums, sums_sq, strict=True)
    ]


def _simulated_strata(
    rng: np.random.Generator, effect: float, treatment_sd: float
) -> list[list[tuple[ArmSummary, ArmSummary]]]:
    """Per experiment, the (control, treatment) summaries of each phase."""
    per_phase = []
    for units, share, baseline in PHASES:
        treated = rng.random((EXPERIMENTS, units)) < share
        sd = np.where(treated, treatment_sd, 1.0)
        y = baseline + effect * treated + sd * rng.standard_normal((EXPERIMENTS, units))
        per_phase.append(list(zip(_arm_moments(y, ~treated), _arm_moments(y, treated), strict=True)))
    return [list(strata) for strata in zip(*per_phase, strict=True)]


@pytest.mark.parametrize(
    ("effect", "treatment_sd", "seed"),
    [(0.0, 1.0, 20240601), (0.1, 1.5, 20240602)],
    ids=["no-effect", "effect-0.1-unequal-variances"],
)
def test_a_ramp_under_a_time_trend_biases_pooling_but_not_the_stratified_estimate(
    effect: float, treatment_sd: float, seed: int
) -> None:
    experiments = _simulated_strata(np.random.default_rng(seed), effect, treatment_sd)
    stratified = [welch_test(*stratified_summaries(strata)).absolute for strata in experiments]
    pooled = [welch_test(*pooled_summaries(strata)).absolute for strata in experiments]
    strat_estimates = np.array([e.estimate for e in stratified])
    pooled_estimates = np.array([e.estimate for e in pooled])

    # Pooling compares a treatment arm that is 80 % late units with a control arm that is 46 %
    # late units: bias ≈ 0.5 · (0.8 - 0.457) = 0.17, far outside simulation noise.
    pooled_sim_se = pooled_estimates.std(ddof=1) / math.sqrt(EXPERIMENTS)
    assert abs(pooled_estimates.mean() - effect) > 5 * pooled_sim_se
    assert pooled_estimates.mean() - effect == pytest.approx(0.5 * (0.8 - 1600 / 3500), abs=0.01)

    strat_sim_se = strat_estimates.std(ddof=1) / math.sqrt(EXPERIMENTS)
    assert abs(strat_estimates.mean() - effect) < 3 * strat_sim_se

    # The reported standard error matches the spread of the estimates.
    reported_var = np.mean([e.std_error**2 for e in stratified])
    assert reported_var == pytest.approx(strat_estimates.var(ddof=1), rel=0.1)

    coverage = np.mean([e.ci_lower <= effect <= e.ci_upper for e in stratified])
    assert coverage == pytest.approx(0.95, abs=0.02)
    pooled_coverage = np.mean([e.ci_lower <= effect <= e.ci_upper for e in pooled])
    assert pooled_coverage < 0.5
