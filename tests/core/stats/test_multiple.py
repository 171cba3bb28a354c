import pytest
from hypothesis import given
from hypothesis import strategies as st
from scipy import stats

from ramplight.core.errors import ValidationError
from ramplight.core.stats import benjamini_hochberg, holm_bonferroni

P_VALUES = [0.01, 0.04, 0.03, 0.005]


def test_holm_matches_hand_computed_values() -> None:
    # Sorted 0.005, 0.01, 0.03, 0.04 times 4, 3, 2, 1 → 0.02, 0.03, 0.06, 0.04 → running max.
    assert holm_bonferroni(P_VALUES) == pytest.approx((0.03, 0.06, 0.06, 0.02))


def test_benjamini_hochberg_matches_hand_computed_values() -> None:
    # Sorted times 4/rank: 0.02, 0.02, 0.04, 0.04 → running min from the top.
    assert benjamini_hochberg(P_VALUES) == pytest.approx((0.02, 0.04, 0.04, 0.02))


def test_adjusted_p_values_are_capped_at_one() -> None:
    assert holm_bonferroni([0.5, 0.6]) == (1.0, 1.0)
    assert benjamini_hochberg([0.9, 0.95]) == pytest.approx((0.95, 0.95))


p_value_lists = st.lists(st.floats(min_value=0.0, max_value=1.0), min_size=1, max_size=30)


@given(p_value_lists)
def test_benjamini_hochberg_agrees_with_scipy(p_values: list[float]) -> None:
    expected = stats.false_discovery_control(p_values, method="bh")
    assert benjamini_hochberg(p_values) == pytest.approx(tuple(expected), abs=1e-12)


@given(p_value_lists)
def test_adjustment_never_lowers_a_p_value_and_keeps_the_order(p_values: list[float]) -> None:
    holm = holm_bonferroni(p_values)
    bh = benjamini_hochberg(p_values)
    for raw, h, b in zip(p_values, holm, bh, strict=True):
        assert raw <= b <= h + 1e-12
        assert h <= 1.0
    order = sorted(range(len(p_values)), key=lambda i: p_values[i])
    for adjusted in (holm, bh):
        ranked = [adjusted[i] for i in order]
        assert ranked == sorted(ranked)


def test_a_single_test_is_not_adjusted() -> None:
    assert holm_bonferroni([0.03]) == (0.03,)
    assert benjamini_hochberg([0.03]) == (0.03,)


def test_p_values_outside_the_unit_interval_are_rejected() -> None:
    with pytest.raises(ValidationError, match="p-values"):
        holm_bonferroni([0.2, 1.2])
