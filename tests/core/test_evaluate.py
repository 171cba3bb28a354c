"""Local evaluation: clause operators, rule order, rollouts, kill switch, errors that never raise."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest

from ramplight.core.bucketing import slot_of, unit_hash
from ramplight.core.evaluate import CompiledConfig
from ramplight.core.flags import Flag, SdkConfig, Segment, convert_flag, sdk_flag
from tests.core.builders import ENV, checked, clause, compiled, flag_doc, rollout, rule, segment

SEGMENTS = (
    segment(
        "beta",
        included=["user-1", "user-2"],
        excluded=["user-3"],
        clauses=[{"attribute": "plan", "op": "equals", "values": ["enterprise"]}],
    ),
    segment("acme", attribute="account_id", included=["acme"]),
    segment("listed_only", included=["user-7"]),
)


def served(one_clause: dict[str, Any], attributes: dict[str, Any] | None, unit_id: str = "user-9") -> bool:
    """Whether a flag whose only rule has `one_clause` serves that rule to the unit."""
    flag = checked(flag_doc(rules=[rule("r1", one_clause)]), SEGMENTS)
    result = compiled(flag, segments=SEGMENTS).evaluate(flag.key, unit_id, attributes)
    assert result.reason in ("rule", "default")
    return result.reason == "rule"


@pytest.mark.parametrize(
    ("op", "values", "attributes", "matches"),
    [
        ("equals", ["pro"], {"plan": "pro"}, True),
        ("equals", ["pro"], {"plan": "Pro"}, False),
        ("equals", ["pro"], {}, False),
        ("equals", ["pro"], None, False),
        ("equals", ["pro"], {"plan": None}, False),
        ("equals", ["pro"], {"plan": ["pro"]}, False),
        ("equals", [7], {"plan": 7.0}, True),
        ("equals", [7], {"plan": "7"}, False),
        ("in", ["eu", "uk"], {"plan": "uk"}, True),
        ("in", ["eu", "uk"], {"plan": "us"}, False),
        ("not_equals", ["free"], {"plan": "pro"}, True),
        ("not_equals", ["free"], {"plan": "free"}, False),
        ("not_in", ["eu", "uk"], {"plan": "us"}, True),
        ("not_in", ["eu", "uk"], {"plan": "eu"}, False),
        ("not_in", ["eu", "uk"], {}, False),
        ("not_in", ["eu", "uk"], {"plan": None}, False),
        ("not_in", ["eu", "uk"], {"plan": {"nested": "eu"}}, True),
        ("regex", ["^pro"], {"plan": "pro-annual"}, True),
        ("regex", ["annual"], {"plan": "pro-annual"}, True),
        ("regex", ["^annual"], {"plan": "pro-annual"}, False),
        ("regex", ["x", "^pro$"], {"plan": "pro"}, True),
        ("regex", ["7"], {"plan": 7}, False),
        ("regex", [".*"], {}, False),
        ("lt", [30], {"plan": 29.9}, True),
        ("lt", [30], {"plan": 30}, False),
        ("lt", [30], {"plan": "12"}, True),
        ("lt", [30], {"plan": True}, False),
        ("lt", [30], {"plan": "soon"}, False),
        ("lt", [30], {"plan": "nan"}, False),
        ("lt", [30], {}, False),
        ("lte", [30], {"plan": 30}, True),
        ("lte", [30], {"plan": 30.5}, False),
        ("gt", [100, 10], {"plan": 50}, True),
        ("gt", [100, 10], {"plan": 10}, False),
        ("gte", [10.5], {"plan": 10.5}, True),
        ("gte", [10.5], {"plan": "1e3"}, True),
        ("semver_eq", ["1.0.0"], {"plan": "1.0.0+build.7"}, True),
        ("semver_eq", ["1.0.0"], {"plan": "v1.0.0"}, True),
        ("semver_eq", ["1.0.0"], {"plan": "V1.0.0"}, False),
        ("semver_eq", ["1.0.0"], {"plan": "1.0"}, False),
        ("semver_eq", ["1.0.0"], {"plan": 1}, False),
        ("semver_eq", ["v1.0.0"], {"plan": "1.0.0"}, True),
        ("semver_lt", ["2.4.0"], {"plan": "2.4.0-rc.1"}, True),
        ("semver_lt", ["2.4.0"], {"plan": "2.4.0"}, False),
        ("semver_lte", ["2.4.0"], {"plan": "2.4.0"}, True),
        ("semver_gt", ["1.0.0-alpha.9"], {"plan": "1.0.0-alpha.10"}, True),
        ("semver_gt", ["2.9.0"], {"plan": "2.10.0"}, True),
        ("semver_gte", ["2.4.0", "3.0.0"], {"plan": "2.3.9"}, False),
        ("semver_gte", ["2.4.0", "3.0.0"], {"plan": "2.5.0"}, True),
    ],
)
def test_clause_operator(
    op: str, values: list[Any], attributes: dict[str, Any] | None, matches: bool
) -> None:
    assert served(clause("plan", op, *values), attributes) is matches


@pytest.mark.parametrize(
    ("plain", "attributes"),
    [
        (clause("plan", "equals", "free"), {"plan": "free"}),
        (clause("plan", "equals", "free"), {"plan": "pro"}),
        (clause("plan", "equals", "free"), {}),
        (clause("plan", "not_in", "free"), {}),
        (clause("plan", "regex", "^f"), {"plan": 3}),
        (clause("seats", "gt", 10), {"seats": "many"}),
        (clause("app", "semver_gte", "1.0.0"), {}),
        (clause("unit_id", "in_segment", "beta"), {}),
    ],
)
def test_negate_matches_exactly_when_the_plain_clause_does_not(
    plain: dict[str, Any], attributes: dict[str, Any]
) -> None:
    negated = {**plain, "negate": True}
    assert served(negated, attributes) is not served(plain, attributes)


def test_unit_id_attribute_is_the_evaluated_unit_not_an_attribute_of_that_name() -> None:
    in_clause = clause("unit_id", "in", "user-5")
    assert served(in_clause, None, unit_id="user-5")
    assert not served(in_clause, {"unit_id": "user-5"}, unit_id="user-6")


@pytest.mark.parametrize(
    ("unit_id", "attributes", "member"),
    [
        ("user-1", None, True),  # included
        ("user-3", {"plan": "enterprise"}, False),  # excluded beats the clauses
        ("user-9", {"plan": "enterprise"}, True),  # clauses
        ("user-9", {"plan": "pro"}, False),
        ("user-9", None, False),
    ],
)
def test_segment_membership_by_included_excluded_and_clauses(
    unit_id: str, attributes: dict[str, Any] | None, member: bool
) -> None:
    assert served(clause("unit_id", "in_segment", "beta"), attributes, unit_id) is member
    assert served(clause("unit_id", "not_in_segment", "beta"), attributes, unit_id) is not member


def test_a_segment_without_clauses_has_only_its_listed_members() -> None:
    assert served(clause("unit_id", "in_segment", "listed_only"), None, "user-7")
    assert not served(clause("unit_id", "in_segment", "listed_only"), {"plan": "enterprise"}, "user-8")


def test_in_segment_matches_membership_of_any_listed_segment_by_its_own_attribute() -> None:
    either = clause("unit_id", "in_segment", "beta", "acme")
    assert served(either, {"account_id": "acme"}, "user-9")
    assert served(either, None, "user-2")
    assert not served(either, {"account_id": "globex"}, "user-9")


# -- evaluation order ---------------------------------------------------------------------


def test_the_first_matching_rule_wins() -> None:
    flag = checked(
        flag_doc(
            rules=[
                rule("staff", clause("email", "regex", "@ramplight\\.dev$"), variation="candidate"),
                rule("free", clause("plan", "equals", "free"), variation="control"),
                rule("everyone", variation="candidate"),
            ]
        )
    )
    config = compiled(flag)
    staff_on_free = config.evaluate(flag.key, "u", {"email": "ana@ramplight.dev", "plan": "free"})
    assert (staff_on_free.variation, staff_on_free.rule_id) == ("candidate", "staff")
    assert config.evaluate(flag.key, "u", {"plan": "free"}).rule_id == "free"
    assert config.evaluate(flag.key, "u", {"plan": "pro"}).rule_id == "everyone"


def test_all_clauses_of_a_rule_must_match() -> None:
    both = rule("eu-pro", clause("plan", "equals", "pro"), clause("region", "in", "eu"))
    flag = checked(flag_doc(rules=[both]))
    config = compiled(flag)
    assert config.evaluate(flag.key, "u", {"plan": "pro", "region": "eu"}).reason == "rule"
    assert config.evaluate(flag.key, "u", {"plan": "pro", "region": "us"}).reason == "default"


def test_rules_come_before_the_rollout_and_the_rollout_before_the_default() -> None:
    with_rollout = checked(
        flag_doc(
            rules=[rule("pinned", clause("plan", "equals", "vip"), variation="control")],
            rollout=rollout(control=0, candidate=100),
        )
    )
    without = checked(flag_doc(key="no_rollout", default_variation="candidate"))
    config = compiled(with_rollout, without)
    vip = config.evaluate(with_rollout.key, "u", {"plan": "vip"})
    others = config.evaluate(with_rollout.key, "u", {"plan": "pro"})
    fallthrough = config.evaluate(without.key, "u")
    assert (vip.variation, vip.reason, vip.rule_id) == ("control", "rule", "pinned")
    assert (others.variation, others.reason, others.rule_id) == ("candidate", "rollout", None)
    assert (fallthrough.variation, fallthrough.value, fallthrough.reason) == ("candidate", "B", "default")


def test_a_rule_rollout_splits_matching_units_with_the_flags_salt() -> None:
    split = rule(
        "beta", clause("plan", "equals", "beta"), variation=None, rollout=rollout(control=50, candidate=50)
    )
    flag = checked(flag_doc(rules=[split], salt="exp-7"))
    config = compiled(flag)
    for i in range(200):
        unit = f"user-{i}"
        result = config.evaluate(flag.key, unit, {"plan": "beta"})
        expected = "control" if slot_of(unit_hash("exp-7", unit)) < 50_000 else "candidate"
        assert (result.variation, result.reason, result.rule_id) == (expected, "rule", "beta")
        assert config.evaluate(flag.key, unit, {"plan": "free"}).reason == "default"


def test_a_disabled_flag_serves_the_off_variation_to_everyone_before_any_rule() -> None:
    flag = checked(
        flag_doc(
            enabled=False,
            off_variation="control",
            rules=[rule("all", variation="candidate")],
            rollout=rollout(control=0, candidate=100),
        )
    )
    config = compiled(flag)
    results = {config.evaluate(flag.key, f"user-{i}", {"plan": "pro"}) for i in range(50)}
    assert len(results) == 1
    (result,) = results
    assert (result.variation, result.value, result.reason, result.rule_id) == ("control", "A", "off", None)


def test_evaluation_reports_the_flag_version_and_assignment_unit() -> None:
    flag = checked(flag_doc(assignment_unit="conversation"))
    result = compiled(flag).evaluate(flag.key, "c-1")
    assert (result.flag_key, result.flag_version, result.assignment_unit) == (flag.key, 1, "conversation")


# -- errors never raise -------------------------------------------------------------------


def test_a_missing_flag_serves_the_callers_default_with_flag_not_found() -> None:
    result = compiled().evaluate("nope", "user-1", None, default="fallback-copy")
    assert (result.value, result.variation, result.reason, result.error_code) == (
        "fallback-copy",
        None,
        "error",
        "flag_not_found",
    )
    assert result.flag_version is None


def broken_config(**env: Any) -> CompiledConfig:
    """A config as a faulty server might send it: semantically invalid, still well-typed."""
    flag = msgspec.structs.replace(convert_flag(flag_doc(**env)), version=3)
    entry = sdk_flag(flag, ENV)
    assert entry is not None
    return CompiledConfig(SdkConfig(environment=ENV, flags={flag.key: entry}))


@pytest.mark.parametrize(
    "env",
    [
        {"rules": [rule("r", variation="ghost")]},
        {"rules": [rule("r", clause("unit_id", "in_segment", "nowhere"))]},
        {"rules": [rule("r", clause("email", "regex", "("))]},
        {"rules": [rule("r", clause("seats", "gt", "many"))]},
        {"rules": [rule("r", clause("app", "semver_gt", "2.x"))]},
        {"rollout": {"weights": {"control": 100}, "ranges": [["ghost", 0, 100_000]]}},
        {"off_variation": "ghost", "enabled": False},
    ],
    ids=[
        "unknown variation",
        "unknown segment",
        "bad regex",
        "bad number",
        "bad semver",
        "bad range",
        "bad off",
    ],
)
def test_a_broken_flag_serves_the_callers_default_with_invalid_flag(env: dict[str, Any]) -> None:
    result = broken_config(**env).evaluate("checkout_copy", "user-1", {"plan": "pro"}, default="safe")
    assert (result.value, result.variation, result.reason, result.error_code) == (
        "safe",
        None,
        "error",
        "invalid_flag",
    )
    assert result.flag_version == 3
    assert result.error_message is not None and "checkout_copy" in result.error_message


def test_a_disabled_flag_with_a_broken_rule_still_serves_off() -> None:
    result = broken_config(enabled=False, rules=[rule("r", clause("email", "regex", "("))]).evaluate(
        "checkout_copy", "user-1"
    )
    assert (result.variation, result.reason) == ("control", "off")


def test_a_flag_whose_evaluator_raises_serves_the_default_with_an_error_reason() -> None:
    flag = checked(flag_doc(rules=[rule("pro", clause("plan", "equals", "pro"))]))
    not_a_mapping: Any = ["plan", "pro"]  # an application passing the wrong type must not crash
    result = compiled(flag).evaluate(flag.key, "user-1", not_a_mapping, default="safe")
    assert (result.value, result.reason, result.error_code) == ("safe", "error", "general")
    assert result.error_message is not None and result.error_message.startswith("evaluation failed")


def test_a_unit_id_that_cannot_be_encoded_serves_the_default() -> None:
    flag = checked(flag_doc(rollout=rollout(control=50, candidate=50)))
    result = compiled(flag).evaluate(flag.key, "user-\ud800", default="safe")
    assert (result.value, result.reason, result.error_code) == ("safe", "error", "general")


@pytest.mark.parametrize(
    ("flag_type", "values", "expected", "ok"),
    [
        ("string", ["A", "B"], "string", True),
        ("string", ["A", "B"], "boolean", False),
        ("boolean", [False, True], "boolean", True),
        ("boolean", [False, True], "number", False),
        ("number", [1, 2.5], "number", True),
        ("number", [1, 2.5], "string", False),
        ("json", [{"profile": "v3"}, {"profile": "v4"}], "json", True),
        ("json", [{"profile": "v3"}, {"profile": "v4"}], "string", False),
    ],
)
def test_evaluate_typed_serves_the_default_on_a_type_mismatch(
    flag_type: str, values: list[Any], expected: str, ok: bool
) -> None:
    variations = [{"key": "control", "value": values[0]}, {"key": "candidate", "value": values[1]}]
    flag = checked(flag_doc(flag_type=flag_type, variations=variations))
    result = compiled(flag).evaluate_typed(flag.key, "user-1", None, "the-default", expected)
    if ok:
        assert (result.value, result.reason) == (values[0], "default")
    else:
        assert (result.value, result.variation, result.reason, result.error_code) == (
            "the-default",
            None,
            "error",
            "type_mismatch",
        )
        assert result.flag_version == 1


def test_evaluate_typed_passes_an_error_through_unchanged() -> None:
    result = compiled().evaluate_typed("nope", "user-1", None, False, "boolean")
    assert (result.value, result.error_code) == (False, "flag_not_found")


# -- results are shared, immutable values -------------------------------------------------


def test_evaluation_results_are_prebuilt_shared_and_immutable() -> None:
    flag = checked(flag_doc(rollout=rollout(control=50, candidate=50)))
    config = compiled(flag)
    results = [config.evaluate(flag.key, f"user-{i}") for i in range(100)]
    assert len({id(r) for r in results}) == 2  # one object per (variation, reason)
    with pytest.raises(AttributeError):
        results[0].variation = "candidate"  # type: ignore[misc]


def test_a_config_compiles_once_and_later_evaluations_see_the_same_answers() -> None:
    flags: list[Flag] = [
        checked(flag_doc(key=f"flag-{i}", rollout=rollout(control=90, candidate=10))) for i in range(5)
    ]
    config = compiled(*flags)
    assert config.keys() == [f.key for f in flags]
    first = [config.evaluate(f.key, "user-1") for f in flags]
    assert [config.evaluate(f.key, "user-1") for f in flags] == first
    assert config.flag("flag-0") is not None and config.flag("nope") is None


# -- bugs ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("value", "attribute"), [(1, True), (True, 1), (0, False)])
def test_a_boolean_never_equals_a_number(value: Any, attribute: Any) -> None:
    assert not served(clause("plan", "equals", value), {"plan": attribute})


@pytest.mark.parametrize(
    "bad",
    [
        segment("bad", clauses=[{"attribute": "email", "op": "regex", "values": ["("]}]),
        segment("bad", clauses=[{"attribute": "unit_id", "op": "in_segment", "values": ["beta"]}]),
        segment("bad", clauses=[{"attribute": "seats", "op": "gt", "values": ["many"]}]),
    ],
    ids=["bad regex", "nested segment", "bad number"],
)
def test_a_broken_segment_breaks_only_the_flags_that_use_it(bad: Segment) -> None:
    healthy = checked(flag_doc(key="healthy", default_variation="candidate"))
    user = convert_flag(flag_doc(key="user", rules=[rule("r", clause("unit_id", "in_segment", "bad"))]))
    config = compiled(healthy, user, segments=[bad])
    assert config.evaluate("healthy", "user-1").variation == "candidate"
    assert config.evaluate("user", "user-1").error_code == "invalid_flag"


def test_a_list_valued_segment_attribute_is_simply_not_a_member() -> None:
    by_tags = segment("by_tags", attribute="tags", included=["beta"])
    flag = checked(flag_doc(rules=[rule("r", clause("unit_id", "in_segment", "by_tags"))]), [by_tags])
    result = compiled(flag, segments=[by_tags]).evaluate(flag.key, "user-1", {"tags": ["beta"]})
    assert (result.variation, result.reason) == ("control", "default")


# -- a config from JSON: each flag decoded and compiled when first used --------------------


def as_json(*flags: Flag, segments: list[Segment] | None = None) -> CompiledConfig:
    entries = {f.key: sdk_flag(f, ENV) for f in flags}
    body = msgspec.json.encode(
        SdkConfig(environment=ENV, flags=entries, segments={s.key: s for s in segments or []})
    )  # type: ignore[arg-type]
    return CompiledConfig.from_json(body)


def test_a_config_from_json_answers_as_the_decoded_config_does() -> None:
    beta = segment("beta", included=["user-1"])
    flags = [
        checked(flag_doc(key="ramp", rollout=rollout(control=50, candidate=50))),
        checked(flag_doc(key="targeted", rules=[rule("r", clause("unit_id", "in_segment", "beta"))]), [beta]),
        msgspec.structs.replace(
            convert_flag(flag_doc(key="broken", rules=[rule("r", variation="ghost")])), version=2
        ),
    ]
    decoded = compiled(*flags, segments=[beta])
    from_json = as_json(*flags, segments=[beta])
    assert from_json.keys() == decoded.keys() == ["ramp", "targeted", "broken"]
    for key in [*decoded.keys(), "nope"]:
        for unit in ("user-1", "user-2", "user-3"):
            assert from_json.evaluate(key, unit, None, "safe") == decoded.evaluate(key, unit, None, "safe")
    assert from_json.flag("ramp") == decoded.flag("ramp")


def test_a_config_with_one_malformed_flag_is_refused_whole_naming_the_flag() -> None:
    good = msgspec.json.encode(sdk_flag(checked(flag_doc(key="good")), ENV)).decode()
    body = f'{{"environment": "{ENV}", "flags": {{"good": {good}, "bad": {{"key": "bad"}}}}}}'.encode()
    with pytest.raises(msgspec.ValidationError, match="flag 'bad'"):
        CompiledConfig.from_json(body)


def test_changed_keys_name_the_flags_added_changed_or_removed() -> None:
    a, b = checked(flag_doc(key="a")), checked(flag_doc(key="b"))
    b2 = checked(flag_doc(key="b", default_variation="candidate"), previous=b)
    c = checked(flag_doc(key="c"))
    before, after = as_json(a, b), as_json(a, b2, c)
    assert after.changed_keys(before) == ["b", "c"]
    assert before.changed_keys(after) == ["b", "c"]
    assert compiled(a, b2).changed_keys(before) == ["b"]
