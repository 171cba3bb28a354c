"""The flag model: typed variations, per-environment targeting and rollouts.

Documents are msgspec Structs, decoded once at the edge (HTTP, YAML, SDK config) with
`decode_flag`/`convert_flag`; `check_flag` then reports every semantic problem at once.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Literal

import msgspec

from ramplight.core.bucketing import (
    SLOTS,
    SlotRange,
    contiguous_allocation,
    percent_to_slots,
    reallocate,
    slots_by_variation,
)
from ramplight.core.errors import FieldProblem, ValidationError
from ramplight.core.regex import pattern_problem
from ramplight.core.versions import parse_version

FlagType = Literal["boolean", "string", "number", "json"]
ClauseOp = Literal[
    "equals",
    "not_equals",
    "in",
    "not_in",
    "regex",
    "lt",
    "lte",
    "gt",
    "gte",
    "semver_eq",
    "semver_lt",
    "semver_lte",
    "semver_gt",
    "semver_gte",
    "in_segment",
    "not_in_segment",
]
SCALAR_OPS = frozenset({"equals", "not_equals", "in", "not_in"})
NUMERIC_OPS = frozenset({"lt", "lte", "gt", "gte"})
SEMVER_OPS = frozenset({"semver_eq", "semver_lt", "semver_lte", "semver_gt", "semver_gte"})
SEGMENT_OPS = frozenset({"in_segment", "not_in_segment"})

KEY_PATTERN = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,99}$")
"""Flag, variation, environment and segment keys: lowercase, digits, `_ . -`, at most 100."""

MAX_VARIATIONS = 100
MAX_RULES = 100
"""Rules per environment."""
MAX_CLAUSES = 20
"""Clauses per rule, and per segment."""
MAX_CLAUSE_VALUES = 1000
"""Values per clause; longer lists of units belong in a segment's `included`."""

STANDARD_UNITS = ("user", "account", "conversation", "session", "workflow", "request")


class Variation(msgspec.Struct, frozen=True, forbid_unknown_fields=True, omit_defaults=True):
    key: str
    value: Any
    name: str | None = None
    description: str | None = None


class Clause(msgspec.Struct, frozen=True, forbid_unknown_fields=True, omit_defaults=True):
    """`attribute op values`; `in_segment` tests membership of the unit in any listed segment."""

    op: ClauseOp
    values: list[Any]
    attribute: str = "unit_id"
    negate: bool = False


class Rollout(msgspec.Struct, frozen=True, forbid_unknown_fields=True, omit_defaults=True):
    """Percent weights per variation; `ranges` (slot ranges) are derived and kept stable."""

    weights: dict[str, float]
    ranges: list[tuple[str, int, int]] | None = None

    def allocation(self) -> tuple[SlotRange, ...]:
        if self.ranges is None:
            return contiguous_allocation({k: percent_to_slots(v) for k, v in self.weights.items()})
        return tuple(SlotRange(v, s, e) for v, s, e in self.ranges)


class Rule(msgspec.Struct, frozen=True, forbid_unknown_fields=True, omit_defaults=True):
    """First matching rule wins; it serves one `variation` or its own `rollout`."""

    id: str
    clauses: list[Clause]
    variation: str | None = None
    rollout: Rollout | None = None
    description: str | None = None


class EnvironmentConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True, omit_defaults=True):
    default_variation: str
    off_variation: str
    enabled: bool = True
    salt: str | None = None
    rules: list[Rule] = msgspec.field(default_factory=list)
    rollout: Rollout | None = None
    paused: bool = False
    """Release state, not targeting: a paused ramp keeps serving its weights but may not grow."""


