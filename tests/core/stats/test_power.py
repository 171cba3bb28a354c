import math
from collections.abc import Callable

import numpy as np
import pytest

from ramplight.core.errors import ValidationError
from ramplight.core.stats import (
    SampleMoments,
    minimum_detectable_effect,
    sample_size,
    sequential_test,
    welch_test,
)

MEAN, VARIANCE = 12.0, 30.0


@pytest.mark.parametrize("sequential_tuning", [None, 5_000.0])
@pytest.mark.parametrize("direction", ["increase", "decrease"])
@pytest.mark.parametrize("share", [0.5, 0.2])
@pytest.mark.parametrize("n", [2_000, 40_000, 1_000_000])
def test_the_mde_at_n_units_is_the_effect_that_needs_exactly_n_units(
    n: int, share: float, direction: str, sequential_tuning: float | None
) -> None:
    mde = minimum_detectable_effect(
        n_control=(1 - share) * n,
        n_treatment=share * n,
        mean=MEAN,
        variance=VARIANCE,
        direction="increase" if direction == "increase" else "decrease",
        sequential_tuning=sequential_tuning,
    )
    assert mde.relative is not None
    assert (mde.relative > 0) == (direction == "increase")
    needed = sample_size(
        relative_effect=mde.relative,
        mean=MEAN,
        variance=VARIANCE,
        treatment_share=share,
        sequential_tuning=sequential_tuning,
    )
    assert abs(needed.units_needed - n) <= 1


def test_units_needed_give_the_requested_power_in_simulation(
    rng: np.random.Generator,
    moments_per_row: Callable[[np.ndarray], list[SampleMoments]],
) -> None:
    lift = 0.05
    plan = sample_size(relative_effect=lift, mean=MEAN, variance=VARIANCE)
    per_arm = plan.units_needed // 2
    sd = math.sqrt(VARIANCE)
    control = moments_per_row(rng.normal(MEAN, sd, (2_000, per_arm)))
    treatment = moments_per_row(rng.normal(MEAN * (1 + lift), sd, (2_000, per_arm)))
    detected = [
        welch_test(c.summary(), t.summary()).relative.p_value < 0.05  # type: ignore[union-attr]
        for c, t in zip(control, treatment, strict=True)
    ]
    print(f"simulated power at {per_arm} units per arm: {np.mean(detected)}")
    assert float(np.mean(detected)) == pytest.approx(0.80, abs=0.03)


def test_sequential_units_needed_give_the_requested_power_at_that_look(
    rng: np.random.Generator,
    moments_per_row: Callable[[np.ndarray], list[SampleMoments]],
) -> None:
    lift = 0.05
    plan = sample_size(relative_effect=lift, mean=MEAN, variance=VARIANCE, sequential_tuning=5_000)
    per_arm = plan.units_needed // 2
    sd = math.sqrt(VARIANCE)
    control = moments_per_row(rng.normal(MEAN, sd, (2_000, per_arm)))
    treatment = moments_per_row(rng.normal(MEAN * (1 + lift), sd, (2_000, per_arm)))
    detected = [
        sequential_test(c.summary(), t.summary()).relative.ci_lower > 0  # type: ignore[union-attr]
        for c, t in zip(control, treatment, strict=True)
    ]
    print(f"simulated sequential power at {per_arm} units per arm: {np.mean(detected)}")
    assert float(np.mean(detected)) == pytest.approx(0.80, abs=0.03)


def test_continuous_monitoring_needs_more_units_than_a_fixed_horizon() -> None:
    fixed = sample_size(relative_effect=0.03, mean=MEAN, variance=VARIANCE)
    sequential = sample_size(relative_effect=0.03, mean=MEAN, variance=VARIANCE, sequential_tuning=5_000)
    assert sequential.units_needed > fixed.units_needed


def test_time_left_is_the_missing_units_at_the_current_daily_traffic() -> None:
    plan = sample_size(
        relative_effect=0.05, mean=MEAN, variance=VARIANCE, current_units=1_000, units_per_day=500
    )
    assert plan.units_remaining == plan.units_needed - 1_000
    assert plan.days_remaining == pytest.approx(plan.units_remaining / 500)
    done = sample_size(
        relative_effect=0.05, mean=MEAN, variance=VARIANCE, current_units=10**9, units_per_day=500
    )
    assert (done.units_remaining, done.days_remaining) == (0, 0.0)
    stalled = sample_size(relative_effect=0.05, mean=MEAN, variance=VARIANCE, units_per_day=0)
    assert stalled.days_remaining == math.inf
    assert sample_size(relative_effect=0.05, mean=MEAN, variance=VARIANCE).days_remaining is None


def test_the_absolute_mde_is_the_z_sum_times_the_standard_error() -> None:
    mde = minimum_detectable_effect(n_control=1_000, n_treatment=1_000, mean=MEAN, variance=VARIANCE)
    assert mde.absolute == pytest.approx((1.959964 + 0.841621) * math.sqrt(VARIANCE * 2 / 1_000))


def test_a_lift_too_small_for_the_sample_is_reported_as_undetectable() -> None:
    tiny = minimum_detectable_effect(n_control=3, n_treatment=3, mean=1.0, variance=100.0)
    assert tiny.relative == math.inf
    tiny_down = minimum_detectable_effect(
        n_control=3, n_treatment=3, mean=1.0, variance=100.0, direction="decrease"
    )
    assert tiny_down.relative == -math.inf


def test_a_zero_mean_has_no_relative_mde() -> None:
    mde = minimum_detectable_effect(n_control=100, n_treatment=100, mean=0.0, variance=1.0)
    assert mde.relative is None


@pytest.mark.parametrize("effect", [0.0, -1.0, -2.0])
def test_sample_size_rejects_effects_that_cannot_be_detected(effect: float) -> None:
    with pytest.raises(ValidationError, match="relative_effect"):
        sample_size(relative_effect=effect, mean=MEAN, variance=VARIANCE)
