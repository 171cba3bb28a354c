from collections.abc import Callable

import numpy as np
import pytest

from ramplight.core.stats import ArmSummary, SampleMoments, noninferiority_test

EXPERIMENTS = 2_000


def arm(mean: float, n: int = 10_000, variance: float = 1.0) -> ArmSummary:
    return ArmSummary(n=n, mean=mean, variance=variance, unadjusted_mean=mean)


def test_false_non_inferiority_at_the_margin_happens_alpha_of_the_time(
    rng: np.random.Generator,
    moments_per_row: Callable[[np.ndarray], list[SampleMoments]],
) -> None:
    # True lift exactly −5 %: a guardrail at a 5 % margin should pass only 5 % of the time.
    control = moments_per_row(rng.normal(10.0, 4.0, (EXPERIMENTS, 800)))
    treatment = moments_per_row(rng.normal(9.5, 4.0, (EXPERIMENTS, 800)))
    passed = [
        noninferiority_test(c.summary(), t.summary(), margin=0.05).non_inferior
        for c, t in zip(control, treatment, strict=True)
    ]
    passed_sequential = [
        noninferiority_test(c.summary(), t.summary(), margin=0.05, sequential_tuning=5_000).non_inferior
        for c, t in zip(control, treatment, strict=True)
    ]
    print(f"non-inferiority type I error: fixed {np.mean(passed)}, sequential {np.mean(passed_sequential)}")
    assert float(np.mean(passed)) == pytest.approx(0.05, abs=0.01)
    assert float(np.mean(passed_sequential)) <= 0.05


def test_a_neutral_change_passes_a_conversion_guardrail() -> None:
    result = noninferiority_test(arm(1.00), arm(1.00), margin=0.05)
    assert result.non_inferior
    assert not result.inferior
    assert result.threshold == -0.05
    assert result.bound > -0.05


def test_a_clearly_worse_conversion_rate_is_inferior_with_confidence() -> None:
    result = noninferiority_test(arm(1.00), arm(0.90), margin=0.05)
    assert result.inferior
    assert not result.non_inferior


def test_for_latency_higher_is_worse_so_the_margin_sits_above_zero() -> None:
    slightly_slower = noninferiority_test(
        arm(200.0, variance=900.0), arm(201.0, variance=900.0), margin=0.05, direction="decrease"
    )
    assert slightly_slower.threshold == 0.05
    assert slightly_slower.non_inferior
    much_slower = noninferiority_test(
        arm(200.0, variance=900.0), arm(240.0, variance=900.0), margin=0.05, direction="decrease"
    )
    assert much_slower.inferior
    faster_latency_with_increase_direction = noninferiority_test(
        arm(200.0, variance=900.0), arm(240.0, variance=900.0), margin=0.05
    )
    assert faster_latency_with_increase_direction.non_inferior


def test_an_absolute_margin_is_in_the_metrics_units() -> None:
    # Error rate 2.0 % → 2.3 %: fine under a 0.5-point margin, not under 0.1 point.
    control = arm(0.020, n=50_000, variance=0.0196)
    treatment = arm(0.023, n=50_000, variance=0.0225)
    loose = noninferiority_test(
        control, treatment, margin=0.005, margin_type="absolute", direction="decrease"
    )
    tight = noninferiority_test(
        control, treatment, margin=0.001, margin_type="absolute", direction="decrease"
    )
    assert loose.non_inferior
    assert not tight.non_inferior


def test_the_sequential_bound_is_more_conservative_than_the_fixed_one() -> None:
    fixed = noninferiority_test(arm(1.0, n=2_000), arm(0.99, n=2_000), margin=0.05)
    sequential = noninferiority_test(
        arm(1.0, n=2_000), arm(0.99, n=2_000), margin=0.05, sequential_tuning=5_000
    )
    assert sequential.bound < fixed.bound
    assert sequential.p_value > fixed.p_value


def test_a_relative_margin_against_a_zero_control_mean_cannot_pass() -> None:
    result = noninferiority_test(arm(0.0), arm(0.01), margin=0.05, direction="decrease")
    assert result.estimate is None
    assert not result.non_inferior
    assert not result.inferior
    assert result.p_value == 1.0
