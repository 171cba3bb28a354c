"""Sufficient statistics per variation, as the warehouse returns them, and the summary tests take.

Moments add: the moments of two disjoint sets of units are the sum of their moments, so
segments, days and phases merge without going back to the raw rows.
"""

from dataclasses import dataclass
from typing import Self

import numpy as np
import numpy.typing as npt

from ramplight.core.errors import ValidationError


def _float_array(values: npt.ArrayLike) -> npt.NDArray[np.float64]:
    array = np.asarray(values, dtype=np.float64)
    if array.ndim != 1:
        raise ValidationError(f"expected a 1-d array of per-unit values, got shape {array.shape}")
    return array


def _check_count(n: int) -> None:
    if n < 0:
        raise ValidationError(f"n must be a count of units (>= 0), got {n}")


def _sample_covariance(n: int, sum_xy: float, sum_x: float, sum_y: float) -> float:
    # Unbiased sample covariance from raw sums: (Σxy - Σx·Σy/n) / (n - 1).
    if n <= 1:
        return 0.0
    return (sum_xy - sum_x * sum_y / n) / (n - 1)


@dataclass(frozen=True, slots=True)
class ArmSummary:
    """One variation as the tests see it: units, (adjusted) mean and per-unit variance.

    The mean's sampling variance is `variance / n`. `unadjusted_mean` is the plain mean, the
    denominator of relative effects; it differs from `mean` only after CUPED.
    """

    n: int
    mean: float
    variance: float
    unadjusted_mean: float


@dataclass(frozen=True, slots=True)
class SampleMoments:
    """Count, sum and sum of squares of a per-unit metric (binary metrics: `sum_sq == sum`)."""

    n: int
    sum: float
    sum_sq: float

    def __post_init__(self) -> None:
        _check_count(self.n)

    @classmethod
    def from_values(cls, values: npt.ArrayLike) -> Self:
        """Moments of an array of per-unit values."""
        x = _float_array(values)
        return cls(n=int(x.size), sum=float(x.sum()), sum_sq=float(np.dot(x, x)))

    def __add__(self, other: Self) -> Self:
        return type(self)(n=self.n + other.n, sum=self.sum + other.sum, sum_sq=self.sum_sq + other.sum_sq)

    @property
    def mean(self) -> float:
        """Sample mean; 0 for no units (as gbstats)."""
        return self.sum / self.n if self.n > 0 else 0.0

    @property
    def variance(self) -> float:
        """Unbiased sample variance (n - 1 denominator); 0 below two units, never negative."""
        return max(_sample_covariance(self.n, self.sum_sq, self.sum, self.sum), 0.0)

    def summary(self) -> ArmSummary:
        """The arm as a mean metric."""
        return ArmSummary(n=self.n, mean=self.mean, variance=self.variance, unadjusted_mean=self.mean)


