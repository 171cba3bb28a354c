"""Bayesian readout: chance to win and expected loss from a normal posterior on the effect.

The likelihood is the same normal approximation the frequentist test uses; with the default flat
prior the posterior is N(estimate, standard error²), as gbstats' EffectBayesianABTest.
"""

import math
from dataclasses import dataclass

from scipy import special

from ramplight.core.errors import ValidationError
from ramplight.core.stats._contrast import (
    Contrast,
    absolute_contrast,
    check_alpha,
    is_informative,
    relative_contrast,
)
from ramplight.core.stats.effects import Direction
from ramplight.core.stats.suffstats import ArmSummary


@dataclass(frozen=True, slots=True)
class GaussianPrior:
    """A proper normal prior on the lift; scaled by the control mean for the absolute effect."""

    mean: float = 0.0
    variance: float = 1.0

    def __post_init__(self) -> None:
        if not self.variance > 0:
            raise ValidationError(f"prior variance must be positive, got {self.variance}")


@dataclass(frozen=True, slots=True)
class BayesEstimate:
    """Posterior of one effect; win and loss are measured in the metric's good direction.

    `risk_control` is the expected loss of keeping control, `risk_treatment` of shipping
    treatment, both in the effect's units. Without usable data: infinite spread and risks,
    chance to win 0.5.
    """

    mean: float
    std: float
    ci_lower: float
    ci_upper: float
    chance_to_win: float
    risk_control: float
    risk_treatment: float


@dataclass(frozen=True, slots=True)
class BayesResult:
    """Posterior of the absolute difference and of the lift (None if control mean is 0)."""

    alpha: float
    control_mean: float
    treatment_mean: float
    absolute: BayesEstimate
    relative: BayesEstimate | None


def bayes_test(
    control: ArmSummary,
    treatment: ArmSummary,
    *,
    alpha: float = 0.05,
    direction: Direction = "increase",
    prior: GaussianPrior | None = None,
) -> BayesResult:
    """Posterior, (1 - alpha) credible interval, chance to win and risk; flat prior by default."""
    check_alpha(alpha)
    scale = abs(control.unadjusted_mean)
    absolute_prior = (
        None
        if prior is None or scale == 0
        else GaussianPrior(mean=prior.mean * scale, variance=prior.variance * scale**2)
    )
    relative = relative_contrast(control, treatment)

    def posterior(contrast: Contrast, effect_prior: GaussianPrior | None) -> BayesEstimate:
        if not is_informative(control, treatment, contrast):
            return BayesEstimate(
                mean=contrast.estimate,
                std=math.inf,
                ci_lower=-math.inf,
                ci_upper=math.inf,
                chance_to_win=0.5,
                risk_control=math.inf,
                risk_treatment=math.inf,
            )
        if effect_prior is None:
            mean, variance = contrast.estimate, contrast.variance
        else:
            # Normal-normal conjugate update: precisions add, means weight by precision.
            precision = 1 / contrast.variance + 1 / effect_prior.variance
            mean = (
                contrast.estimate / contrast.variance + effect_prior.mean / effect_prior.variance
            ) / precision
            variance = 1 / precision
        return _summarize(mean, math.sqrt(variance), alpha, direction)

    return BayesResult(
        alpha=alpha,
        control_mean=control.mean,
        treatment_mean=treatment.mean,
        absolute=posterior(absolute_contrast(control, treatment), absolute_prior),
        relative=None if relative is None else posterior(relative, prior),
    )


def _summarize(mean: float, std: float, alpha: float, direction: Direction) -> BayesEstimate:
    half_width = float(special.ndtri(1 - alpha / 2)) * std
    good = mean if direction == "increase" else -mean  # posterior mean of the improvement
    z = good / std
    density = math.exp(-0.5 * z * z) / math.sqrt(2 * math.pi)
    # For X ~ N(m, s²): E[max(X, 0)] = m·Φ(m/s) + s·φ(m/s) (normal partial expectation).
    return BayesEstimate(
        mean=mean,
        std=std,
        ci_lower=mean - half_width,
        ci_upper=mean + half_width,
        chance_to_win=float(special.ndtr(z)),
        risk_control=good * float(special.ndtr(z)) + std * density,
        risk_treatment=-good * float(special.ndtr(-z)) + std * density,
    )
