import math

import numpy as np
import pytest

from ramplight.core.stats import (
    RegressionMoments,
    cuped_summaries,
    stratified_cuped_summaries,
    theta_cuped,
    welch_test,
)

EXPERIMENTS = 2_000


def regression_rows(post: np.ndarray, pre: np.ndarray) -> list[RegressionMoments]:
    n = post.shape[1]
    return [
        RegressionMoments(
            n=n,
            sum_post=float(y.sum()),
            sum_sq_post=float(y @ y),
            sum_pre=float(x.sum()),
            sum_sq_pre=float(x @ x),
            sum_post_pre=float(y @ x),
        )
        for y, x in zip(post, pre, strict=True)
    ]


def test_cuped_intervals_keep_95_percent_coverage_and_are_narrower(
    rng: np.random.Generator,
) -> None:
    n, effect = 400, 0.3
    pre_c = rng.gamma(2.0, 5.0, (EXPERIMENTS, n))
    pre_t = rng.gamma(2.0, 5.0, (EXPERIMENTS, n))
    post_c = 0.8 * pre_c + rng.normal(2.0, 4.0, (EXPERIMENTS, n))
    post_t = 0.8 * pre_t + rng.normal(2.0 + effect, 4.0, (EXPERIMENTS, n))
    covered = 0
    width_ratio = []
    for c, t in zip(regression_rows(post_c, pre_c), regression_rows(post_t, pre_t), strict=True):
        adjusted = welch_test(*cuped_summaries(c, t)).absolute
        plain = welch_test(c.post.summary(), t.post.summary()).absolute
        covered += adjusted.ci_lower <= effect <= adjusted.ci_upper
        width_ratio.append(adjusted.std_error / plain.std_error)
    print(f"cuped coverage {covered / EXPERIMENTS}")
    assert covered / EXPERIMENTS == pytest.approx(0.95, abs=0.01)
    # Var(post) = 0.64·50 + 16 = 48, residual 16: the standard error shrinks by √(16/48).
    assert float(np.mean(width_ratio)) == pytest.approx(math.sqrt(16 / 48), rel=0.02)


def test_theta_recovers_the_regression_slope(rng: np.random.Generator) -> None:
    pre = rng.normal(10.0, 3.0, (2, 20_000))
    post = 1.7 * pre + rng.normal(0.0, 1.0, (2, 20_000))
    control, treatment = regression_rows(post, pre)
    assert theta_cuped(control, treatment) == pytest.approx(1.7, abs=0.01)


def test_without_pre_period_variation_cuped_falls_back_to_the_plain_test(
    rng: np.random.Generator,
) -> None:
    post = rng.normal(5.0, 1.0, (2, 300))
    pre = np.ones((2, 300))
    control, treatment = regression_rows(post, pre)
    assert theta_cuped(control, treatment) == 0.0
    adjusted = welch_test(*cuped_summaries(control, treatment))
    plain = welch_test(control.post.summary(), treatment.post.summary())
    assert adjusted == plain


def test_cuped_lift_is_relative_to_the_unadjusted_control_mean(
    rng: np.random.Generator,
) -> None:
    pre = rng.normal(10.0, 3.0, (2, 5_000))
    post = pre + rng.normal(0.0, 1.0, (2, 5_000))
    control, treatment = regression_rows(post, pre)
    adjusted_control, adjusted_treatment = cuped_summaries(control, treatment)
    result = welch_test(adjusted_control, adjusted_treatment)
    assert result.relative is not None
    assert result.relative.estimate == pytest.approx(
        (adjusted_treatment.mean - adjusted_control.mean) / control.post.mean
    )


def test_cuped_per_phase_stays_unbiased_under_a_ramp_where_pooled_cuped_does_not(
    rng: np.random.Generator,
) -> None:
    """No effect; 5 % then 20 % treatment; the outcome rises by 3 and the pre-period by 1 in phase 1."""
    experiments = 1_000
    arms = {(0, "c"): 1_900, (0, "t"): 100, (1, "c"): 1_600, (1, "t"): 400}
    moments: dict[tuple[int, str], list[RegressionMoments]] = {}
    for (phase, arm), n in arms.items():
        habit = rng.gamma(2.0, 5.0, (experiments, n))
        pre = habit + 1.0 * phase + rng.normal(0.0, 2.0, (experiments, n))
        post = habit + 3.0 * phase + rng.normal(0.0, 2.0, (experiments, n))
        moments[(phase, arm)] = regression_rows(post, pre)
    stratified, pooled = [], []
    for e in range(experiments):
        strata = [(moments[(p, "c")][e], moments[(p, "t")][e]) for p in (0, 1)]
        stratified.append(welch_test(*stratified_cuped_summaries(strata)).absolute)
        merged = (strata[0][0] + strata[1][0], strata[0][1] + strata[1][1])
        pooled.append(welch_test(*cuped_summaries(*merged)).absolute)
    covered = sum(r.ci_lower <= 0 <= r.ci_upper for r in stratified) / experiments
    mean, spread = np.mean([r.estimate for r in stratified]), np.std([r.estimate for r in stratified])
    print(f"stratified cuped coverage {covered}, mean {mean:.4f}")
    assert covered == pytest.approx(0.95, abs=0.02)
    assert abs(mean) < 4 * spread / math.sqrt(experiments)
    pooled_covered = sum(r.ci_lower <= 0 <= r.ci_upper for r in pooled) / experiments
    assert pooled_covered < 0.2  # the trend, credited to the treatment
