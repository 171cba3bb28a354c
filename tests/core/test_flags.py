"""The flag model: semantic checks with precise field paths, stable ranges, unit changes."""

from __future__ import annotations

import math
from typing import Any

import msgspec
import pytest

from ramplight.core.bucketing import SLOTS, SlotRange
from ramplight.core.errors import ValidationError
from ramplight.core.flags import (
    MAX_CLAUSE_VALUES,
    MAX_CLAUSES,
    MAX_RULES,
    MAX_VARIATIONS,
    Flag,
    assignment_unit_change_problem,
    check_flag,
    convert_flag,
    sdk_flag,
    stabilize,
)
from tests.core.builders import checked, clause, flag_doc, rollout, rule, segment

P = "environments.production"


def problems_of(doc: dict[str, Any], segments: dict[str, Any] | None = None) -> dict[str, str]:
    """field → reason of every problem check_flag reports (it must report at least one)."""
    with pytest.raises(ValidationError) as caught:
        check_flag(convert_flag(doc), segments)
    return {p.field: p.reason for p in caught.value.problems}


def with_rule(*clauses: dict[str, Any]) -> dict[str, Any]:
    return flag_doc(rules=[rule("r1", *clauses)])


# -- check_flag ---------------------------------------------------------------------------


def test_a_well_formed_flag_passes_every_check() -> None:
    doc = flag_doc(
        rules=[
            rule("beta", clause("app_version", "semver_gte", "2.4.0"), clause("plan", "regex", "^pro")),
            rule(
                "split", clause("seats", "gt", 10), variation=None, rollout=rollout(control=50, candidate=50)
            ),
            rule("members", clause("unit_id", "in_segment", "beta_users")),
        ],
        rollout=rollout(control=99.999, candidate=0.001),
    )
    check_flag(convert_flag(doc), {"beta_users": segment("beta_users")})