class Flag(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    key: str
    type: FlagType
    assignment_unit: str
    variations: list[Variation]
    environments: dict[str, EnvironmentConfig] = msgspec.field(default_factory=dict)
    description: str = ""
    tags: list[str] = msgspec.field(default_factory=list)
    version: int = 0
    archived: bool = False

    def variation_keys(self) -> list[str]:
        return [v.key for v in self.variations]

    def salt_for(self, environment: str) -> str:
        env = self.environments[environment]
        return env.salt if env.salt else self.key


class Segment(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Units listed in `included` (by `attribute`) are members, `excluded` never; otherwise
    a unit is a member when every clause matches (and there is at least one clause)."""

    key: str
    attribute: str = "unit_id"
    included: list[str] = msgspec.field(default_factory=list)
    excluded: list[str] = msgspec.field(default_factory=list)
    clauses: list[Clause] = msgspec.field(default_factory=list)
    description: str = ""
    version: int = 0


class SdkFlag(msgspec.Struct, frozen=True):
    """One flag as an SDK sees it in one environment: everything evaluation needs, no more."""

    key: str
    type: FlagType
    assignment_unit: str
    version: int
    variations: list[Variation]
    enabled: bool
    salt: str
    default_variation: str
    off_variation: str
    rules: list[Rule]
    rollout: Rollout | None


class SdkConfig(msgspec.Struct, frozen=True):
    environment: str
    flags: dict[str, SdkFlag]
    segments: dict[str, Segment] = msgspec.field(default_factory=dict)


def sdk_flag(flag: Flag, environment: str) -> SdkFlag | None:
    env = flag.environments.get(environment)
    if env is None or flag.archived:
        return None
    return SdkFlag(
        key=flag.key,
        type=flag.type,
        assignment_unit=flag.assignment_unit,
        version=flag.version,
        variations=flag.variations,
        enabled=env.enabled,
        salt=flag.salt_for(environment),
        default_variation=env.default_variation,
        off_variation=env.off_variation,
        rules=env.rules,
        rollout=env.rollout,
    )


def _msgspec_problem(exc: msgspec.ValidationError) -> FieldProblem:
    """msgspec says `reason - at `$.path``; a missing or unknown field names itself in the reason."""
    text = str(exc)
    reason, _, path = text.partition(" - at `")
    field = path.rstrip("`").removeprefix("$").lstrip(".")
    for prefix, what in (
        ("Object missing required field", "required"),
        ("Object contains unknown field", "unknown field"),
    ):
        if reason.startswith(prefix):
            name = reason.split("`")[1]
            field = f"{field}.{name}" if field else name
            reason = what
    return FieldProblem(field=field, reason=reason)


def convert_flag(doc: Mapping[str, Any]) -> Flag:
    """Typed decode of a flag document (dict from JSON or YAML); precise error on failure."""
    try:
        return msgspec.convert(doc, Flag)
    except msgspec.ValidationError as exc:
        problem = _msgspec_problem(exc)
        raise ValidationError(f"invalid flag: {problem.render()}", (problem,)) from exc


def convert_segment(doc: Mapping[str, Any]) -> Segment:
    try:
        return msgspec.convert(doc, Segment)
    except msgspec.ValidationError as exc:
        problem = _msgspec_problem(exc)
        raise ValidationError(f"invalid segment: {problem.render()}", (problem,)) from exc


_TYPE_CHECKS: dict[str, tuple[type, ...]] = {
    "boolean": (bool,),
    "string": (str,),
    "number": (int, float),
}


def _value_matches(flag_type: str, value: Any) -> bool:
    if flag_type == "json":
        return True
    if flag_type == "number" and isinstance(value, bool):
        return False
    return isinstance(value, _TYPE_CHECKS[flag_type])


def _too_many(field: str, limit: int, what: str, count: int) -> FieldProblem:
    hint = "; list units in a segment's included instead" if what == "values per clause" else ""
    return FieldProblem(field, f"at most {limit} {what}, not {count}{hint}")


def _check_clause(clause: Clause, where: str, segments: Mapping[str, Any] | None) -> list[FieldProblem]:
    problems: list[FieldProblem] = []
    if not clause.values:
        problems.append(FieldProblem(f"{where}.values", "needs at least one value"))
    if len(clause.values) > MAX_CLAUSE_VALUES:
        problems.append(
            _too_many(f"{where}.values", MAX_CLAUSE_VALUES, "values per clause", len(clause.values))
        )
    if clause.op in SCALAR_OPS:
        for i, value in enumerate(clause.values):
            if not isinstance(value, str | int | float | bool):
                problems.append(FieldProblem(f"{where}.values[{i}]", "must be a string, number or boolean"))
    elif clause.op == "regex":
        for i, pattern in enumerate(clause.values):
            if not isinstance(pattern, str):
                problems.append(FieldProblem(f"{where}.values[{i}]", "a regex must be a string"))
                continue
            problem = pattern_problem(pattern)
            if problem is not None:
                problems.append(FieldProblem(f"{where}.values[{i}]", problem))
    elif clause.op in NUMERIC_OPS:
        for i, value in enumerate(clause.values):
            if isinstance(value, bool) or not isinstance(value, int | float):
                problems.append(FieldProblem(f"{where}.values[{i}]", f"{clause.op} needs a number"))
    elif clause.op in SEMVER_OPS:
        for i, value in enumerate(clause.values):
            if not isinstance(value, str) or parse_version(value) is None:
                problems.append(FieldProblem(f"{where}.values[{i}]", f"{value!r} is not a semantic version"))
    elif clause.op in SEGMENT_OPS and segments is not None:
        for i, value in enumerate(clause.values):
            if not isinstance(value, str) or value not in segments:
                problems.append(FieldProblem(f"{where}.values[{i}]", f"no segment {value!r}"))
    return problems


def check_segment(segment: Segment) -> None:
    """Raise one ValidationError listing every problem of `segment` (clauses cannot nest segments)."""
    problems: list[FieldProblem] = []
    if not KEY_PATTERN.match(segment.key):
        problems.append(FieldProblem("key", "use 1-100 of a-z 0-9 _ . - starting alphanumeric"))
    if len(segment.clauses) > MAX_CLAUSES:
        problems.append(_too_many("clauses", MAX_CLAUSES, "clauses per segment", len(segment.clauses)))
    for c, clause in enumerate(segment.clauses):
        if clause.op in SEGMENT_OPS:
            problems.append(FieldProblem(f"clauses[{c}].op", "a segment cannot refer to segments"))
        else:
            problems.extend(_check_clause(clause, f"clauses[{c}]", None))
    if problems:
        summary = "; ".join(p.render() for p in problems[:5])
        raise ValidationError(f"invalid segment {segment.key!r}: {summary}", tuple(problems))


def _check_rollout(rollout: Rollout, where: str, variations: set[str]) -> list[FieldProblem]:
    problems: list[FieldProblem] = []
    total = 0
    for variation, weight in rollout.weights.items():
        if variation not in variations:
            problems.append(FieldProblem(f"{where}.weights.{variation}", "no such variation"))
        if not 0 <= weight <= 100:
            problems.append(FieldProblem(f"{where}.weights.{variation}", "must be within 0..100"))
            continue
        if abs(percent_to_slots(weight) - weight * (SLOTS // 100)) > 1e-6:
            problems.append(FieldProblem(f"{where}.weights.{variation}", "at most three decimals (0.001 %)"))
        total += percent_to_slots(weight)
    if not problems and total != SLOTS:
        problems.append(FieldProblem(f"{where}.weights", f"must sum to 100, not {total / (SLOTS // 100):g}"))
    return problems


def _check_ranges(rollout: Rollout, where: str) -> list[FieldProblem]:
    """Given slot ranges (a flag copied with its assignments) must tile all slots by weight."""
    problems: list[FieldProblem] = []
    allocation = rollout.allocation()
    covered = sorted((r.start, r.end) for r in allocation)
    cursor = 0
    for start, end in covered:
        if start != cursor or end <= start:
            problems.append(FieldProblem(f"{where}.ranges", "must tile 0..100000 exactly"))
            break
        cursor = end
    else:
        if cursor != SLOTS:
            problems.append(FieldProblem(f"{where}.ranges", "must tile 0..100000 exactly"))
    sizes = slots_by_variation(allocation)
    for variation, weight in rollout.weights.items():
        if sizes.get(variation, 0) != percent_to_slots(weight):
            problems.append(FieldProblem(f"{where}.ranges", f"do not match the weight of {variation!r}"))
    return problems


def check_flag(flag: Flag, segments: Mapping[str, Any] | None = None) -> None:
    """Raise one ValidationError listing every semantic problem of `flag`."""
    problems: list[FieldProblem] = []
    if not KEY_PATTERN.match(flag.key):
        problems.append(FieldProblem("key", "use 1-100 of a-z 0-9 _ . - starting alphanumeric"))
    if not KEY_PATTERN.match(flag.assignment_unit):
        problems.append(FieldProblem("assignment_unit", "use a-z 0-9 _ . - (e.g. conversation)"))
    keys = flag.variation_keys()
    if len(keys) < 1:
        problems.append(FieldProblem("variations", "needs at least one variation"))
    if len(keys) > MAX_VARIATIONS:
        problems.append(_too_many("variations", MAX_VARIATIONS, "variations", len(keys)))
    seen: set[str] = set()
    for i, variation in enumerate(flag.variations):
        if not KEY_PATTERN.match(variation.key):
            problems.append(FieldProblem(f"variations[{i}].key", "use a-z 0-9 _ . -"))
        if variation.key in seen:
            problems.append(FieldProblem(f"variations[{i}].key", f"duplicate {variation.key!r}"))
        seen.add(variation.key)
        if not _value_matches(flag.type, variation.value):
            problems.append(
                FieldProblem(f"variations[{i}].value", f"must be a {flag.type} for a {flag.type} flag")
            )
    known = set(keys)
    for env_key, env in flag.environments.items():
        where = f"environments.{env_key}"
        for attr in ("default_variation", "off_variation"):
            if getattr(env, attr) not in known:
                problems.append(FieldProblem(f"{where}.{attr}", f"no variation {getattr(env, attr)!r}"))
        if len(env.rules) > MAX_RULES:
            problems.append(_too_many(f"{where}.rules", MAX_RULES, "rules per environment", len(env.rules)))
        rule_ids: set[str] = set()
        for r, rule in enumerate(env.rules):
            rwhere = f"{where}.rules[{r}]"
            if rule.id in rule_ids:
                problems.append(FieldProblem(f"{rwhere}.id", f"duplicate rule id {rule.id!r}"))
            rule_ids.add(rule.id)
            if (rule.variation is None) == (rule.rollout is None):
                problems.append(FieldProblem(rwhere, "serve exactly one of variation or rollout"))
            if rule.variation is not None and rule.variation not in known:
                problems.append(FieldProblem(f"{rwhere}.variation", f"no variation {rule.variation!r}"))
            if rule.rollout is not None:
                problems.extend(_check_rollout(rule.rollout, f"{rwhere}.rollout", known))
            if len(rule.clauses) > MAX_CLAUSES:
                problems.append(
                    _too_many(f"{rwhere}.clauses", MAX_CLAUSES, "clauses per rule", len(rule.clauses))
                )
            for c, clause in enumerate(rule.clauses):
                problems.extend(_check_clause(clause, f"{rwhere}.clauses[{c}]", segments))
        if env.rollout is not None:
            problems.extend(_check_rollout(env.rollout, f"{where}.rollout", known))
    if problems:
        summary = "; ".join(p.render() for p in problems[:5])
        more = f" (and {len(problems) - 5} more)" if len(problems) > 5 else ""
        raise ValidationError(f"invalid flag {flag.key!r}: {summary}{more}", tuple(problems))


def _stable_rollout(new: Rollout, old: Rollout | None, where: str) -> Rollout:
    target = {k: percent_to_slots(w) for k, w in new.weights.items()}
    if new.ranges is not None and old is None:
        problems = _check_ranges(new, where)
        if problems:
            raise ValidationError(f"invalid rollout: {problems[0].render()}", tuple(problems))
        return new
    current = old.allocation() if old is not None else ()
    allocation = reallocate(current, target)
    return Rollout(
        weights=dict(new.weights),
        ranges=[(r.variation, r.start, r.end) for r in allocation],
    )


def stabilize(flag: Flag, previous: Flag | None) -> Flag:
    """Give every rollout slot ranges derived from the previous version's, so that changing
    weights moves only the units that must move (see `reallocate`)."""
    environments: dict[str, EnvironmentConfig] = {}
    for env_key, env in flag.environments.items():
        old_env = previous.environments.get(env_key) if previous is not None else None
        old_rules = {r.id: r for r in old_env.rules} if old_env is not None else {}
        rules = [
            msgspec.structs.replace(
                rule,
                rollout=_stable_rollout(
                    rule.rollout,
                    old_rules[rule.id].rollout if rule.id in old_rules else None,
                    f"environments.{env_key}.rules[{r}].rollout",
                ),
            )
            if rule.rollout is not None
            else rule
            for r, rule in enumerate(env.rules)
        ]
        rollout = (
            _stable_rollout(
                env.rollout,
                old_env.rollout if old_env is not None else None,
                f"environments.{env_key}.rollout",
            )
            if env.rollout is not None
            else None
        )
        environments[env_key] = msgspec.structs.replace(env, rules=rules, rollout=rollout)
    return msgspec.structs.replace(flag, environments=environments)


def assignment_unit_change_problem(flag: Flag, previous: Flag) -> str | None:
    """Changing a running flag's unit is a new experiment: every environment needs a new salt."""
    if flag.assignment_unit == previous.assignment_unit:
        return None
    same_salt = [
        env
        for env in flag.environments
        if env in previous.environments and flag.salt_for(env) == previous.salt_for(env)
    ]
    if not same_salt:
        return None
    return (
        f"changing assignment_unit from {previous.assignment_unit!r} to {flag.assignment_unit!r} "
        f"starts a new experiment: set a new salt in {', '.join(sorted(same_salt))}"
    )
