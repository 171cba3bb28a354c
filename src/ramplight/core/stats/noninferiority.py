"""One-sided non-inferiority test for guardrails: is the treatment no worse than a margin?"""

import math
from dataclasses import dataclass
from typing import Literal

from ramplight.core.errors import ValidationError
from ramplight.core.stats._contrast import (
    absolute_contrast,
    check_alpha,
    is_informative,
    relative_contrast,
    t_quantile,
    t_sf,
    welch_df,
)
from ramplight.core.stats.effects import Direction
from ramplight.core.stats.sequential import always_valid_p_value, boundary_multiplier
from ramplight.core.stats.suffstats import ArmSummary

MarginType = Literal["relative", "absolute"]
"""Whether a margin is a fraction of the control mean (0.05 = 5 %) or in the metric's units."""


@dataclass(frozen=True, slots=True)
class NonInferiorityResult:
    """Outcome of a guardrail check on the margin's scale.

    `threshold` is the margin signed towards harm (-margin when increase is good, +margin when
    decrease is good); `bound` is the confidence bound on the harmful side. `non_inferior`: that
    bound clears the threshold. `inferior`: even the favourable bound is past it — worse than the
    margin with confidence. `estimate` is None when a relative margin meets a control mean of 0.
    """

    estimate: float | None
    threshold: float
    bound: float
    p_value: float
    non_inferior: bool
    inferior: bool


def noninferiority_test(
    control: ArmSummary,
    treatment: ArmSummary,
    *,
    margin: float,
    margin_type: MarginType = "relative",
    direction: Direction = "increase",
    alpha: float = 0.05,
    sequential_tuning: float | None = None,
) -> NonInferiorityResult:
    """Test H0 "treatment is worse than control by more than `margin`" at level alpha.

    Fixed-horizon: one-sided Welch t (as gbstats OneSidedTreatmentGreaterTTest with
    test_value = -margin). With `sequential_tuning`: the two-sided confidence sequence, whose
    one-sided error is at most alpha, so it stays valid under continuous monitoring.
    """
    check_alpha(alpha)
    if not margin >= 0:
        raise ValidationError(f"margin must be non-negative, got {margin}")
    sign = 1.0 if direction == "increase" else -1.0  # +1 when larger effects are better
    threshold = -sign * margin
    contrast = (
        relative_contrast(control, treatment)
        if margin_type == "relative"
        else absolute_contrast(control, treatment)
    )
    if contrast is None or not is_informative(control, treatment, contrast):
        return NonInferiorityResult(
            estimate=None if contrast is None else contrast.estimate,
            threshold=threshold,
            bound=-sign * math.inf,
            p_value=1.0,
            non_inferior=False,
            inferior=False,
        )
    std_error = math.sqrt(contrast.variance)
    improvement = sign * (contrast.estimate - threshold)  # distance past the threshold, good side
    if sequential_tuning is None:
        # One-sided t-test of H0: effect beyond the threshold on the harmful side (Welch df).
        df = welch_df(control, treatment)
        half_width = t_quantile(1 - alpha, df) * std_error
        p_value = t_sf(improvement / std_error, df)
    else:
        n_total = control.n + treatment.n
        half_width = boundary_multiplier(n_total, alpha, sequential_tuning) * std_error
        p_value = (
            always_valid_p_value(
                estimate=contrast.estimate,
                variance=contrast.variance,
                n_total=n_total,
                alpha=alpha,
                tuning=sequential_tuning,
                test_value=threshold,
            )
            if improvement > 0
            else 1.0
        )
    return NonInferiorityResult(
        estimate=contrast.estimate,
        threshold=threshold,
        bound=contrast.estimate - sign * half_width,
        p_value=p_value,
        non_inferior=improvement > half_width,
        inferior=improvement < -half_width,
    )