@pytest.mark.parametrize(
    ("doc", "field", "reason"),
    [
        pytest.param(
            flag_doc(
                variations=[{"key": "a", "value": "A"}, {"key": "a", "value": "B"}],
                default_variation="a",
                off_variation="a",
            ),
            "variations[1].key",
            "duplicate 'a'",
            id="duplicate variation",
        ),
        pytest.param(
            flag_doc(variations=[{"key": "control", "value": "A"}, {"key": "candidate", "value": 2}]),
            "variations[1].value",
            "must be a string",
            id="string flag with a number value",
        ),
        pytest.param(
            flag_doc(
                flag_type="boolean",
                variations=[{"key": "control", "value": False}, {"key": "candidate", "value": "yes"}],
            ),
            "variations[1].value",
            "must be a boolean",
            id="boolean flag with a string value",
        ),
        pytest.param(
            flag_doc(
                flag_type="number",
                variations=[{"key": "control", "value": 1}, {"key": "candidate", "value": True}],
            ),
            "variations[1].value",
            "must be a number",
            id="number flag with a boolean value",
        ),
        pytest.param(
            flag_doc(default_variation="ghost"),
            f"{P}.default_variation",
            "no variation 'ghost'",
            id="unknown default variation",
        ),
        pytest.param(
            flag_doc(off_variation="ghost"),
            f"{P}.off_variation",
            "no variation 'ghost'",
            id="unknown off variation",
        ),
        pytest.param(
            flag_doc(rollout=rollout(control=90, candidate=5)),
            f"{P}.rollout.weights",
            "must sum to 100, not 95",
            id="weights not summing to 100",
        ),
        pytest.param(
            flag_doc(rollout=rollout(control=94.9995, candidate=5.0005)),
            f"{P}.rollout.weights.control",
            "at most three decimals",
            id="weights with four decimals",
        ),
        pytest.param(
            flag_doc(rollout=rollout(control=101, candidate=-1)),
            f"{P}.rollout.weights.control",
            "must be within 0..100",
            id="weight above 100",
        ),
        pytest.param(
            flag_doc(rollout=rollout(control=95, ghost=5)),
            f"{P}.rollout.weights.ghost",
            "no such variation",
            id="weight for an unknown variation",
        ),
        pytest.param(
            flag_doc(rules=[rule("r1", variation=None, rollout=rollout(control=50, candidate=40))]),
            f"{P}.rules[0].rollout.weights",
            "must sum to 100",
            id="rule rollout not summing to 100",
        ),
        pytest.param(
            with_rule(clause("email", "regex", "ok", "(unclosed")),
            f"{P}.rules[0].clauses[0].values[1]",
            "not a valid regex",
            id="bad regex",
        ),
        pytest.param(
            with_rule(clause("seats", "gte", "ten")),
            f"{P}.rules[0].clauses[0].values[0]",
            "gte needs a number",
            id="non-numeric numeric value",
        ),
        pytest.param(
            with_rule(clause("beta", "lt", True)),
            f"{P}.rules[0].clauses[0].values[0]",
            "lt needs a number",
            id="boolean numeric value",
        ),
        pytest.param(
            with_rule(clause("app_version", "semver_lt", "2.4")),
            f"{P}.rules[0].clauses[0].values[0]",
            "'2.4' is not a semantic version",
            id="bad semver",
        ),
        pytest.param(
            with_rule(clause("plan", "equals")),
            f"{P}.rules[0].clauses[0].values",
            "needs at least one value",
            id="clause without values",
        ),
        pytest.param(
            with_rule(clause("plan", "in", "pro", ["team"])),
            f"{P}.rules[0].clauses[0].values[1]",
            "must be a string, number or boolean",
            id="non-scalar equality value",
        ),
        pytest.param(
            with_rule(clause("email", "regex", 42)),
            f"{P}.rules[0].clauses[0].values[0]",
            "a regex must be a string",
            id="non-string regex",
        ),
        pytest.param(
            flag_doc(rules=[rule("r1", variation="candidate", rollout=rollout(control=50, candidate=50))]),
            f"{P}.rules[0]",
            "serve exactly one of variation or rollout",
            id="rule with variation and rollout",
        ),
        pytest.param(
            flag_doc(rules=[rule("r1", variation=None)]),
            f"{P}.rules[0]",
            "serve exactly one of variation or rollout",
            id="rule serving nothing",
        ),
        pytest.param(
            flag_doc(rules=[rule("r1", variation="ghost")]),
            f"{P}.rules[0].variation",
            "no variation 'ghost'",
            id="rule serving an unknown variation",
        ),
        pytest.param(
            flag_doc(rules=[rule("r1"), rule("r1")]),
            f"{P}.rules[1].id",
            "duplicate rule id 'r1'",
            id="duplicate rule id",
        ),
        pytest.param(flag_doc(key="Checkout Copy"), "key", "use 1-100 of a-z", id="bad flag key"),
        pytest.param(
            flag_doc(assignment_unit="User ID"), "assignment_unit", "use a-z", id="bad assignment unit"
        ),
    ],
)
def test_check_flag_names_the_field_and_the_reason(doc: dict[str, Any], field: str, reason: str) -> None:
    found = problems_of(doc)
    assert field in found, found
    assert reason in found[field]


@pytest.mark.parametrize(
    ("doc", "field", "reason"),
    [
        pytest.param(
            flag_doc(variations=[{"key": f"v{i}", "value": {}} for i in range(MAX_VARIATIONS + 1)]),
            "variations",
            "at most 100 variations, not 101",
            id="variations",
        ),
        pytest.param(
            flag_doc(rules=[rule(f"r{i}") for i in range(MAX_RULES + 1)]),
            f"{P}.rules",
            "at most 100 rules per environment, not 101",
            id="rules",
        ),
        pytest.param(
            with_rule(*[clause("plan", "equals", "pro")] * (MAX_CLAUSES + 1)),
            f"{P}.rules[0].clauses",
            "at most 20 clauses per rule, not 21",
            id="clauses",
        ),
        pytest.param(
            with_rule(clause("unit_id", "in", *[f"u{i}" for i in range(MAX_CLAUSE_VALUES + 1)])),
            f"{P}.rules[0].clauses[0].values",
            "at most 1000 values per clause, not 1001; list units in a segment's included instead",
            id="values",
        ),
    ],
)
def test_flags_past_the_structural_limits_are_refused_at_the_list(
    doc: dict[str, Any], field: str, reason: str
) -> None:
    assert problems_of(doc)[field] == reason


