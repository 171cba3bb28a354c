import math

import numpy as np
import pytest
from scipy import stats

from ramplight.core.errors import ValidationError
from ramplight.core.stats import QuantileEstimate, RatioMoments, density_levels, welch_test

EXPERIMENTS = 2_000
LIFT = 1.05  # treatment latencies are 5 % slower at every quantile


def estimates_per_row(values: np.ndarray, level: float) -> list[QuantileEstimate]:
    """What the warehouse returns for each simulated experiment: quantile_cont at three levels."""
    n = values.shape[1]
    lower_level, upper_level = density_levels(n, level)
    lower, value, upper = np.quantile(values, [lower_level, level, upper_level], axis=1)
    return [
        QuantileEstimate(
            n=n,
            level=level,
            value=float(v),
            lower_level=lower_level,
            lower_value=float(lo),
            upper_level=upper_level,
            upper_value=float(up),
        )
        for lo, v, up in zip(lower, value, upper, strict=True)
    ]


@pytest.mark.parametrize(("level", "n"), [(0.5, 1_000), (0.95, 2_000), (0.99, 5_000)])
def test_quantile_difference_intervals_cover_95_percent_of_the_time(
    rng: np.random.Generator, level: float, n: int
) -> None:
    control = rng.lognormal(6.0, 0.8, (EXPERIMENTS, n))
    treatment = LIFT * rng.lognormal(6.0, 0.8, (EXPERIMENTS, n))
    true_control = float(stats.lognorm(0.8, scale=math.exp(6.0)).ppf(level))
    true_difference = (LIFT - 1) * true_control
    covered_abs = covered_rel = 0
    for c, t in zip(estimates_per_row(control, level), estimates_per_row(treatment, level), strict=True):
        result = welch_test(c.summary(), t.summary())
        assert result.relative is not None
        covered_abs += result.absolute.ci_lower <= true_difference <= result.absolute.ci_upper
        covered_rel += result.relative.ci_lower <= LIFT - 1 <= result.relative.ci_upper
    print(
        f"p{level * 100:g} coverage: absolute {covered_abs / EXPERIMENTS}, relative {covered_rel / EXPERIMENTS}"
    )
    assert covered_abs / EXPERIMENTS == pytest.approx(0.95, abs=0.01)
    assert covered_rel / EXPERIMENTS == pytest.approx(0.95, abs=0.01)


def test_event_level_quantiles_need_the_per_unit_counts_to_keep_coverage(
    rng: np.random.Generator,
) -> None:
    # 400 units per arm, 5 requests each; a unit's requests share a unit-level slowness.
    units, per_unit, level = 400, 5, 0.95

    def latencies() -> np.ndarray:
        unit_effect = rng.normal(0.0, 0.6, (EXPERIMENTS, units, 1))
        return np.exp(6.0 + unit_effect + rng.normal(0.0, 0.4, (EXPERIMENTS, units, per_unit)))

    true_p95 = math.exp(6.0 + stats.norm.ppf(level) * math.sqrt(0.6**2 + 0.4**2))
    arms = []
    for values in (latencies(), latencies()):
        flat = values.reshape(EXPERIMENTS, units * per_unit)
        naive = estimates_per_row(flat, level)
        below = (values <= np.array([e.value for e in naive])[:, None, None]).sum(axis=2)
        clustered = [
            QuantileEstimate(
                n=e.n,
                level=e.level,
                value=e.value,
                lower_level=e.lower_level,
                lower_value=e.lower_value,
                upper_level=e.upper_level,
                upper_value=e.upper_value,
                at_or_below=RatioMoments.from_values(b, np.full(units, float(per_unit))),
            )
            for e, b in zip(naive, below, strict=True)
        ]
        arms.append((naive, clustered))
    covered = {"naive": 0, "clustered": 0}
    for i in range(EXPERIMENTS):
        for kind, k in (("naive", 0), ("clustered", 1)):
            control, treatment = arms[0][k][i], arms[1][k][i]
            result = welch_test(control.summary(), treatment.summary()).absolute
            covered[kind] += result.ci_lower <= 0.0 <= result.ci_upper
    coverage = {kind: hits / EXPERIMENTS for kind, hits in covered.items()}
    print(f"event-level p95 coverage: {coverage}")
    assert coverage["clustered"] == pytest.approx(0.95, abs=0.01)
    assert coverage["naive"] < 0.90
    assert np.mean([c.value for c in arms[0][1]]) == pytest.approx(true_p95, rel=0.01)


def test_density_levels_follow_the_binomial_rank_spread_and_stay_in_the_unit_interval() -> None:
    lower, upper = density_levels(10_000, 0.95)
    half_width = 1.959964 * math.sqrt(0.95 * 0.05 / 10_000)
    assert (lower, upper) == (pytest.approx(0.95 - half_width), pytest.approx(0.95 + half_width))
    assert density_levels(10, 0.99)[1] == 1.0


def test_inconsistent_levels_are_rejected() -> None:
    with pytest.raises(ValidationError, match="lower_level"):
        QuantileEstimate(
            n=100,
            level=0.95,
            value=1.0,
            lower_level=0.96,
            lower_value=0.9,
            upper_level=0.97,
            upper_value=1.1,
        )
