"""Effect estimates and their sampling variances, shared by every test in this package."""

import math
from dataclasses import dataclass

from scipy import special

from ramplight.core.errors import ValidationError
from ramplight.core.stats.suffstats import ArmSummary


@dataclass(frozen=True, slots=True)
class Contrast:
    """An effect estimate and the variance of that estimate, before any reference distribution."""

    estimate: float
    variance: float


def check_alpha(alpha: float) -> None:
    if not 0.0 < alpha < 1.0:
        raise ValidationError(f"alpha must be in (0, 1), got {alpha}")


def absolute_contrast(control: ArmSummary, treatment: ArmSummary) -> Contrast:
    """Difference in means with the Welch (unequal-variance) variance."""
    # Var(ȳ_t - ȳ_c) = s²_t/n_t + s²_c/n_c (Welch 1947).
    var_delta = _mean_variance(treatment) + _mean_variance(control)
    return Contrast(estimate=treatment.mean - control.mean, variance=var_delta)


def relative_contrast(control: ArmSummary, treatment: ArmSummary) -> Contrast | None:
    """Lift (ȳ_t - ȳ_c)/ȳ_c with its delta-method variance; None when the baseline mean is 0."""
    mu_c = control.unadjusted_mean
    mu_t = treatment.unadjusted_mean
    if mu_c == 0:
        return None
    # Delta method for ȳ_t/ȳ_c - 1 (as gbstats `frequentist_variance`, relative=True):
    # Var ≈ Var(ȳ_t)/μ_c² + μ_t²·Var(ȳ_c)/μ_c⁴, using the unadjusted means after CUPED.
    var_lift = _mean_variance(treatment) / mu_c**2 + mu_t**2 * _mean_variance(control) / mu_c**4
    return Contrast(estimate=(treatment.mean - control.mean) / mu_c, variance=var_lift)


def welch_df(control: ArmSummary, treatment: ArmSummary) -> float:
    """Welch-Satterthwaite degrees of freedom; infinite when undefined."""
    v_c = _mean_variance(control)
    v_t = _mean_variance(treatment)
    if control.n <= 1 or treatment.n <= 1 or v_c + v_t <= 0:
        return math.inf
    # df = (v_t + v_c)² / (v_t²/(n_t - 1) + v_c²/(n_c - 1)), v = s²/n (Welch 1947).
    return (v_t + v_c) ** 2 / (v_t**2 / (treatment.n - 1) + v_c**2 / (control.n - 1))


def is_informative(control: ArmSummary, treatment: ArmSummary, contrast: Contrast) -> bool:
    """Whether the data support inference: two units per arm and a positive, finite variance."""
    return (
        control.n >= 2
        and treatment.n >= 2
        and contrast.variance > 0
        and math.isfinite(contrast.variance)
        and math.isfinite(contrast.estimate)
    )


def _mean_variance(arm: ArmSummary) -> float:
    return arm.variance / arm.n if arm.n > 0 else math.inf


def t_quantile(q: float, df: float) -> float:
    """Quantile of Student's t with df degrees of freedom (standard normal when df is inf)."""
    return float(special.ndtri(q)) if math.isinf(df) else float(special.stdtrit(df, q))


def t_sf(x: float, df: float) -> float:
    """Upper tail probability of Student's t (standard normal when df is inf)."""
    return float(special.ndtr(-x)) if math.isinf(df) else float(special.stdtr(df, -x))