def test_flags_at_the_structural_limits_pass() -> None:
    checked(
        flag_doc(
            variations=[{"key": f"v{i}", "value": f"V{i}"} for i in range(MAX_VARIATIONS)],
            default_variation="v0",
            off_variation="v0",
            rules=[
                rule(
                    f"r{i}",
                    *[clause("unit_id", "in", *range(MAX_CLAUSE_VALUES))] * MAX_CLAUSES,
                    variation="v0",
                )
                for i in range(MAX_RULES)
            ],
        )
    )


def test_check_flag_reports_an_unknown_segment_when_segments_are_given() -> None:
    doc = with_rule(clause("unit_id", "in_segment", "beta_users", "ghosts"))
    found = problems_of(doc, {"beta_users": segment("beta_users")})
    assert found == {f"{P}.rules[0].clauses[0].values[1]": "no segment 'ghosts'"}


def test_check_flag_reports_every_problem_at_once_and_summarises_the_first_five() -> None:
    doc = flag_doc(
        default_variation="ghost",
        off_variation="ghost",
        rules=[rule("r1", clause("a", "regex", "("), clause("b", "lt", "x"), clause("c", "semver_eq", "1"))],
        rollout=rollout(control=10),
    )
    with pytest.raises(ValidationError) as caught:
        check_flag(convert_flag(doc))
    assert len(caught.value.problems) == 6
    assert caught.value.message.startswith(
        "invalid flag 'checkout_copy': environments.production.default_variation"
    )
    assert caught.value.message.endswith("(and 1 more)")


@pytest.mark.parametrize("weight", [math.nan, math.inf, -math.inf])
def test_a_non_finite_weight_is_a_validation_problem_not_a_crash(weight: float) -> None:
    # YAML `.nan`/`.inf` and Python's json (`NaN`, `Infinity`) both produce these floats.
    found = problems_of(flag_doc(rollout=rollout(control=weight, candidate=0)))
    assert found[f"{P}.rollout.weights.control"] == "must be within 0..100"


def test_semver_clause_values_may_carry_a_leading_v_as_attributes_may() -> None:
    check_flag(convert_flag(with_rule(clause("app_version", "semver_gte", "v2.4.0"))))


# -- convert_flag -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("mutate", "field", "reason"),
    [
        (lambda d: d.update(type="float"), "type", "Invalid enum value 'float'"),
        (lambda d: d["variations"][0].update(colour="red"), "variations[0].colour", "unknown field"),
        (
            lambda d: d["environments"]["production"].update(enabled="yes"),
            "environments[...].enabled",
            "Expected `bool`, got `str`",
        ),
        (
            lambda d: d["environments"]["production"].update(
                rules=[rule("r", clause("plan", "contains", "x"))]
            ),
            "environments[...].rules[0].clauses[0].op",
            "Invalid enum value 'contains'",
        ),
        (
            lambda d: d["environments"]["production"].update(rollout={"weights": {"control": "100"}}),
            "environments[...].rollout.weights[...]",
            "Expected `float`, got `str`",
        ),
    ],
)
def test_convert_flag_reports_the_field_path_of_a_type_error(mutate: Any, field: str, reason: str) -> None:
    doc = flag_doc()
    mutate(doc)
    with pytest.raises(ValidationError) as caught:
        convert_flag(doc)
    (problem,) = caught.value.problems
    assert problem.field == field
    assert reason in problem.reason
    assert caught.value.message == f"invalid flag: {problem.render()}"


@pytest.mark.parametrize(
    ("path", "name", "prefix"),
    [((), "type", ""), (("environments", "production"), "default_variation", "environments")],
)
def test_convert_flag_names_a_missing_required_field(path: tuple[str, ...], name: str, prefix: str) -> None:
    doc = flag_doc()
    target: dict[str, Any] = doc
    for key in path:
        target = target[key]
    del target[name]
    with pytest.raises(ValidationError) as caught:
        convert_flag(doc)
    field = caught.value.problems[0].field
    assert field.startswith(prefix)
    assert field.rsplit(".", 1)[-1] == name


# -- stabilize ----------------------------------------------------------------------------


