"""Power: the minimum detectable effect at the current sample, and the units and days still needed.

One model serves both, so they invert each other: a two-sided test at level alpha, normal
approximation, both arms with the given per-unit variance. The lift's delta-method standard
error depends on the lift itself, so the test rejects where the estimate clears the boundary
times the standard error at that estimate, and is powered when the true lift sits z_power
standard errors (at the true lift) beyond that point. With `sequential_tuning` the boundary is
the confidence sequence's at the total sample size, so the time left matches a monitored ramp.
"""

import math
from collections.abc import Callable
from dataclasses import dataclass

from scipy import optimize, special

from ramplight.core.errors import ValidationError
from ramplight.core.stats._contrast import check_alpha
from ramplight.core.stats.effects import Direction
from ramplight.core.stats.sequential import boundary_multiplier

_NO_LIFT = 1e9  # a lift past this (10⁹ = 100,000,000,000 %) counts as undetectable


@dataclass(frozen=True, slots=True)
class MinimumDetectableEffect:
    """Smallest true effect detected with the requested power, signed by direction.

    `absolute` is in the metric's units; `relative` is a lift (0.05 = 5 %), ±inf when no lift is
    detectable at this sample size and None when the mean is 0.
    """

    absolute: float
    relative: float | None


@dataclass(frozen=True, slots=True)
class SampleSizeEstimate:
    """Total units (both arms) needed to detect an effect, how many are still missing, and days."""

    units_needed: int
    units_remaining: int
    days_remaining: float | None


def minimum_detectable_effect(
    *,
    n_control: float,
    n_treatment: float,
    mean: float,
    variance: float,
    alpha: float = 0.05,
    power: float = 0.8,
    direction: Direction = "increase",
    sequential_tuning: float | None = None,
) -> MinimumDetectableEffect:
    """The effect a test at the current sample would detect with probability `power`.

    `mean` and `variance` are the control's per-unit mean and variance (CUPED-adjusted variance
    for a CUPED readout); `direction` is the sign of the change to detect.
    """
    _check_power(alpha, power)
    if not (n_control > 0 and n_treatment > 0 and variance >= 0):
        raise ValidationError("need positive arm sizes and a non-negative variance")
    boundary = _boundary(n_control + n_treatment, alpha, sequential_tuning)
    z_power = float(special.ndtri(power))
    sign = 1.0 if direction == "increase" else -1.0
    # δ = (z_{1-alpha/2} + z_{power})·SE, two-sided test, far tail ignored (Chow et al. 2008 §3.2).
    absolute = sign * (boundary + z_power) * math.sqrt(variance * (1 / n_control + 1 / n_treatment))
    if mean == 0:
        return MinimumDetectableEffect(absolute=absolute, relative=None)
    relative = _relative_mde(n_control, n_treatment, variance / mean**2, boundary, z_power, sign)
    return MinimumDetectableEffect(absolute=absolute, relative=relative)


def sample_size(
    *,
    relative_effect: float,
    mean: float,
    variance: float,
    treatment_share: float = 0.5,
    alpha: float = 0.05,
    power: float = 0.8,
    sequential_tuning: float | None = None,
    current_units: int = 0,
    units_per_day: float | None = None,
) -> SampleSizeEstimate:
    """Total units to detect `relative_effect` with `power`; units and days still to go."""
    _check_power(alpha, power)
    if relative_effect == 0 or relative_effect <= -1:
        raise ValidationError(f"relative_effect must be non-zero and above -1, got {relative_effect}")
    if mean == 0 or not variance >= 0:
        raise ValidationError("a lift needs a non-zero mean and a non-negative variance")
    if not 0 < treatment_share < 1:
        raise ValidationError(f"treatment_share must be in (0, 1), got {treatment_share}")
    if units_per_day is not None and not units_per_day >= 0:
        raise ValidationError(f"units_per_day must be non-negative, got {units_per_day}")
    sign = 1.0 if relative_effect > 0 else -1.0
    z_power = float(special.ndtri(power))

    def shortfall(n_total: float) -> float:
        # The MDE at n_total units minus the target: positive while n_total is too small.
        mde = _relative_mde(
            (1 - treatment_share) * n_total,
            treatment_share * n_total,
            variance / mean**2,
            _boundary(n_total, alpha, sequential_tuning),
            z_power,
            sign,
        )
        return min(sign * mde, _NO_LIFT) - abs(relative_effect)

    # The MDE falls as n grows, so the shortfall crosses zero once: bracket it by doubling.
    low, high = 1.0, 2.0
    while shortfall(high) > 0:
        low, high = high, high * 2
    n_needed = high if high == 2.0 else float(optimize.brentq(shortfall, low, high, rtol=1e-12))
    units_needed = math.ceil(n_needed * (1 - 1e-9))
    units_remaining = max(units_needed - current_units, 0)
    if units_per_day is None:
        days_remaining = None
    elif units_remaining == 0:
        days_remaining = 0.0
    else:
        days_remaining = units_remaining / units_per_day if units_per_day > 0 else math.inf
    return SampleSizeEstimate(
        units_needed=units_needed, units_remaining=units_remaining, days_remaining=days_remaining
    )


def _relative_mde(
    n_control: float, n_treatment: float, cv2: float, boundary: float, z_power: float, sign: float
) -> float:
    def std_error(lift: float) -> float:
        # SE² = CV²·(1/n_t + (1 + lift)²/n_c): delta-method lift variance at treatment μ(1 + lift).
        return math.sqrt(cv2 * (1 / n_treatment + (1 + lift) ** 2 / n_control))

    # The test rejects once the estimate clears boundary·SE at that estimate.
    critical = _root_beyond(lambda lift: sign * lift - boundary * std_error(lift), 0.0, sign)
    if math.isinf(critical):
        return critical
    # Power: the true lift sits z_power standard errors (at the true lift) past `critical`.
    return _root_beyond(lambda lift: sign * (lift - critical) - z_power * std_error(lift), critical, sign)


def _root_beyond(f: Callable[[float], float], start: float, sign: float) -> float:
    """The first zero of f past `start` in direction `sign` (f ≤ 0 at start); ±inf if none."""
    if f(start) >= 0:
        return start
    if sign < 0:  # a lift cannot fall below -100 %
        return float(optimize.brentq(f, -1.0, start, rtol=1e-14)) if f(-1.0) > 0 else -math.inf
    low, high = start, start + max(abs(start), 1e-3)
    while f(high) <= 0:
        if high > _NO_LIFT:
            return math.inf
        low, high = high, 2 * high
    return float(optimize.brentq(f, low, high, rtol=1e-14))


def _boundary(n_total: float, alpha: float, sequential_tuning: float | None) -> float:
    """Critical value in standard errors: z_{1-alpha/2}, or the confidence sequence's boundary."""
    if sequential_tuning is None:
        return float(special.ndtri(1 - alpha / 2))
    return boundary_multiplier(n_total, alpha, sequential_tuning)


def _check_power(alpha: float, power: float) -> None:
    check_alpha(alpha)
    if not 0.5 <= power < 1:
        raise ValidationError(f"power must be in [0.5, 1), got {power}")
