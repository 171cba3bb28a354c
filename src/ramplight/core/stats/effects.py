"""Two-sample fixed-horizon test: Welch t on the absolute difference and the delta-method lift."""

import math
from dataclasses import dataclass
from typing import Literal, Self

from ramplight.core.stats._contrast import (
    Contrast,
    absolute_contrast,
    check_alpha,
    is_informative,
    relative_contrast,
    t_quantile,
    t_sf,
    welch_df,
)
from ramplight.core.stats.suffstats import ArmSummary

Direction = Literal["increase", "decrease"]
"""Which way a metric is good: `increase` (conversion) or `decrease` (latency, cost, errors)."""

Method = Literal["welch_t", "confidence_sequence"]
"""How an interval was built: fixed-horizon Welch t, or an always-valid confidence sequence."""


@dataclass(frozen=True, slots=True)
class EffectEstimate:
    """One effect (absolute or relative) with its standard error, interval and two-sided p-value.

    When the data cannot support inference the interval is (-inf, inf), `std_error` is inf and
    `p_value` is 1.
    """

    estimate: float
    std_error: float
    ci_lower: float
    ci_upper: float
    p_value: float

    @classmethod
    def uninformative(cls, estimate: float) -> Self:
        """An estimate that makes no claim: infinite interval, p-value 1."""
        return cls(
            estimate=estimate,
            std_error=math.inf,
            ci_lower=-math.inf,
            ci_upper=math.inf,
            p_value=1.0,
        )


@dataclass(frozen=True, slots=True)
class EffectResult:
    """Treatment against control: absolute difference and lift (None if the control mean is 0).

    `df` is the Welch-Satterthwaite degrees of freedom; inf for a confidence sequence (normal).
    """

    method: Method
    alpha: float
    df: float
    control_mean: float
    treatment_mean: float
    absolute: EffectEstimate
    relative: EffectEstimate | None


def welch_test(control: ArmSummary, treatment: ArmSummary, *, alpha: float = 0.05) -> EffectResult:
    """Welch t-test and (1 - alpha) interval for difference and lift (as gbstats TwoSidedTTest)."""
    check_alpha(alpha)
    df = welch_df(control, treatment)
    relative = relative_contrast(control, treatment)
    return EffectResult(
        method="welch_t",
        alpha=alpha,
        df=df,
        control_mean=control.mean,
        treatment_mean=treatment.mean,
        absolute=_t_estimate(absolute_contrast(control, treatment), control, treatment, df, alpha),
        relative=None if relative is None else _t_estimate(relative, control, treatment, df, alpha),
    )


def _t_estimate(
    contrast: Contrast, control: ArmSummary, treatment: ArmSummary, df: float, alpha: float
) -> EffectEstimate:
    if not is_informative(control, treatment, contrast):
        return EffectEstimate.uninformative(contrast.estimate)
    std_error = math.sqrt(contrast.variance)
    # Two-sided t interval and p-value with Welch-Satterthwaite df (gbstats frequentist/tests.py).
    half_width = t_quantile(1 - alpha / 2, df) * std_error
    return EffectEstimate(
        estimate=contrast.estimate,
        std_error=std_error,
        ci_lower=contrast.estimate - half_width,
        ci_upper=contrast.estimate + half_width,
        p_value=min(1.0, 2 * t_sf(abs(contrast.estimate) / std_error, df)),
    )
