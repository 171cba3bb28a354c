"""Distribution shift between two samples, from counts the store computes: the population
stability index over bins or categories, the two-sample Kolmogorov–Smirnov p-value from its
statistic, and the chi-square test of homogeneity. Derivations: docs/statistics.md §16."""

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from scipy import stats

from ramplight.core.errors import ValidationError

PSI_EPSILON = 1e-4
"""The share an empty bin counts as (the index has ln(share) in it)."""
PSI_MODERATE = 0.1
"""PSI from which a shift is moderate (below: stable); the credit-scoring convention."""
PSI_MAJOR = 0.25
"""PSI above which a shift is major: the population is no longer the one compared against."""

DriftVerdict = Literal["stable", "inconclusive", "moderate", "major"]
VERDICT_ORDER: tuple[DriftVerdict, ...] = ("stable", "inconclusive", "moderate", "major")


@dataclass(frozen=True, slots=True)
class DriftTest:
    """A test of "both samples come from one distribution": `ks` or `chi_square`."""

    method: Literal["ks", "chi_square"]
    statistic: float
    p_value: float
    df: int | None = None


def psi(reference: Sequence[int], compared: Sequence[int], epsilon: float = PSI_EPSILON) -> float:
    """Σ (c_i − r_i)·ln(c_i / r_i) over bins, r and c the two samples' shares, an empty bin's share
    taken as `epsilon` (Yurdakul 2018, "Statistical properties of the population stability index")."""
    if len(reference) != len(compared) or not reference:
        raise ValidationError("psi needs the same bins, at least one, on both sides")
    n_r, n_c = sum(reference), sum(compared)
    if n_r <= 0 or n_c <= 0 or min(*reference, *compared) < 0:
        raise ValidationError("psi needs non-negative counts and rows on both sides")
    total = 0.0
    for r, c in zip(reference, compared, strict=True):
        share_r, share_c = max(r / n_r, epsilon), max(c / n_c, epsilon)
        total += (share_c - share_r) * math.log(share_c / share_r)
    return total


def ks_test(statistic: float, n_reference: int, n_compared: int) -> DriftTest:
    """The two-sided KS p-value of `statistic` (sup |F_r − F_c|): Kolmogorov's distribution for
    n = round(n_r·n_c / (n_r + n_c)), at least 1 (scipy.stats.ks_2samp, method="asymp")."""
    if n_reference < 1 or n_compared < 1 or not 0 <= statistic <= 1:
        raise ValidationError("a KS statistic within [0, 1] and at least one row per sample")
    m, n = sorted((float(n_reference), float(n_compared)), reverse=True)
    en = m * n / (m + n)
    p = float(stats.kstwo.sf(statistic, max(1, round(en))))  # one row each: en = 0.5
    return DriftTest("ks", statistic, min(max(p, 0.0), 1.0))


def chi_square_test(reference: Sequence[int], compared: Sequence[int]) -> DriftTest:
    """Pearson's chi-square test of homogeneity of the 2×k table (no continuity correction),
    categories empty on both sides left out; one category left: no difference to find."""
    columns = [(r, c) for r, c in zip(reference, compared, strict=True) if r + c > 0]
    if not sum(r for r, _ in columns) or not sum(c for _, c in columns):
        raise ValidationError("chi-square needs rows on both sides")
    if len(columns) < 2:
        return DriftTest("chi_square", 0.0, 1.0, 0)
    table = [[r for r, _ in columns], [c for _, c in columns]]
    result = stats.chi2_contingency(table, correction=False)
    return DriftTest("chi_square", float(result.statistic), float(result.pvalue), int(result.dof))


def drift_verdict(index: float, p_value: float, alpha: float = 0.05) -> DriftVerdict:
    """`major` (PSI > 0.25) or `moderate` (PSI ≥ 0.1) when the test also rejects at `alpha`;
    `inconclusive` when the PSI is that large but sampling noise could explain it; else `stable`."""
    if index < PSI_MODERATE:
        return "stable"
    if p_value >= alpha:
        return "inconclusive"
    return "major" if index > PSI_MAJOR else "moderate"


def worst_verdict(verdicts: Sequence[DriftVerdict]) -> DriftVerdict | None:
    """The most serious of `verdicts` (None for none)."""
    return max(verdicts, key=VERDICT_ORDER.index) if verdicts else None
