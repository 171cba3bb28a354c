"""Percentages on the pages: significant digits, never an exponent (a +100 % difference was shown
as "+1e+02 %")."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ramplight.server.room import percent_text


@pytest.mark.parametrize(
    ("value", "signed", "digits", "text"),
    [
        (0.05, False, 3, "5 %"),
        (1.0, True, 2, "+100 %"),
        (12.5, False, 3, "1,250 %"),
        (0.000123, False, 3, "0.0123 %"),
        (-0.0342, True, 2, "-3.4 %"),
        (0.1234, False, 3, "12.3 %"),
        (0.0, True, 2, "0 %"),
    ],
)
def test_percentages_read_as_people_write_them(value: float, signed: bool, digits: int, text: str) -> None:
    assert percent_text(value, signed, digits) == text.replace(" ", "\u00a0")


@given(st.floats(min_value=-1e6, max_value=1e6, allow_nan=False))
def test_no_percentage_has_an_exponent_and_its_number_is_close(value: float) -> None:
    text = percent_text(value, signed=True)
    assert "e" not in text and text.endswith("\u00a0%")
    number = float(text.removesuffix("\u00a0%").replace(",", ""))
    assert number == pytest.approx(value * 100, rel=5e-3, abs=1e-9)