def ranges_of(flag: Flag, rule_index: int | None = None) -> list[tuple[str, int, int]]:
    env = flag.environments["production"]
    source = env.rollout if rule_index is None else env.rules[rule_index].rollout
    assert source is not None and source.ranges is not None
    return [tuple(r) for r in source.ranges]  # type: ignore[misc]


def test_a_new_rollout_is_laid_out_contiguously_in_weights_order() -> None:
    flag = checked(flag_doc(rollout=rollout(candidate=5, control=95)))
    assert ranges_of(flag) == [("candidate", 0, 5_000), ("control", 5_000, SLOTS)]


def test_ramping_keeps_the_candidates_slots_and_takes_new_ones_from_control_only() -> None:
    v1 = checked(flag_doc(rollout=rollout(control=95, candidate=5)))
    v2 = checked(flag_doc(rollout=rollout(control=80, candidate=20)), previous=v1)
    # Ranges are listed oldest first: the candidate's original 5 %, then what it took from control.
    assert ranges_of(v2) == [
        ("control", 0, 80_000),
        ("candidate", 95_000, SLOTS),
        ("candidate", 80_000, 95_000),
    ]


def test_rolling_a_ramp_back_returns_exactly_the_units_it_took() -> None:
    v1 = checked(flag_doc(rollout=rollout(control=95, candidate=5)))
    v2 = checked(flag_doc(rollout=rollout(control=80, candidate=20)), previous=v1)
    v3 = checked(flag_doc(rollout=rollout(control=95, candidate=5)), previous=v2)
    # 5 → 20 → 5: the candidate is its original 5 % again; control's returned slots are its newest.
    assert ranges_of(v3) == [
        ("control", 0, 80_000),
        ("candidate", 95_000, SLOTS),
        ("control", 80_000, 95_000),
    ]
    v4 = checked(flag_doc(rollout=rollout(control=80, candidate=20)), previous=v3)
    assert ranges_of(v4) == ranges_of(v2)  # ramping again exposes the same units as the first time


def test_stabilize_keeps_ranges_when_weights_are_unchanged_even_if_reordered() -> None:
    v1 = checked(flag_doc(rollout=rollout(control=95, candidate=5)))
    v2 = checked(flag_doc(rollout=rollout(candidate=5, control=95), enabled=False), previous=v1)
    assert ranges_of(v2) == ranges_of(v1)


def test_stabilize_moves_only_the_slots_the_weight_change_requires() -> None:
    three = [{"key": k, "value": k} for k in ("control", "candidate", "fallback")]
    v1 = checked(flag_doc(variations=three, rollout=rollout(control=90, candidate=5, fallback=5)))
    v2 = checked(
        flag_doc(variations=three, rollout=rollout(control=75, candidate=20, fallback=5)), previous=v1
    )
    v3 = checked(
        flag_doc(variations=three, rollout=rollout(control=85, candidate=10, fallback=5)), previous=v2
    )
    # Control gives up the top of its range; the candidate appends it as its newest range.
    assert ranges_of(v2) == [
        ("control", 0, 75_000),
        ("candidate", 90_000, 95_000),
        ("fallback", 95_000, SLOTS),
        ("candidate", 75_000, 90_000),
    ]
    # Rolling back 20 → 10: the candidate gives up the newest of the slots it took (the top of its
    # newest range), keeping its original 5 %; control appends them; fallback never moves.
    assert ranges_of(v3) == [
        ("control", 0, 75_000),
        ("candidate", 90_000, 95_000),
        ("fallback", 95_000, SLOTS),
        ("candidate", 75_000, 80_000),
        ("control", 80_000, 90_000),
    ]


def test_stabilize_keeps_rule_rollout_ranges_by_rule_id() -> None:
    def doc(candidate: float, rule_id: str = "beta") -> dict[str, Any]:
        split = rollout(control=100 - candidate, candidate=candidate)
        return flag_doc(
            rules=[rule(rule_id, clause("plan", "equals", "beta"), variation=None, rollout=split)]
        )

    v1 = checked(doc(10))
    v2 = checked(doc(30), previous=v1)
    assert ranges_of(v2, 0) == [
        ("control", 0, 70_000),
        ("candidate", 90_000, SLOTS),
        ("candidate", 70_000, 90_000),
    ]
    v3 = checked(doc(20), previous=v2)
    assert ranges_of(v3, 0) == [
        ("control", 0, 70_000),
        ("candidate", 90_000, SLOTS),
        ("candidate", 70_000, 80_000),
        ("control", 80_000, 90_000),
    ]
    renamed = checked(doc(20, rule_id="beta-2"), previous=v2)  # a new rule: a fresh layout
    assert ranges_of(renamed, 0) == [("control", 0, 80_000), ("candidate", 80_000, SLOTS)]


