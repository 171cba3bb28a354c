"""CUPED: regression adjustment on a pre-exposure covariate, one theta pooled over both arms.

Under a ramp, CUPED runs within each stratum (phase, and presence of pre-period data) with its
own theta and the strata are combined by the stratified estimator (docs/statistics.md §4).
"""

from collections.abc import Sequence

from ramplight.core.stats.stratified import stratified_summaries
from ramplight.core.stats.suffstats import ArmSummary, RegressionMoments


def theta_cuped(control: RegressionMoments, treatment: RegressionMoments) -> float:
    """Pooled regression slope of post on pre; 0 (no adjustment) when a pooled variance is 0."""
    pooled = control + treatment
    if pooled.pre.variance <= 0 or pooled.post.variance <= 0:
        return 0.0
    # θ = Cov(Y, X) / Var(X) over both arms (Deng et al. 2013 "CUPED" §3; gbstats compute_theta).
    return pooled.covariance / pooled.pre.variance


def cuped_summaries(
    control: RegressionMoments, treatment: RegressionMoments
) -> tuple[ArmSummary, ArmSummary]:
    """Control and treatment adjusted by the pooled theta, ready for any test in this package."""
    theta = theta_cuped(control, treatment)
    return _adjusted(control, theta), _adjusted(treatment, theta)


def stratified_cuped_summaries(
    strata: Sequence[tuple[RegressionMoments, RegressionMoments]],
) -> tuple[ArmSummary, ArmSummary]:
    """CUPED within each (control, treatment) stratum, then the stratified combination.

    Each stratum gets its own theta (pooled over its two arms): a slope fitted across strata
    would absorb the between-stratum trend. A stratum whose covariate does not vary (units
    without pre-period data, stored with pre = 0) is compared unadjusted.
    """
    return stratified_summaries([cuped_summaries(control, treatment) for control, treatment in strata])


def _adjusted(arm: RegressionMoments, theta: float) -> ArmSummary:
    post, pre = arm.post, arm.pre
    if theta == 0:
        return post.summary()
    # Ȳ_cuped = Ȳ - θ·X̄, Var = s²_Y + θ²·s²_X - 2θ·s_XY (Deng et al. 2013 §3).
    var_cuped = post.variance + theta**2 * pre.variance - 2 * theta * arm.covariance
    return ArmSummary(
        n=arm.n,
        mean=post.mean - theta * pre.mean,
        variance=max(var_cuped, 0.0),
        unadjusted_mean=post.mean,
    )
