"""Always-valid inference: the normal-mixture confidence sequence (gbstats SequentialTwoSidedTTest).

Intervals and p-values stay valid however often a ramp is looked at. The tuning parameter n* is
the total sample size at which the sequence is tightest; gbstats' default is 5,000.
"""

import math

from ramplight.core.errors import ValidationError
from ramplight.core.stats._contrast import (
    Contrast,
    absolute_contrast,
    check_alpha,
    is_informative,
    relative_contrast,
)
from ramplight.core.stats.effects import EffectEstimate, EffectResult
from ramplight.core.stats.suffstats import ArmSummary

DEFAULT_TUNING = 5000.0
"""gbstats' default `sequential_tuning_parameter` (n*), in total units across both arms."""


def mixture_rho(alpha: float, tuning: float) -> float:
    """Mixing scale rho of the normal mixture, chosen so the boundary is tightest at n = tuning."""
    check_alpha(alpha)
    if tuning <= 0:
        raise ValidationError(f"sequential tuning (n*) must be positive, got {tuning}")
    # rho² = (-2 ln alpha + ln(1 - 2 ln alpha)) / n* (Waudby-Smith et al. arXiv:2103.06476v7
    # eq. 161).
    return math.sqrt((-2 * math.log(alpha) + math.log(-2 * math.log(alpha) + 1)) / tuning)


def boundary_multiplier(n_total: float, alpha: float, tuning: float) -> float:
    """Half-width of the confidence sequence at n_total units, in standard errors."""
    rho = mixture_rho(alpha, tuning)
    n_rho2 = n_total * rho**2
    # Half-width = s·√((2(N·rho² + 1)/(N²·rho²))·ln(√(N·rho² + 1)/alpha)), s² = N·Var(estimate)
    # (Waudby-Smith et al., arXiv:2103.06476v7 eq. 9; gbstats).
    return math.sqrt(2 * (n_rho2 + 1) / n_rho2 * math.log(math.sqrt(n_rho2 + 1) / alpha))


def always_valid_p_value(
    *,
    estimate: float,
    variance: float,
    n_total: float,
    alpha: float = 0.05,
    tuning: float = DEFAULT_TUNING,
    test_value: float = 0.0,
) -> float:
    """Always-valid p-value of `effect == test_value`: 1 / the mixture e-value, capped at 1.

    `variance` is the variance of the estimate; `alpha` only sets rho, as in gbstats.
    """
    rho = mixture_rho(alpha, tuning)
    n_rho2_1 = n_total * rho**2 + 1
    z2 = (estimate - test_value) ** 2 / variance
    # e = exp(rho²·N·z²/(2(N·rho² + 1))) / √(N·rho² + 1) (Waudby-Smith et al. arXiv:2103.06476v7
    # eq. 155).
    log_e = rho**2 * n_total * z2 / (2 * n_rho2_1) - 0.5 * math.log(n_rho2_1)
    return math.exp(-max(log_e, 0.0))


def sequential_test(
    control: ArmSummary,
    treatment: ArmSummary,
    *,
    alpha: float = 0.05,
    tuning: float = DEFAULT_TUNING,
) -> EffectResult:
    """Confidence sequence and always-valid p-value for the difference and the lift."""
    check_alpha(alpha)
    n_total = control.n + treatment.n
    relative = relative_contrast(control, treatment)

    def estimate(contrast: Contrast) -> EffectEstimate:
        if not is_informative(control, treatment, contrast):
            return EffectEstimate.uninformative(contrast.estimate)
        std_error = math.sqrt(contrast.variance)
        half_width = boundary_multiplier(n_total, alpha, tuning) * std_error
        return EffectEstimate(
            estimate=contrast.estimate,
            std_error=std_error,
            ci_lower=contrast.estimate - half_width,
            ci_upper=contrast.estimate + half_width,
            p_value=always_valid_p_value(
                estimate=contrast.estimate,
                variance=contrast.variance,
                n_total=n_total,
                alpha=alpha,
                tuning=tuning,
            ),
        )

    return EffectResult(
        method="confidence_sequence",
        alpha=alpha,
        df=math.inf,
        control_mean=control.mean,
        treatment_mean=treatment.mean,
        absolute=estimate(absolute_contrast(control, treatment)),
        relative=None if relative is None else estimate(relative),
    )
