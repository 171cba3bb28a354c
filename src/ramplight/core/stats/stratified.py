"""Combining phases: the stratified (post-stratified) difference in means, and naive pooling.

A ramp changes the treatment share over time; if the outcome trends over the same time, pooling
every unit compares a late-heavy treatment arm with an early-heavy control arm and is biased.
Comparing within phases and weighting the phases removes that bias (docs/statistics.md §15).
"""

import math
from collections.abc import Sequence

from ramplight.core.errors import ValidationError
from ramplight.core.stats.suffstats import ArmSummary


def stratified_summaries(
    strata: Sequence[tuple[ArmSummary, ArmSummary]], weights: Sequence[float] | None = None
) -> tuple[ArmSummary, ArmSummary]:
    """Control and treatment summaries of the stratified estimator, ready for any two-sample test.

    `strata` are (control, treatment) per phase; `weights` default to each phase's share of the
    units. Phases where an arm has fewer than two units are skipped and the remaining weights
    renormalised; if none is left, the pooled summaries are returned.
    """
    if not strata:
        raise ValidationError("stratified_summaries needs at least one stratum")
    if weights is not None:
        _check_weights(weights, len(strata))
    kept = [p for p, (control, treatment) in enumerate(strata) if control.n >= 2 and treatment.n >= 2]
    if not kept:
        return pooled_summaries(strata)
    raw = [weights[p] if weights is not None else float(strata[p][0].n + strata[p][1].n) for p in kept]
    total = math.fsum(raw)
    if total <= 0:
        raise ValidationError("the weights of the strata with two units per arm sum to 0")
    w = [r / total for r in raw]
    return (
        _stratified_arm([strata[p][0] for p in kept], w),
        _stratified_arm([strata[p][1] for p in kept], w),
    )


def pooled_summaries(strata: Sequence[tuple[ArmSummary, ArmSummary]]) -> tuple[ArmSummary, ArmSummary]:
    """Control and treatment summaries of all units pooled, ignoring phases (biased under a ramp)."""
    if not strata:
        raise ValidationError("pooled_summaries needs at least one stratum")
    return _pooled_arm([c for c, _ in strata]), _pooled_arm([t for _, t in strata])


def _check_weights(weights: Sequence[float], n_strata: int) -> None:
    if len(weights) != n_strata:
        raise ValidationError(f"got {len(weights)} weights for {n_strata} strata")
    for p, weight in enumerate(weights):
        if not (math.isfinite(weight) and weight >= 0):
            raise ValidationError(f"weights[{p}] must be finite and >= 0, got {weight}")


def _stratified_arm(arms: Sequence[ArmSummary], w: Sequence[float]) -> ArmSummary:
    n = sum(arm.n for arm in arms)
    # ȳ_st = Σ w_p ȳ_p, Var(ȳ_st) = Σ w_p² s²_p / n_p (Imbens & Rubin 2015, ch. 9, Neyman's
    # approach; Miratrix, Sekhon & Yu 2013); stored as n·Var so that variance / n is Var(ȳ_st).
    mean = math.fsum(w_p * arm.mean for w_p, arm in zip(w, arms, strict=True))
    unadjusted_mean = math.fsum(w_p * arm.unadjusted_mean for w_p, arm in zip(w, arms, strict=True))
    variance = math.fsum(w_p**2 * (n / arm.n) * arm.variance for w_p, arm in zip(w, arms, strict=True))
    return ArmSummary(n=n, mean=mean, variance=variance, unadjusted_mean=unadjusted_mean)


def _pooled_arm(arms: Sequence[ArmSummary]) -> ArmSummary:
    n = sum(arm.n for arm in arms)
    if n == 0:
        return ArmSummary(n=0, mean=0.0, variance=0.0, unadjusted_mean=0.0)
    mean = math.fsum(arm.n * arm.mean for arm in arms) / n
    unadjusted_mean = math.fsum(arm.n * arm.unadjusted_mean for arm in arms) / n
    if n < 2:
        return ArmSummary(n=n, mean=mean, variance=0.0, unadjusted_mean=unadjusted_mean)
    # Within- plus between-group sums of squares over n - 1: the variance of the union of the
    # groups (Chan, Golub & LeVeque 1979, pairwise update).
    sum_sq = math.fsum(
        (arm.n - 1) * arm.variance + arm.n * (arm.mean - mean) ** 2 for arm in arms if arm.n > 0
    )
    return ArmSummary(n=n, mean=mean, variance=sum_sq / (n - 1), unadjusted_mean=unadjusted_mean)