@dataclass(frozen=True, slots=True)
class RatioMoments:
    """Moments of a per-unit numerator m and denominator d, for a ratio metric Σm / Σd."""

    n: int
    sum_m: float
    sum_sq_m: float
    sum_d: float
    sum_sq_d: float
    sum_md: float

    def __post_init__(self) -> None:
        _check_count(self.n)

    @classmethod
    def from_values(cls, numerator: npt.ArrayLike, denominator: npt.ArrayLike) -> Self:
        """Moments of paired per-unit numerator and denominator arrays."""
        m = _float_array(numerator)
        d = _float_array(denominator)
        if m.shape != d.shape:
            raise ValidationError(f"numerator {m.shape} and denominator {d.shape} differ in length")
        return cls(
            n=int(m.size),
            sum_m=float(m.sum()),
            sum_sq_m=float(np.dot(m, m)),
            sum_d=float(d.sum()),
            sum_sq_d=float(np.dot(d, d)),
            sum_md=float(np.dot(m, d)),
        )

    def __add__(self, other: Self) -> Self:
        return type(self)(
            n=self.n + other.n,
            sum_m=self.sum_m + other.sum_m,
            sum_sq_m=self.sum_sq_m + other.sum_sq_m,
            sum_d=self.sum_d + other.sum_d,
            sum_sq_d=self.sum_sq_d + other.sum_sq_d,
            sum_md=self.sum_md + other.sum_md,
        )

    @property
    def numerator(self) -> SampleMoments:
        return SampleMoments(n=self.n, sum=self.sum_m, sum_sq=self.sum_sq_m)

    @property
    def denominator(self) -> SampleMoments:
        return SampleMoments(n=self.n, sum=self.sum_d, sum_sq=self.sum_sq_d)

    @property
    def mean(self) -> float:
        """The ratio Σm / Σd; 0 when Σd is 0 (as gbstats)."""
        return self.sum_m / self.sum_d if self.sum_d != 0 else 0.0

    @property
    def covariance(self) -> float:
        """Unbiased sample covariance of m and d."""
        return _sample_covariance(self.n, self.sum_md, self.sum_m, self.sum_d)

    @property
    def variance(self) -> float:
        """Per-unit delta-method variance of the ratio (n * Var(Σm/Σd)); 0 when undefined."""
        mu_m = self.numerator.mean
        mu_d = self.denominator.mean
        if self.n <= 1 or mu_d == 0:
            return 0.0
        # Delta method for m̄/d̄ (Deng et al. 2018, "Applying the delta method in metric analytics").
        var_delta = (
            self.numerator.variance / mu_d**2
            - 2 * self.covariance * mu_m / mu_d**3
            + mu_m**2 * self.denominator.variance / mu_d**4
        )
        return max(var_delta, 0.0)

    def summary(self) -> ArmSummary:
        """The arm as a ratio metric (delta method)."""
        return ArmSummary(n=self.n, mean=self.mean, variance=self.variance, unadjusted_mean=self.mean)


@dataclass(frozen=True, slots=True)
class RegressionMoments:
    """Moments of a per-unit outcome (post) and its pre-exposure covariate (pre), for CUPED."""

    n: int
    sum_post: float
    sum_sq_post: float
    sum_pre: float
    sum_sq_pre: float
    sum_post_pre: float

    def __post_init__(self) -> None:
        _check_count(self.n)

    @classmethod
    def from_values(cls, post: npt.ArrayLike, pre: npt.ArrayLike) -> Self:
        """Moments of paired per-unit outcome and pre-period covariate arrays."""
        y = _float_array(post)
        x = _float_array(pre)
        if y.shape != x.shape:
            raise ValidationError(f"post {y.shape} and pre {x.shape} differ in length")
        return cls(
            n=int(y.size),
            sum_post=float(y.sum()),
            sum_sq_post=float(np.dot(y, y)),
            sum_pre=float(x.sum()),
            sum_sq_pre=float(np.dot(x, x)),
            sum_post_pre=float(np.dot(y, x)),
        )

    def __add__(self, other: Self) -> Self:
        return type(self)(
            n=self.n + other.n,
            sum_post=self.sum_post + other.sum_post,
            sum_sq_post=self.sum_sq_post + other.sum_sq_post,
            sum_pre=self.sum_pre + other.sum_pre,
            sum_sq_pre=self.sum_sq_pre + other.sum_sq_pre,
            sum_post_pre=self.sum_post_pre + other.sum_post_pre,
        )

    @property
    def post(self) -> SampleMoments:
        return SampleMoments(n=self.n, sum=self.sum_post, sum_sq=self.sum_sq_post)

    @property
    def pre(self) -> SampleMoments:
        return SampleMoments(n=self.n, sum=self.sum_pre, sum_sq=self.sum_sq_pre)

    @property
    def covariance(self) -> float:
        """Unbiased sample covariance of post and pre."""
        return _sample_covariance(self.n, self.sum_post_pre, self.sum_post, self.sum_pre)
