"""Pure statistics engine: sufficient statistics in, effects, intervals and decisions' evidence out.

No I/O and no data frames: every function takes the small typed values in `suffstats` (or a
`QuantileEstimate`) and returns frozen result values. `docs/statistics.md` derives the formulas.
"""

from ramplight.core.stats.bayes import BayesEstimate, BayesResult, GaussianPrior, bayes_test
from ramplight.core.stats.cuped import cuped_summaries, stratified_cuped_summaries, theta_cuped
from ramplight.core.stats.drift import (
    PSI_EPSILON,
    PSI_MAJOR,
    PSI_MODERATE,
    VERDICT_ORDER,
    DriftTest,
    DriftVerdict,
    chi_square_test,
    drift_verdict,
    ks_test,
    psi,
    worst_verdict,
)
from ramplight.core.stats.effects import (
    Direction,
    EffectEstimate,
    EffectResult,
    Method,
    welch_test,
)
from ramplight.core.stats.multiple import benjamini_hochberg, holm_bonferroni
from ramplight.core.stats.noninferiority import (
    MarginType,
    NonInferiorityResult,
    noninferiority_test,
)
from ramplight.core.stats.power import (
    MinimumDetectableEffect,
    SampleSizeEstimate,
    minimum_detectable_effect,
    sample_size,
)
from ramplight.core.stats.quantile import QuantileEstimate, density_levels
from ramplight.core.stats.sequential import (
    DEFAULT_TUNING,
    always_valid_p_value,
    boundary_multiplier,
    mixture_rho,
    sequential_test,
)
from ramplight.core.stats.srm import (
    SRM_THRESHOLD,
    SrmResult,
    combined_srm_test,
    sequential_srm_p_value,
    srm_test,
)
from ramplight.core.stats.stratified import pooled_summaries, stratified_summaries
from ramplight.core.stats.suffstats import (
    ArmSummary,
    RatioMoments,
    RegressionMoments,
    SampleMoments,
)

__all__ = [
    "DEFAULT_TUNING",
    "PSI_EPSILON",
    "PSI_MAJOR",
    "PSI_MODERATE",
    "SRM_THRESHOLD",
    "VERDICT_ORDER",
    "ArmSummary",
    "BayesEstimate",
    "BayesResult",
    "Direction",
    "DriftTest",
    "DriftVerdict",
    "EffectEstimate",
    "EffectResult",
    "GaussianPrior",
    "MarginType",
    "Method",
    "MinimumDetectableEffect",
    "NonInferiorityResult",
    "QuantileEstimate",
    "RatioMoments",
    "RegressionMoments",
    "SampleMoments",
    "SampleSizeEstimate",
    "SrmResult",
    "always_valid_p_value",
    "bayes_test",
    "benjamini_hochberg",
    "boundary_multiplier",
    "chi_square_test",
    "combined_srm_test",
    "cuped_summaries",
    "density_levels",
    "drift_verdict",
    "holm_bonferroni",
    "ks_test",
    "minimum_detectable_effect",
    "mixture_rho",
    "noninferiority_test",
    "pooled_summaries",
    "psi",
    "sample_size",
    "sequential_srm_p_value",
    "sequential_test",
    "srm_test",
    "stratified_cuped_summaries",
    "stratified_summaries",
    "theta_cuped",
    "welch_test",
    "worst_verdict",
]
