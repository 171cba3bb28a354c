"""What keeps a large config small once every flag has run: results shared between flags where
they are equal, splits without closures, generated code without column positions. Each test
checks that the saving keeps the behavior: the same answers, tracebacks that still format."""

from __future__ import annotations

import gc
import traceback
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from ramplight.core.bucketing import slot_of, unit_hash, variation_for_slot
from ramplight.core.evaluate import compile_flag
from ramplight.core.flags import sdk_flag
from ramplight.core.regex import compile_pattern
from tests.core.builders import ENV, checked, clause, compiled, flag_doc, rollout, rule

weights = st.integers(0, 100)


@settings(max_examples=200, deadline=None)
@given(
    first=weights,
    second=weights,
    third=st.one_of(st.none(), weights),
    units=st.lists(st.text(min_size=1, max_size=12), min_size=1, max_size=20),
)
def test_a_split_serves_the_variation_of_the_units_slot_whatever_its_ranges(
    first: int, second: int, third: int | None, units: list[str]
) -> None:
    """Two ranges take a one-comparison path, more ranges a bisect: both serve the variation the
    spec's slot arithmetic names. A second ramp from `first` to `second` fragments the ranges."""
    names = ["control", "candidate", "fallback"]
    variations = [{"key": k, "value": k.upper()} for k in names]

    def split(candidate: int) -> dict[str, float]:
        if third is None:
            return {"control": 100 - candidate, "candidate": candidate}
        rest = 100 - candidate
        return {
            "control": rest - rest * third // 100,
            "candidate": candidate,
            "fallback": rest * third // 100,
        }

    before = checked(flag_doc(variations=variations, rollout=rollout(**split(first)), salt="s-1"))
    after = checked(
        flag_doc(variations=variations, rollout=rollout(**split(second)), salt="s-1"), previous=before
    )
    config = compiled(after)
    sdk = sdk_flag(after, ENV)
    assert sdk is not None and sdk.rollout is not None
    allocation = sdk.rollout.allocation()
    for unit in units:
        try:
            expected = variation_for_slot(allocation, slot_of(unit_hash("s-1", unit)))
        except UnicodeEncodeError:  # a lone surrogate: the spec's `general` error
            assert config.evaluate(after.key, unit).error_code == "general"
            continue
        result = config.evaluate(after.key, unit)
        assert (result.variation, result.value, result.reason) == (expected, str(expected).upper(), "rollout")


def test_flags_of_one_shape_share_their_code_and_strings_but_not_their_values() -> None:
    def doc(key: str, plan: str) -> dict[str, Any]:
        return flag_doc(
            key=key,
            rules=[
                rule("vip", clause("plan", "in", plan, "team"), clause("email", "regex", "@example\\.com$"))
            ],
            rollout=rollout(control=90, candidate=10),
        )

    one, two = checked(doc("one", "pro")), checked(doc("two", "enterprise"))
    config = compiled(one, two)
    attrs = {"plan": "pro", "email": "a@example.com"}
    a, b = config.evaluate("one", "u1", attrs), config.evaluate("two", "u1", attrs)
    assert (a.rule_id, b.rule_id) == ("vip", None)  # each flag its own values
    assert config.evaluate("two", "u1", {**attrs, "plan": "enterprise"}).rule_id == "vip"
    evaluators = [config._evaluators["one"], config._evaluators["two"]]
    assert evaluators[0].__code__ is evaluators[1].__code__  # type: ignore[attr-defined]
    c = config.evaluate("two", "u1", {**attrs, "plan": "enterprise"})
    assert a.variation is c.variation and a.rule_id is c.rule_id and a.assignment_unit is c.assignment_unit
    assert compile_pattern("@example\\.com$") is compile_pattern("@example\\.com$")


def test_a_rule_is_compiled_once_for_every_flag_that_has_one_of_its_shape() -> None:
    """With several rules, each rule is its own function: flags that combine the same kinds of
    rule in another order share the rules' code, and still pick the first rule that matches."""
    by_plan = rule("by_plan", clause("plan", "in", "pro"), variation="candidate")
    by_seats = rule("by_seats", clause("seats", "gte", 50), variation="control")
    one = checked(flag_doc(key="one", rules=[by_plan, by_seats], default_variation="control"))
    two = checked(flag_doc(key="two", rules=[by_seats, by_plan], default_variation="candidate"))
    config = compiled(one, two)
    both = {"plan": "pro", "seats": 60}
    assert config.evaluate("one", "u1", both).rule_id == "by_plan"
    assert config.evaluate("two", "u1", both).rule_id == "by_seats"
    assert config.evaluate("two", "u1", {"plan": "pro"}).rule_id == "by_plan"
    assert config.evaluate("one", "u1", {"plan": "free"}).reason == "default"

    def rule_codes(key: str) -> list[Any]:
        defaults = config._evaluators[key].__defaults__  # type: ignore[attr-defined]
        return [d.__code__ for d in defaults if callable(d) and hasattr(d, "__code__")]

    first, second = rule_codes("one"), rule_codes("two")
    assert len(first) == len(second) == 2
    assert first[0] is second[1] and first[1] is second[0]


def test_results_are_not_tracked_by_the_garbage_collector_and_keep_the_callers_key() -> None:
    flag = checked(flag_doc(key="kill_switch"))
    key = "".join(["kill", "_switch"])  # equal to the flag's key, but another object
    result = compiled(flag).evaluate(key, "u1")
    assert result.flag_key is key and not gc.is_tracked(result)


def test_generated_code_keeps_a_line_table_that_tracebacks_read() -> None:
    flag = sdk_flag(checked(flag_doc(rules=[rule("pro", clause("plan", "equals", "pro"))])), ENV)
    assert flag is not None
    evaluate: Any = compile_flag(flag, {})
    code = evaluate.__code__
    units = sum(1 for _ in code.co_positions())
    assert len(code.co_linetable) == 2 * -(-units // 8)  # two bytes per eight code units
    assert {p for p in code.co_positions()} == {(1, 1, None, None)}
    try:
        evaluate("u1", ["plan", "pro"])  # not a mapping: fails inside the generated code
    except AttributeError as exc:
        text = "".join(traceback.format_exception(exc))
    assert 'File "<ramplight flag rules>", line 1, in evaluate' in text
