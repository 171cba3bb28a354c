"""Quantile metrics (p50, p95, p99 latency): the standard error of a sample quantile.

The warehouse returns the quantile and two neighbouring quantiles; their spread estimates the
density at the quantile (Siddiqui-Bloch-Gastwirth), which gives the sampling variance. The
result is an ArmSummary, so every test in this package applies to quantile differences.
"""

import math
from dataclasses import dataclass
from typing import Self

import numpy as np
import numpy.typing as npt
from scipy import special

from ramplight.core.errors import ValidationError
from ramplight.core.stats._contrast import check_alpha
from ramplight.core.stats.suffstats import ArmSummary, RatioMoments


def density_levels(n: int, level: float, *, alpha: float = 0.05) -> tuple[float, float]:
    """Neighbouring levels p -+ z·√(p(1 - p)/n) at which the warehouse should also take quantiles.

    With these levels the standard error equals the distribution-free order-statistic interval
    divided by 2z, as gbstats' QuantileStatistic. Clipped to [0, 1].
    """
    check_alpha(alpha)
    if n <= 0 or not 0 < level < 1:
        raise ValidationError(f"need n > 0 and a level in (0, 1), got n={n}, level={level}")
    # Normal approximation to the binomial rank of the p-quantile (e.g. Conover 1999 §3.2).
    h = float(special.ndtri(1 - alpha / 2)) * math.sqrt(level * (1 - level) / n)
    return max(level - h, 0.0), min(level + h, 1.0)


@dataclass(frozen=True, slots=True)
class QuantileEstimate:
    """A sample quantile of `n` values and two neighbouring quantiles, for the density at it.

    For event-level quantiles (many events per unit) pass `at_or_below`: per unit, the events at
    or below `value` (numerator) and all events (denominator). The variance then accounts for
    events of one unit being alike; without it events are taken as independent.
    """

    n: int
    level: float
    value: float
    lower_level: float
    lower_value: float
    upper_level: float
    upper_value: float
    at_or_below: RatioMoments | None = None

    def __post_init__(self) -> None:
        if self.n < 0:
            raise ValidationError(f"n must be a count (>= 0), got {self.n}")
        if not 0 <= self.lower_level <= self.level <= self.upper_level <= 1:
            raise ValidationError("need 0 <= lower_level <= level <= upper_level <= 1")
        if not (self.lower_level < self.upper_level and self.lower_value <= self.upper_value):
            raise ValidationError("neighbouring quantiles must span a positive range of levels")

    @classmethod
    def from_values(cls, values: npt.ArrayLike, level: float, *, alpha: float = 0.05) -> Self:
        """The estimate from raw values at `density_levels` (linear interpolation)."""
        x = np.asarray(values, dtype=np.float64).reshape(-1)
        lower_level, upper_level = density_levels(x.size, level, alpha=alpha)
        lower, value, upper = np.quantile(x, [lower_level, level, upper_level])
        return cls(
            n=int(x.size),
            level=level,
            value=float(value),
            lower_level=lower_level,
            lower_value=float(lower),
            upper_level=upper_level,
            upper_value=float(upper),
        )

    @property
    def std_error(self) -> float:
        """Standard error of the sample quantile; inf without data."""
        units = self.n if self.at_or_below is None else self.at_or_below.n
        if units == 0:
            return math.inf
        if self.at_or_below is None:
            var_rank = self.level * (1 - self.level) / self.n  # Var F̂(q), binomial
        else:
            var_rank = self.at_or_below.variance / units  # Var F̂(q), ratio delta method per unit
        # 1/f(q) ≈ (Q(p₊) - Q(p₋))/(p₊ - p₋) (Siddiqui 1960; Bloch & Gastwirth 1968), and
        # SE(q̂) = SE(F̂(q))/f(q) (Bahadur 1966 representation of the sample quantile).
        inverse_density = (self.upper_value - self.lower_value) / (self.upper_level - self.lower_level)
        return math.sqrt(var_rank) * inverse_density

    def summary(self) -> ArmSummary:
        """The arm for the tests: n is units (clusters when `at_or_below` is given)."""
        units = self.n if self.at_or_below is None else self.at_or_below.n
        variance = units * self.std_error**2 if units > 0 else 0.0
        return ArmSummary(n=units, mean=self.value, variance=variance, unadjusted_mean=self.value)
