import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from ramplight.core.errors import ValidationError
from ramplight.core.stats import RatioMoments, RegressionMoments, SampleMoments

values = arrays(
    np.float64,
    st.integers(min_value=0, max_value=40),
    elements=st.floats(min_value=-1e3, max_value=1e3, allow_nan=False),
)


@given(values, values)
def test_merging_moments_equals_moments_of_the_concatenated_units(a: np.ndarray, b: np.ndarray) -> None:
    merged = SampleMoments.from_values(a) + SampleMoments.from_values(b)
    whole = SampleMoments.from_values(np.concatenate([a, b]))
    assert merged.n == whole.n
    assert merged.sum == pytest.approx(whole.sum, abs=1e-6)
    assert merged.sum_sq == pytest.approx(whole.sum_sq, rel=1e-12, abs=1e-6)


@given(values)
def test_sample_variance_is_never_negative_and_zero_below_two_units(x: np.ndarray) -> None:
    moments = SampleMoments.from_values(x)
    assert moments.variance >= 0
    if x.size < 2:
        assert moments.variance == 0


def test_sample_moments_give_numpy_mean_and_unbiased_variance(rng: np.random.Generator) -> None:
    x = rng.normal(3.0, 2.0, 1_000)
    moments = SampleMoments.from_values(x)
    assert moments.mean == pytest.approx(x.mean())
    assert moments.variance == pytest.approx(x.var(ddof=1))


def test_empty_moments_have_mean_zero_like_gbstats() -> None:
    assert SampleMoments(n=0, sum=0.0, sum_sq=0.0).mean == 0.0


def test_ratio_moments_split_into_numerator_and_denominator_with_their_covariance(
    rng: np.random.Generator,
) -> None:
    d = rng.poisson(3.0, 500) + 1.0
    m = 2.0 * d + rng.normal(0, 1, 500)
    moments = RatioMoments.from_values(m, d) + RatioMoments.from_values(m[:10], d[:10])
    m_all, d_all = np.concatenate([m, m[:10]]), np.concatenate([d, d[:10]])
    assert moments.mean == pytest.approx(m_all.sum() / d_all.sum())
    assert moments.numerator.variance == pytest.approx(m_all.var(ddof=1))
    assert moments.denominator.variance == pytest.approx(d_all.var(ddof=1))
    assert moments.covariance == pytest.approx(np.cov(m_all, d_all)[0, 1])


def test_ratio_variance_predicts_the_spread_of_the_ratio_across_experiments(
    rng: np.random.Generator,
) -> None:
    d = rng.poisson(3.0, (2_000, 400)) + 1.0
    m = rng.gamma(d * 2.0, 1.5)
    ratios = m.sum(axis=1) / d.sum(axis=1)
    predicted = [RatioMoments.from_values(mi, di) for mi, di in zip(m, d, strict=True)]
    predicted_var = np.mean([p.variance / p.n for p in predicted])
    assert ratios.var(ddof=1) == pytest.approx(predicted_var, rel=0.08)


def test_regression_moments_give_pre_and_post_moments_and_covariance(
    rng: np.random.Generator,
) -> None:
    pre = rng.normal(10, 2, 300)
    post = pre + rng.normal(0, 1, 300)
    moments = RegressionMoments.from_values(post, pre)
    assert moments.post.mean == pytest.approx(post.mean())
    assert moments.pre.variance == pytest.approx(pre.var(ddof=1))
    assert moments.covariance == pytest.approx(np.cov(post, pre)[0, 1])


def test_negative_unit_counts_are_rejected() -> None:
    with pytest.raises(ValidationError, match="n must be a count"):
        SampleMoments(n=-1, sum=0.0, sum_sq=0.0)


def test_paired_arrays_of_different_length_are_rejected() -> None:
    with pytest.raises(ValidationError, match="differ in length"):
        RegressionMoments.from_values([1.0, 2.0], [1.0])
