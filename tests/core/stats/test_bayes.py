import math
from collections.abc import Callable

import numpy as np
import pytest

from ramplight.core.errors import ValidationError
from ramplight.core.stats import ArmSummary, GaussianPrior, SampleMoments, bayes_test

EXPERIMENTS = 2_000


def test_flat_prior_credible_intervals_cover_the_true_lift_95_percent_of_the_time(
    rng: np.random.Generator,
    moments_per_row: Callable[[np.ndarray], list[SampleMoments]],
) -> None:
    control = rng.binomial(1, 0.20, (EXPERIMENTS, 3_000)).astype(float)
    treatment = rng.binomial(1, 0.22, (EXPERIMENTS, 3_000)).astype(float)
    covered = 0
    for c, t in zip(moments_per_row(control), moments_per_row(treatment), strict=True):
        relative = bayes_test(c.summary(), t.summary()).relative
        assert relative is not None
        covered += relative.ci_lower <= 0.1 <= relative.ci_upper
    print(f"bayes credible interval coverage {covered / EXPERIMENTS}")
    assert covered / EXPERIMENTS == pytest.approx(0.95, abs=0.01)


def test_chance_to_win_is_calibrated_when_there_is_no_effect(
    rng: np.random.Generator,
    moments_per_row: Callable[[np.ndarray], list[SampleMoments]],
) -> None:
    control = rng.normal(10.0, 3.0, (EXPERIMENTS, 500))
    treatment = rng.normal(10.0, 3.0, (EXPERIMENTS, 500))
    chances = np.array(
        [
            bayes_test(c.summary(), t.summary()).absolute.chance_to_win
            for c, t in zip(moments_per_row(control), moments_per_row(treatment), strict=True)
        ]
    )
    # Under no effect the chance to win is uniform: 10 % of experiments land beyond 5 % / 95 %.
    confident = (chances > 0.95) | (chances < 0.05)
    print(f"null chance to win beyond 5 %/95 %: {confident.mean()}")
    assert float(np.mean(confident)) == pytest.approx(0.10, abs=0.015)
    assert float(np.mean(chances)) == pytest.approx(0.5, abs=0.02)


CONTROL = ArmSummary(n=5_000, mean=0.100, variance=0.09, unadjusted_mean=0.100)
TREATMENT = ArmSummary(n=5_000, mean=0.104, variance=0.0934, unadjusted_mean=0.104)


def test_a_decrease_is_good_metric_swaps_chance_to_win_and_the_risks() -> None:
    up = bayes_test(CONTROL, TREATMENT).absolute
    down = bayes_test(CONTROL, TREATMENT, direction="decrease").absolute
    assert down.chance_to_win == pytest.approx(1 - up.chance_to_win)
    assert (down.risk_control, down.risk_treatment) == (
        pytest.approx(up.risk_treatment),
        pytest.approx(up.risk_control),
    )


def test_risks_differ_by_the_posterior_mean_improvement() -> None:
    # E[max(X, 0)] − E[max(−X, 0)] = E[X].
    estimate = bayes_test(CONTROL, TREATMENT).absolute
    assert estimate.risk_control - estimate.risk_treatment == pytest.approx(estimate.mean)
    assert estimate.risk_control > 0
    assert estimate.risk_treatment > 0


def test_a_proper_prior_shrinks_the_lift_towards_the_prior_mean() -> None:
    flat = bayes_test(CONTROL, TREATMENT).relative
    shrunk = bayes_test(CONTROL, TREATMENT, prior=GaussianPrior(mean=0.0, variance=0.01**2)).relative
    assert flat is not None
    assert shrunk is not None
    assert 0 < shrunk.mean < flat.mean
    assert shrunk.std < flat.std


def test_without_usable_data_the_posterior_claims_nothing() -> None:
    empty = ArmSummary(n=0, mean=0.0, variance=0.0, unadjusted_mean=0.0)
    result = bayes_test(empty, TREATMENT)
    assert result.relative is None
    assert result.absolute.chance_to_win == 0.5
    assert result.absolute.risk_treatment == math.inf


def test_a_prior_needs_positive_variance() -> None:
    with pytest.raises(ValidationError, match="prior variance"):
        GaussianPrior(mean=0.0, variance=0.0)
