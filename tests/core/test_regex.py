"""The regex dialect: catastrophic shapes are refused at save time, safe patterns match as before."""

from __future__ import annotations

import re

import pytest
import re2
from hypothesis import given
from hypothesis import strategies as st

from ramplight.core.errors import ValidationError
from ramplight.core.flags import check_flag, convert_flag
from ramplight.core.regex import (
    MAX_ATTRIBUTE_LENGTH,
    MAX_PATTERN_LENGTH,
    compile_pattern,
    pattern_problem,
)
from tests.core.builders import ENV, clause, compiled, flag_doc, rule


@pytest.mark.parametrize(
    ("pattern", "reason"),
    [
        pytest.param("^(a+)+$", "nested quantifiers", id="nested plus"),
        pytest.param("^(a*)*$", "nested quantifiers", id="nested star"),
        pytest.param("^(a|ab+)*$", "nested quantifiers", id="quantifier inside a repeated branch"),
        pytest.param("^((ab)*c)+$", "nested quantifiers", id="quantified group two levels down"),
        pytest.param("^(a{2,3}){2,}$", "nested quantifiers", id="counted repeats"),
        pytest.param("(\\w+)@\\1", "backreferences", id="backreference"),
        pytest.param("(?P<x>a)(?P=x)", "backreferences", id="named backreference"),
        pytest.param("foo(?=bar)", "lookahead/lookbehind", id="lookahead"),
        pytest.param("(?<!x)foo", "negative lookahead/lookbehind", id="negative lookbehind"),
        pytest.param("(a)?(?(1)b|c)", "conditional groups", id="conditional"),
        pytest.param("(?>a+)b", "atomic groups", id="atomic group"),
        pytest.param("a++b", "possessive quantifiers", id="possessive"),
        pytest.param("(?i:abc)", "scoped flags", id="scoped flag"),
        pytest.param("(?s)a.b", "only the `(?i)` flag", id="dotall flag"),
        pytest.param("a{101}", "repeat count above 100", id="huge count"),
        pytest.param("abc\\Z", "RE2 syntax", id="python-only escape"),
        pytest.param("x" * (MAX_PATTERN_LENGTH + 1), "at most 256 characters", id="too long"),
        pytest.param("(unclosed", "not a valid regex", id="syntax error"),
    ],
)
def test_unsafe_or_unportable_patterns_are_refused_with_a_reason(pattern: str, reason: str) -> None:
    problem = pattern_problem(pattern)
    assert problem is not None
    assert reason in problem
    with pytest.raises(ValueError, match=re.escape(reason)):
        compile_pattern(pattern)


def test_the_nested_quantifier_refusal_suggests_a_rewrite() -> None:
    assert "`^(a+)+$` → `^a+$`" in (pattern_problem("^(a+)+$") or "")


def test_check_flag_refuses_a_catastrophic_pattern_at_its_field_path() -> None:
    doc = flag_doc(rules=[rule("r1", clause("email", "regex", "@ok\\.com$", "^(a+)+$"))])
    with pytest.raises(ValidationError) as caught:
        check_flag(convert_flag(doc))
    (problem,) = caught.value.problems
    assert problem.field == f"environments.{ENV}.rules[0].clauses[0].values[1]"
    assert "nested quantifiers" in problem.reason
    assert "values[1]" in caught.value.message


@pytest.mark.parametrize(
    ("pattern", "value", "matches"),
    [
        ("@example\\.com$", "ana@example.com", True),
        ("@example\\.com$", "ana@example.com.evil", False),
        ("^(foo|bar)-[0-9]+$", "bar-42", True),
        ("^(https?://)?example", "http://example.org", True),
        ("^[a-z]+(-[a-z]+)?$", "pro-annual", True),
        ("^a{2,3}$", "aaaa", False),
        ("(?i)^PRO", "pro-annual", True),
        ("^a+?b", "aab", True),
        ("\\bMobile\\b", "iPhone Mobile Safari", True),
        ("\\d", "٣", False),  # RE2 classes are ASCII: \d is [0-9] in every SDK
        ("^[^@]+@[^@]+$", "a@b", True),
        ("^(a+)$", "a" * 27, True),
    ],
)
def test_safe_patterns_search_as_before(pattern: str, value: str, matches: bool) -> None:
    assert pattern_problem(pattern) is None
    assert compile_pattern(pattern)(value) is matches


def test_a_value_at_the_length_limit_matches_and_a_longer_one_never_does() -> None:
    matches = compile_pattern("^a")
    assert matches("a" * MAX_ATTRIBUTE_LENGTH)
    assert not matches("a" * (MAX_ATTRIBUTE_LENGTH + 1))


def test_a_negated_regex_clause_matches_an_overlong_value() -> None:
    flag = convert_flag(flag_doc(rules=[rule("r1", clause("ua", "regex", "^M", negate=True))]))
    check_flag(flag)
    config = compiled(flag)
    assert config.evaluate(flag.key, "u", {"ua": "M" * (MAX_ATTRIBUTE_LENGTH + 1)}).reason == "rule"
    assert config.evaluate(flag.key, "u", {"ua": "Mobile"}).reason == "default"


def test_a_catastrophic_pattern_that_reaches_an_sdk_breaks_only_its_flag() -> None:
    flag = convert_flag(flag_doc(rules=[rule("r1", clause("name", "regex", "^(a+)+$"))]))
    result = compiled(flag).evaluate(flag.key, "u", {"name": "a" * 27 + "b"}, default="fallback")
    assert (result.reason, result.error_code, result.value) == ("error", "invalid_flag", "fallback")


@given(
    st.sampled_from([r"@example\.com$", r"^pro", r"(?i)beta", r"\d{3}", r"^$", r"é+", r"a|b\b"]),
    st.text(st.characters(exclude_categories=("Cs",)), max_size=40)
    | st.from_regex(r"[a-z0-9@.é ]{0,20}(@example\.com|PRO|123)?", fullmatch=True),
)
def test_a_compiled_pattern_answers_as_re2_search_does(pattern: str, value: str) -> None:
    assert compile_pattern(pattern)(value) is (re2.compile(pattern).search(value) is not None)
