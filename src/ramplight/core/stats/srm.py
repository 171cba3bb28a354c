"""Sample-ratio mismatch: Pearson chi-square of observed units per variation against the weights."""

import math
from collections.abc import Sequence
from dataclasses import dataclass

from scipy import special

from ramplight.core.errors import ValidationError

SRM_THRESHOLD = 0.001
"""p-value below which a split is flagged (GrowthBook's default)."""


@dataclass(frozen=True, slots=True)
class SrmResult:
    """Chi-square statistic, its degrees of freedom, p-value, and whether the split is flagged."""

    chi_square: float
    df: int
    p_value: float
    mismatch: bool


def srm_test(
    observed: Sequence[int], weights: Sequence[float], *, threshold: float = SRM_THRESHOLD
) -> SrmResult:
    """Test observed units per variation against expected weights; flag when p < threshold.

    Units in a variation of weight 0 are a mismatch outright (p = 0).
    """
    if len(observed) != len(weights) or len(observed) < 2:
        raise ValidationError(
            f"need matching observed and weights for at least two variations, "
            f"got {len(observed)} and {len(weights)}"
        )
    if any(o < 0 for o in observed) or any(w < 0 for w in weights) or sum(weights) <= 0:
        raise ValidationError("observed counts and weights must be non-negative, weights not all 0")
    if any(o > 0 for o, w in zip(observed, weights, strict=True) if w == 0):
        return SrmResult(chi_square=math.inf, df=len(observed) - 1, p_value=0.0, mismatch=True)
    arms = [(o, w) for o, w in zip(observed, weights, strict=True) if w > 0]
    df = len(arms) - 1
    total_units = sum(o for o, _ in arms)
    total_weight = sum(w for _, w in arms)
    if total_units == 0 or df == 0:
        return SrmResult(chi_square=0.0, df=df, p_value=1.0, mismatch=False)
    # X² = Σ (O - E)² / E with E = N·w/Σw, df = k - 1 (Pearson 1900; gbstats check_srm).
    chi_square = sum(
        (o - total_units * w / total_weight) ** 2 / (total_units * w / total_weight) for o, w in arms
    )
    p_value = float(special.chdtrc(df, chi_square))
    return SrmResult(chi_square=chi_square, df=df, p_value=p_value, mismatch=p_value < threshold)


def combined_srm_test(
    strata: Sequence[tuple[Sequence[int], Sequence[float]]], *, threshold: float = SRM_THRESHOLD
) -> SrmResult:
    """One test over several strata (phases), each with its own (observed, weights).

    The strata are disjoint sets of units, so their Pearson statistics are independent and add,
    as do their degrees of freedom: a small imbalance repeated in every phase, too small to flag
    any one of them, adds up here.
    """
    if not strata:
        raise ValidationError("combined_srm_test needs at least one stratum")
    results = [srm_test(observed, weights, threshold=threshold) for observed, weights in strata]
    df = sum(r.df for r in results)
    # X² = Σ_p X²_p on Σ_p df_p (independent chi-squares add; Pearson 1900).
    chi_square = math.fsum(r.chi_square for r in results)
    if math.isinf(chi_square):
        return SrmResult(chi_square=math.inf, df=df, p_value=0.0, mismatch=True)
    if df == 0:
        return SrmResult(chi_square=0.0, df=0, p_value=1.0, mismatch=False)
    p_value = float(special.chdtrc(df, chi_square))
    return SrmResult(chi_square=chi_square, df=df, p_value=p_value, mismatch=p_value < threshold)


SEQUENTIAL_CONCENTRATION = 100.0
"""Dirichlet prior concentration of the sequential test (total pseudo-units, spread by weight)."""


def sequential_srm_p_value(
    observed: Sequence[int], weights: Sequence[float], *, concentration: float = SEQUENTIAL_CONCENTRATION
) -> float:
    """Always-valid p-value for a sample-ratio mismatch: 1 / the Bayes factor of a
    Dirichlet-multinomial alternative against the expected weights, capped at 1.

    Under the null the Bayes factor is a nonnegative martingale with mean 1, so by Ville's
    inequality P(ever ≤ α) ≤ α: it may be checked after every unit, as a guardian does, without
    the false alarms a repeated chi-square raises (Lindon & Malek 2020, "Anytime-valid
    inference for multinomial count data", §3; the Dirichlet-multinomial mixture).
    """
    if len(observed) != len(weights) or len(observed) < 2:
        raise ValidationError("need matching observed and weights for at least two variations")
    if any(o > 0 for o, w in zip(observed, weights, strict=True) if w == 0):
        return 0.0
    arms = [(o, w) for o, w in zip(observed, weights, strict=True) if w > 0]
    total_weight = sum(w for _, w in arms)
    n = sum(o for o, _ in arms)
    if n == 0 or len(arms) < 2:
        return 1.0
    alphas = [concentration * w / total_weight for _, w in arms]
    # log BF = log Γ(Σα) − log Γ(Σα + n) + Σ [log Γ(α_i + x_i) − log Γ(α_i)] − Σ x_i log p_i
    log_bf = special.gammaln(sum(alphas)) - special.gammaln(sum(alphas) + n)
    for (o, w), a in zip(arms, alphas, strict=True):
        log_bf += special.gammaln(a + o) - special.gammaln(a) - o * math.log(w / total_weight)
    return float(min(1.0, math.exp(-log_bf))) if log_bf > -700 else 1.0
