"""SemVer precedence keys against the `semver` library, and clauses against a plain reference."""

from __future__ import annotations

import math
from typing import Any

import semver
from hypothesis import given
from hypothesis import strategies as st

from ramplight.core import versions
from ramplight.core.versions import parse_version, version_key
from tests.core.builders import checked, clause, compiled, flag_doc, rule

numbers = st.integers(0, 30).map(str) | st.sampled_from(["0", "10", "99999999999999999999"])
identifiers = numbers | st.from_regex(r"[0-9]{0,2}[A-Za-z-][0-9A-Za-z-]{0,3}", fullmatch=True)
builds = st.from_regex(r"[0-9A-Za-z-]{1,4}(\.[0-9A-Za-z-]{1,4}){0,2}", fullmatch=True)


@st.composite
def valid_versions(draw: st.DrawFn) -> str:
    text = ".".join(draw(numbers) for _ in range(3))
    if draw(st.booleans()):
        text += "-" + ".".join(draw(st.lists(identifiers, min_size=1, max_size=4)))
    if draw(st.booleans()):
        text += "+" + draw(builds)
    return ("v" if draw(st.booleans()) else "") + text


almost_versions = valid_versions() | st.from_regex(
    r"v?[0-9.]{1,8}(-[0-9A-Za-z.]{0,5})?(\+[0-9A-Za-z.]{0,4})?", fullmatch=True
)


def reference(text: str) -> semver.Version | None:
    """What the spec says parses, by the `semver` library (ASCII input, no trailing newline)."""
    try:
        return semver.Version.parse(text.removeprefix("v"))
    except ValueError:
        return None


@given(almost_versions)
def test_a_string_parses_exactly_when_semver_parses_it(text: str) -> None:
    assert (parse_version(text) is None) == (reference(text) is None)


@given(valid_versions(), valid_versions())
def test_keys_order_versions_as_semver_precedence(a: str, b: str) -> None:
    expected = reference(a).compare(reference(b))  # type: ignore[union-attr,arg-type]
    key_a, key_b = parse_version(a), parse_version(b)
    assert key_a is not None and key_b is not None
    assert (key_a > key_b) - (key_a < key_b) == expected


@given(st.lists(almost_versions, min_size=1, max_size=50))
def test_the_cache_answers_as_parsing_does_even_when_it_overflows(texts: list[str]) -> None:
    versions.CACHE_SIZE, saved = 8, versions.CACHE_SIZE
    try:
        for text in texts + texts:
            assert version_key(text) == parse_version(text)
    finally:
        versions.CACHE_SIZE = saved


def test_what_semver_2_does_not_allow_does_not_parse() -> None:
    for text in [
        "V1.0.0",
        "1.0",
        "01.0.0",
        "1.0.0-01",
        "1.0.0\n",
        "1.0.0-",
        "1.0.0+",
        "\u0661.\u0662.\u0663",
        "vv1.0.0",
    ]:
        assert parse_version(text) is None, text


SEMVER_OPS = {"semver_eq": 0, "semver_lt": -1, "semver_lte": -2, "semver_gt": 1, "semver_gte": 2}


def semver_reference(op: str, attribute: Any, bounds: list[str]) -> bool:
    """The spec's rule, written out: the attribute parses and compares true against any value."""
    if not isinstance(attribute, str) or reference(attribute) is None:
        return False
    version = reference(attribute)
    assert version is not None
    results = [version.compare(reference(b)) for b in bounds]  # type: ignore[arg-type]
    accept = {
        "semver_eq": lambda c: c == 0,
        "semver_lt": lambda c: c < 0,
        "semver_lte": lambda c: c <= 0,
        "semver_gt": lambda c: c > 0,
        "semver_gte": lambda c: c >= 0,
    }[op]
    return any(accept(c) for c in results)


@given(
    st.sampled_from(sorted(SEMVER_OPS)),
    valid_versions() | almost_versions | st.integers() | st.none(),
    st.lists(valid_versions(), min_size=1, max_size=3),
)
def test_semver_clauses_match_as_the_reference_comparison(op: str, attribute: Any, bounds: list[str]) -> None:
    flag = checked(flag_doc(rules=[rule("r", clause("app_version", op, *bounds))]))
    result = compiled(flag).evaluate(flag.key, "user-1", {"app_version": attribute})
    assert (result.reason == "rule") is semver_reference(op, attribute, bounds)


def numeric_reference(op: str, attribute: Any, bounds: list[float]) -> bool:
    if isinstance(attribute, bool) or attribute is None:
        return False
    try:
        number = float(attribute)
    except (TypeError, ValueError):
        return False
    compare = {
        "lt": lambda a, b: a < b,
        "lte": lambda a, b: a <= b,
        "gt": lambda a, b: a > b,
        "gte": lambda a, b: a >= b,
    }[op]
    return any(compare(number, b) for b in bounds)


finite = st.floats(allow_nan=False, allow_infinity=False, min_value=-1e12, max_value=1e12)
attributes = (
    finite
    | st.integers(-(10**12), 10**12)
    | finite.map(str)
    | st.sampled_from(["nan", "inf", "-inf", " 12 ", "1e3", "twelve", "", math.nan, True, False])
    | st.none()
)


@given(
    st.sampled_from(["lt", "lte", "gt", "gte"]),
    attributes,
    st.lists(finite | st.integers(-1000, 1000), min_size=1, max_size=4),
)
def test_numeric_clauses_match_as_the_reference_comparison(
    op: str, attribute: Any, bounds: list[float]
) -> None:
    flag = checked(flag_doc(rules=[rule("r", clause("seats", op, *bounds))]))
    result = compiled(flag).evaluate(flag.key, "user-1", {"seats": attribute})
    assert (result.reason == "rule") is numeric_reference(op, attribute, bounds)