def test_copied_ranges_are_kept_on_create_when_they_tile_by_weight() -> None:
    doc = flag_doc(
        rollout={
            "weights": {"control": 95, "candidate": 5},
            "ranges": [["candidate", 0, 2_000], ["control", 2_000, 97_000], ["candidate", 97_000, SLOTS]],
        }
    )
    flag = stabilize(convert_flag(doc), None)
    assert flag.environments["production"].rollout.allocation() == (  # type: ignore[union-attr]
        SlotRange("candidate", 0, 2_000),
        SlotRange("control", 2_000, 97_000),
        SlotRange("candidate", 97_000, SLOTS),
    )


def test_copied_ranges_keep_their_list_order_which_is_their_age() -> None:
    ranges: list[list[Any]] = [
        ["candidate", 97_000, SLOTS],
        ["control", 2_000, 97_000],
        ["candidate", 0, 2_000],
    ]
    copied = stabilize(
        convert_flag(flag_doc(rollout={"weights": {"control": 95, "candidate": 5}, "ranges": ranges})), None
    )
    assert ranges_of(copied) == [tuple(r) for r in ranges]  # not sorted by start
    # Shrinking the candidate gives up its newest (last listed) range first.
    smaller = checked(flag_doc(rollout=rollout(control=97, candidate=3)), previous=copied)
    assert ranges_of(smaller) == [
        ("candidate", 97_000, SLOTS),
        ("control", 2_000, 97_000),
        ("control", 0, 2_000),
    ]


@pytest.mark.parametrize(
    ("ranges", "reason"),
    [
        ([["control", 0, 95_000], ["candidate", 96_000, SLOTS]], "must tile 0..100000 exactly"),
        ([["control", 0, 90_000], ["candidate", 90_000, SLOTS]], "do not match the weight of 'control'"),
    ],
)
def test_copied_ranges_that_do_not_tile_by_weight_are_rejected(ranges: list[list[Any]], reason: str) -> None:
    doc = flag_doc(rollout={"weights": {"control": 95, "candidate": 5}, "ranges": ranges})
    with pytest.raises(ValidationError) as caught:
        stabilize(convert_flag(doc), None)
    assert (caught.value.problems[0].field, caught.value.problems[0].reason) == (
        f"{P}.rollout.ranges",
        reason,
    )


# -- assignment unit and SDK view ---------------------------------------------------------


def test_changing_the_assignment_unit_requires_a_new_salt_in_every_environment() -> None:
    before = convert_flag(flag_doc(assignment_unit="user"))
    same_salt = convert_flag(flag_doc(assignment_unit="conversation"))
    new_salt = convert_flag(flag_doc(assignment_unit="conversation", salt="checkout_copy-by-conversation"))
    problem = assignment_unit_change_problem(same_salt, before)
    assert problem is not None
    assert "set a new salt in production" in problem
    assert assignment_unit_change_problem(new_salt, before) is None
    assert assignment_unit_change_problem(before, before) is None


def test_the_salt_defaults_to_the_flag_key_and_an_empty_salt_counts_as_unset() -> None:
    assert convert_flag(flag_doc()).salt_for("production") == "checkout_copy"
    assert convert_flag(flag_doc(salt="")).salt_for("production") == "checkout_copy"
    assert convert_flag(flag_doc(salt="exp-2")).salt_for("production") == "exp-2"


def test_sdk_flag_is_absent_for_archived_flags_and_unconfigured_environments() -> None:
    flag = checked(flag_doc(salt="exp-2"))
    entry = sdk_flag(flag, "production")
    assert entry is not None
    assert (entry.salt, entry.enabled, entry.default_variation) == ("exp-2", True, "control")
    assert sdk_flag(flag, "staging") is None
    assert sdk_flag(msgspec.structs.replace(flag, archived=True), "production") is None
