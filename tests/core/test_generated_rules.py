"""A flag's rules run as one generated function; `_compile_clause`'s closures are the reference:
for random rules (every operator, negation, odd types, missing attributes) both pick the same
rule for every unit."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from ramplight.core.evaluate import _compile_clause, _compile_segment
from ramplight.core.flags import Clause, Segment
from tests.core.builders import checked, compiled, flag_doc

ATTRIBUTES = ("plan", "version", "seats", "unit_id")
SEGMENTS = {
    "beta": Segment(key="beta", included=["u1"], excluded=["u2"]),
    "pros": Segment(
        key="pros", clauses=[Clause(op="in", values=["pro", "team"], attribute="plan")], attribute="unit_id"
    ),
}

# Few distinct values, shared by bounds and attributes, so that ties (where < and <= differ) are common.
numbers = st.sampled_from([-1, 0, 1, 2.5, 10, 10.0, float("nan"), float("inf")])
scalars = st.one_of(
    st.none(),
    st.booleans(),
    numbers,
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from(["pro", "team", "free", "", "1.2.3", "2.0.0-rc.1", "10", "-3.5", "nan", "u1", "u2"]),
)
versions = st.sampled_from(["0.9.0", "1.2.3", "2.0.0-rc.1", "2.0.0", "10.1.0"])


@st.composite
def clauses(draw: st.DrawFn) -> dict[str, Any]:
    op = draw(
        st.sampled_from(
            [
                *("equals", "in", "not_equals", "not_in", "lt", "lte", "gt", "gte", "regex"),
                *(
                    "semver_eq",
                    "semver_lt",
                    "semver_lte",
                    "semver_gt",
                    "semver_gte",
                    "in_segment",
                    "not_in_segment",
                ),
            ]
        )
    )
    if op.startswith("semver"):
        values: list[Any] = draw(st.lists(versions, min_size=1, max_size=3))
    elif op in ("lt", "lte", "gt", "gte"):
        values = draw(st.lists(numbers, min_size=1, max_size=3))
    elif op == "regex":
        values = draw(st.lists(st.sampled_from(["^p", "o$", "[0-9]+", "^$"]), min_size=1, max_size=2))
    elif op.endswith("segment"):
        values = draw(st.lists(st.sampled_from(sorted(SEGMENTS)), min_size=1, max_size=2))
    else:
        values = draw(st.lists(scalars.filter(lambda v: v is not None), min_size=1, max_size=4))
    return {
        "attribute": draw(st.sampled_from(ATTRIBUTES)),
        "op": op,
        "values": values,
        "negate": draw(st.booleans()),
    }


@st.composite
def rule_sets(draw: st.DrawFn) -> list[dict[str, Any]]:
    count = draw(st.integers(1, 3))
    return [
        {"id": f"r{i}", "clauses": draw(st.lists(clauses(), max_size=4)), "variation": "candidate"}
        for i in range(count)
    ]


units = st.fixed_dictionaries(
    {},
    optional={"plan": scalars, "version": st.one_of(scalars, versions), "seats": st.one_of(scalars, numbers)},
)


@settings(max_examples=300, deadline=None)
@given(rules=rule_sets(), unit=st.sampled_from(["u1", "u2", "u3", "pro"]), attrs=st.one_of(st.none(), units))
def test_the_generated_rules_pick_the_rule_the_clause_closures_pick(
    rules: list[dict[str, Any]], unit: str, attrs: dict[str, Any] | None
) -> None:
    doc = flag_doc(rules=rules)
    segments = {k: _compile_segment(s) for k, s in SEGMENTS.items()}
    config = compiled(checked(doc, SEGMENTS.values()), segments=SEGMENTS.values())
    flag = config.flag(doc["key"])
    assert flag is not None
    expected = next(
        (r.id for r in flag.rules if all(_compile_clause(c, segments)(unit, attrs) for c in r.clauses)),
        None,
    )
    got = config.evaluate(doc["key"], unit, attrs)
    assert got.reason != "error", got.error_message
    assert got.rule_id == expected


@settings(max_examples=500, deadline=None)
@given(
    clause=clauses(), value=st.one_of(scalars, versions, numbers), unit=st.sampled_from(["u1", "u3", "pro"])
)
def test_one_clause_on_one_attribute_matches_as_its_closure_does(
    clause: dict[str, Any], value: Any, unit: str
) -> None:
    """The attribute always holds a value from the clauses' own pools: ties (where `<` and `<=`
    differ, or `in` finds it) are the common case here."""
    clause = {**clause, "attribute": "plan" if clause["attribute"] != "unit_id" else "unit_id"}
    doc = flag_doc(rules=[{"id": "r", "clauses": [clause], "variation": "candidate"}])
    config = compiled(checked(doc, SEGMENTS.values()), segments=SEGMENTS.values())
    segments = {k: _compile_segment(s) for k, s in SEGMENTS.items()}
    flag = config.flag(doc["key"])
    assert flag is not None
    attrs = {"plan": value}
    expected = _compile_clause(flag.rules[0].clauses[0], segments)(unit, attrs)
    got = config.evaluate(doc["key"], unit, attrs)
    assert got.reason != "error", got.error_message
    assert (got.rule_id == "r") is expected
