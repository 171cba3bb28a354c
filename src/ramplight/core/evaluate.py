"""Local flag evaluation, compiled once per config version.

`compile_config` turns an `SdkConfig` into plain closures: rules become tuples of predicates,
rollouts become sorted 64-bit thresholds, and every possible result is built in advance, so a
call hashes one string, bisects, and returns a shared immutable `Evaluation`. Evaluation never
raises: a broken or missing flag serves the caller's default with reason `error`.
"""

from __future__ import annotations

import hashlib
import math
import operator
import sys
from bisect import bisect_right
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from types import CodeType, FunctionType, MappingProxyType
from typing import Any, Literal

import msgspec
import xxhash

from ramplight.core.bucketing import thresholds
from ramplight.core.flags import NUMERIC_OPS, SEMVER_OPS, Clause, Rollout, Rule, SdkConfig, SdkFlag, Segment
from ramplight.core.regex import compile_pattern
from ramplight.core.versions import VersionKey, parse_version, version_key
from ramplight.core.versions import _cache as versions_cache

Reason = Literal["rule", "rollout", "default", "off", "error"]
ErrorCode = Literal["flag_not_found", "type_mismatch", "invalid_flag", "general"]
Attributes = Mapping[str, Any]


class Evaluation(msgspec.Struct, frozen=True, gc=False):
    """What a flag served a unit, and why (as OpenFeature's evaluation details). Immutable and
    shared: a flag's possible results are built when it is compiled. Not tracked by the garbage
    collector (nothing in it refers back to it), which saves 16 bytes on each of the tens of
    thousands a large config holds."""

    flag_key: str
    value: Any
    variation: str | None
    reason: Reason
    rule_id: str | None = None
    error_code: ErrorCode | None = None
    error_message: str | None = None
    flag_version: int | None = None
    assignment_unit: str | None = None

    def __call__(self, unit_id: str, attrs: Attributes | None) -> Evaluation:
        """A flag that always serves one result is evaluated by that result itself: no closure
        per flag (a kill switch is most flags of a large config)."""
        return self


Evaluator = Callable[[str, Attributes | None], Evaluation]
Predicate = Callable[[str, Attributes | None], bool]


def error_evaluation(
    flag_key: str, default: Any, code: ErrorCode, message: str, flag: SdkFlag | None = None
) -> Evaluation:
    return Evaluation(
        flag_key=flag_key,
        value=default,
        variation=None,
        reason="error",
        error_code=code,
        error_message=message,
        flag_version=flag.version if flag is not None else None,
        assignment_unit=flag.assignment_unit if flag is not None else None,
    )


def _attribute_getter(attribute: str) -> Callable[[str, Attributes | None], Any]:
    if attribute == "unit_id":
        return lambda unit_id, attrs: unit_id

    def get(unit_id: str, attrs: Attributes | None) -> Any:
        return attrs.get(attribute) if attrs else None

    return get


def _as_number(value: Any) -> float | None:
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int | float):
        return float(value)
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _member_slow(
    value: Any, strings: frozenset[Any], booleans: frozenset[Any], numbers: frozenset[Any]
) -> bool:
    """Membership for subclasses of str/int/float (rare); anything else never matches."""
    if isinstance(value, bool):
        return value in booleans
    if isinstance(value, str):
        return str(value) in strings
    if isinstance(value, int | float):
        return float(value) in numbers
    return False


def _member_str(value: Any, strings: frozenset[Any]) -> bool:
    """`_member_slow` for a clause of strings only (a shorter call in generated code)."""
    return _member_slow(value, strings, _NONE, _NONE)


# "Any clause value" is one comparison against the loosest bound: x < any(b) iff x < max(b).
_ORDERED: dict[str, tuple[Callable[[Any, Any], bool], Callable[..., Any]]] = {
    "lt": (operator.lt, max),
    "lte": (operator.le, max),
    "gt": (operator.gt, min),
    "gte": (operator.ge, min),
    "semver_lt": (operator.lt, max),
    "semver_lte": (operator.le, max),
    "semver_gt": (operator.gt, min),
    "semver_gte": (operator.ge, min),
}


def _clause_version(value: Any) -> VersionKey:
    key = parse_version(str(value))
    if key is None:
        raise ValueError(f"{value!r} is not a semantic version")
    return key


_NONE: frozenset[Any] = frozenset()
_STRING_SETS: dict[frozenset[str], frozenset[str]] = {}
_STRING_SETS_MAX = 65_536


def _value_sets(values: list[Any]) -> tuple[frozenset[Any], frozenset[Any], frozenset[Any]]:
    """A clause's values as (strings, booleans, numbers): one set per type, since a boolean never
    equals a number (True == 1 in Python, not in other SDKs). An empty set is one shared object,
    and equal string sets are shared between clauses (many flags test `plan in [pro, team]`):
    at 10,000 flags these sets were a fifth of the SDK's memory."""
    strings = frozenset(v for v in values if isinstance(v, str)) or _NONE
    booleans = frozenset(v for v in values if isinstance(v, bool)) or _NONE
    numbers = frozenset(v for v in values if isinstance(v, int | float) and not isinstance(v, bool)) or _NONE
    if strings:
        shared = _STRING_SETS.get(strings)
        if shared is None:
            if len(_STRING_SETS) >= _STRING_SETS_MAX:
                _STRING_SETS.clear()
            shared = _STRING_SETS[strings] = strings
        strings = shared
    return strings, booleans, numbers


def _compile_clause(clause: Clause, segments: Mapping[str, Predicate]) -> Predicate:
    """One predicate per clause, reading the attribute itself (one call per clause evaluated)."""
    attribute = clause.attribute
    by_unit = attribute == "unit_id"
    op = clause.op
    test: Predicate
    if op in ("equals", "in", "not_equals", "not_in"):
        strings, booleans, numbers = _value_sets(clause.values)
        positive = op in ("equals", "in")

        def test(unit_id: str, attrs: Attributes | None) -> bool:
            value = unit_id if by_unit else (attrs.get(attribute) if attrs else None)
            kind = value.__class__
            if kind is str:
                found = value in strings
            elif kind is bool:
                found = value in booleans
            elif kind is int or kind is float:
                found = value in numbers
            else:
                found = _member_slow(value, strings, booleans, numbers)
            return found if positive else (value is not None and not found)

    elif op == "regex":
        patterns = [compile_pattern(str(p)) for p in clause.values]

        def test(unit_id: str, attrs: Attributes | None) -> bool:
            value = unit_id if by_unit else (attrs.get(attribute) if attrs else None)
            return isinstance(value, str) and any(matches(value) for matches in patterns)

    elif op in NUMERIC_OPS:
        compare, loosest = _ORDERED[op]
        bounds = [b for b in (float(v) for v in clause.values) if not math.isnan(b)]
        bound = loosest(bounds) if bounds else math.nan  # a NaN bound never matches

        def test(unit_id: str, attrs: Attributes | None) -> bool:
            value: Any = unit_id if by_unit else (attrs.get(attribute) if attrs else None)
            kind = value.__class__
            if kind is float:
                return compare(value, bound)
            if kind is int:
                return compare(float(value), bound)
            number = _as_number(value)
            return number is not None and compare(number, bound)

    elif op in SEMVER_OPS:
        keys = [_clause_version(v) for v in clause.values]
        if op == "semver_eq":
            equal = frozenset(keys)

            def test(unit_id: str, attrs: Attributes | None) -> bool:
                value = unit_id if by_unit else (attrs.get(attribute) if attrs else None)
                return isinstance(value, str) and version_key(value) in equal

        else:
            compare, loosest = _ORDERED[op]
            bound_key = loosest(keys)

            def test(unit_id: str, attrs: Attributes | None) -> bool:
                value = unit_id if by_unit else (attrs.get(attribute) if attrs else None)
                if not isinstance(value, str):
                    return False
                key = version_key(value)
                return key is not None and compare(key, bound_key)

    else:  # in_segment / not_in_segment
        members = [segments[k] for k in clause.values]
        positive = op == "in_segment"

        def test(unit_id: str, attrs: Attributes | None) -> bool:
            found = any(member(unit_id, attrs) for member in members)
            return found if positive else not found

    if clause.negate:
        return lambda unit_id, attrs: not test(unit_id, attrs)
    return test


def _compile_segment(segment: Segment) -> Predicate:
    get = _attribute_getter(segment.attribute)
    included = frozenset(segment.included)
    excluded = frozenset(segment.excluded)
    clauses = tuple(_compile_clause(c, {}) for c in segment.clauses)

    def member(unit_id: str, attrs: Attributes | None) -> bool:
        key = get(unit_id, attrs)
        if isinstance(key, str):
            if key in excluded:
                return False
            if key in included:
                return True
        return bool(clauses) and all(c(unit_id, attrs) for c in clauses)

    return member


def compile_flag(flag: SdkFlag, segments: Mapping[str, Predicate], key: str | None = None) -> Evaluator:
    """Build the evaluator of one flag; raises ValueError/KeyError if the flag is broken. `key`,
    the flag's key as the caller spelled it (usually a constant of its code), is the one kept in
    the results, so the decoded flag's own copy of it is not."""
    values = {v.key: v.value for v in flag.variations}
    flag_key = key if key is not None and key.__class__ is str and key == flag.key else flag.key
    unit = _shared(flag.assignment_unit)

    def result(variation: str, reason: Reason, rule_id: str | None = None) -> Evaluation:
        value = values[variation]
        return Evaluation(
            flag_key=flag_key,
            value=_shared(value) if value.__class__ is str else value,
            variation=_shared(variation),
            reason=reason,
            rule_id=None if rule_id is None else _shared(rule_id),
            flag_version=flag.version,
            assignment_unit=unit,
        )

    if not flag.enabled:
        return result(flag.off_variation, "off")

    prefix = f"{flag.salt}:"

    def split(rollout: Rollout, reason: Reason, rule_id: str | None) -> Split:
        uppers, variations = thresholds(rollout.allocation())
        return Split(prefix, uppers, tuple(result(v, reason, rule_id) for v in variations))

    fallthrough: Split | Evaluation
    if flag.rollout is not None:
        fallthrough = split(flag.rollout, "rollout", None)
    else:
        fallthrough = result(flag.default_variation, "default")
    if not flag.rules:
        if isinstance(fallthrough, Evaluation):
            return fallthrough
        return fallthrough.evaluator()
    return _generate_rules(flag, segments, result, split, fallthrough)


@dataclass(frozen=True, slots=True)
class Split:
    """A rollout compiled: the unit's hashed position picks `results[bisect(uppers, position)]`."""

    prefix: str
    uppers: tuple[int, ...]
    results: tuple[Evaluation, ...]

    def evaluator(self) -> Evaluator:
        results, uppers = self.results, self.uppers
        if len(results) == 1:
            return results[0]
        # The split's parts are the function's defaults over one shared code object: a closure
        # would cost a cell per part and a tuple of them (a third of a ramp flag's memory).
        pick: Evaluator
        if len(results) == 2 and uppers[1] > _MAX_POSITION:  # two ranges: one comparison
            pick = FunctionType(
                _pick_two.__code__, _pick_two.__globals__, "pick", (*results, uppers[0], self.prefix)
            )
        else:
            pick = FunctionType(_pick.__code__, _pick.__globals__, "pick", (results, uppers, self.prefix))
        return pick


_MAX_POSITION = 2**64 - 1
_UNSET = Evaluation(flag_key="", value=None, variation=None, reason="error")  # never served


def _pick(
    unit_id: str,
    attrs: Attributes | None,
    _results: tuple[Evaluation, ...] = (),
    _uppers: tuple[int, ...] = (),
    _prefix: str = "",
) -> Evaluation:
    """A split's evaluator, instantiated per flag by `Split.evaluator` with its own defaults."""
    return _results[_bisect_right(_uppers, _xxh3_64((_prefix + unit_id).encode()))]


def _pick_two(
    unit_id: str,
    attrs: Attributes | None,
    _first: Evaluation = _UNSET,
    _second: Evaluation = _UNSET,
    _upper: int = 0,
    _prefix: str = "",
) -> Evaluation:
    """`_pick` for the usual split, two ranges (the second reaching the last position)."""
    return _first if _xxh3_64((_prefix + unit_id).encode()) < _upper else _second


_bisect_right = bisect_right
_xxh3_64 = xxhash.xxh3_64_intdigest


def _shared(text: str) -> str:
    """One copy of a string many flags repeat (variation keys, units, rule ids, string values)."""
    return sys.intern(text)


_SYMBOL = {"lt": "<", "lte": "<=", "gt": ">", "gte": ">="}
_MISS = object()
_VERSION_OF_V = "(k0 if (k0 := _vget(v, _MISS)) is not _MISS else _vk(v))"
"""The version key of the attribute `v`: from the parse cache without a call when it is there."""
_EMPTY: Mapping[str, Any] = MappingProxyType({})
_GENERATED_GLOBALS: dict[str, Any] = {
    "__builtins__": {},  # the generated text calls only what is listed here
    "_EMPTY": _EMPTY,
    "_member_slow": _member_slow,
    "_member_str": _member_str,
    "_NONE": _NONE,
    "_as_number": _as_number,
    "_vk": version_key,
    "_vget": versions_cache.get,  # the parse cache, read inline; a miss parses through _vk
    "_MISS": _MISS,
    "_isinstance": isinstance,
    "_bisect": bisect_right,
    "_hash": xxhash.xxh3_64_intdigest,
    "_isstr": str,
    "_float": float,
    "_int": int,
    "_bool": bool,
}


_SHAPES: dict[bytes, CodeType] = {}
_SHAPES_MAX = 4096


def _shape(source: str) -> CodeType:
    """The code of flags of one shape (the same operators in the same places): the text names
    only its parameters and the helpers above, never a flag's values. Remembered by a digest of
    the text, not the text (the texts were 2 MB at 10,000 flags); BLAKE2b, so no flag author can
    make two shapes share a digest."""
    digest = hashlib.blake2b(source.encode(), digest_size=16).digest()
    code = _SHAPES.get(digest)
    if code is None:
        namespace: dict[str, Any] = {}
        exec(compile(source, "<ramplight flag rules>", "exec"), _GENERATED_GLOBALS, namespace)
        code = _without_positions(namespace["evaluate"].__code__)
        if len(_SHAPES) >= _SHAPES_MAX:
            _SHAPES.clear()
        _SHAPES[digest] = code
    return code


_NO_COLUMNS = 13  # a location entry: no column information, then the line's delta (a signed varint)


def _position_table(units: int) -> bytes:
    """CPython's location table (InternalDocs/locations.md) putting `units` code units on the
    first line without columns: one two-byte entry per 8 units."""
    full, rest = divmod(units, 8)
    table = bytes((0x80 | _NO_COLUMNS << 3 | 7, 0)) * full
    return table + bytes((0x80 | _NO_COLUMNS << 3 | (rest - 1), 0)) if rest else table


def _positions_can_be_dropped() -> bool:
    """Whether this Python reads `_position_table` as meant (checked once, on a sample)."""
    namespace: dict[str, Any] = {}
    exec("def sample(a, b):\n    if a < b:\n        return a.real\n    return (a, b)\n", {}, namespace)
    code: CodeType = namespace["sample"].__code__
    units = len(code.co_code) // 2
    try:
        slim = code.replace(co_linetable=_position_table(units))
        positions = list(slim.co_positions())
        lines = list(slim.co_lines())
    except (ValueError, TypeError, StopIteration, SystemError):
        return False
    first = code.co_firstlineno
    return (
        positions == [(first, first, None, None)] * units
        and all(line == first for _, _, line in lines)
        and [(start, end) for start, end, _ in lines]
        == [(i, min(i + 16, units * 2)) for i in range(0, units * 2, 16)]
    )


_DROP_POSITIONS = _positions_can_be_dropped()


def _without_positions(code: CodeType) -> CodeType:
    """The code with the smallest location table: every instruction on the function's first
    line, no columns. Column positions were a third of a shape's memory, and generated code is
    never shown as source; tracebacks still read it. Where this Python would not read the table
    as meant (`_DROP_POSITIONS`), the code keeps its own."""
    if not _DROP_POSITIONS:
        return code
    return code.replace(co_linetable=_position_table(len(code.co_code) // 2))


_COST = {"regex": 3, "in_segment": 4, "not_in_segment": 4}
_COST.update(dict.fromkeys(NUMERIC_OPS, 1))
_COST.update(dict.fromkeys(SEMVER_OPS, 2))


def _clause_cost(clause: Clause) -> int:
    """Where a clause goes in its rule's `and` chain: membership tests first, then numbers,
    versions, patterns, segments (the user's order within each). A clause never raises and has
    no effect, so the order changes no answer, only how soon a rule fails; and flags whose rules
    test the same kinds of clause in another order share one shape (at 10,000 flags, when
    each flag was one function, 2,183 shapes became 1,953)."""
    return _COST.get(clause.op, 0)


def _generate_rules(
    flag: SdkFlag,
    segments: Mapping[str, Predicate],
    result: Callable[..., Evaluation],
    split: Callable[[Rollout, Reason, str | None], Split],
    fallthrough: Split | Evaluation,
) -> Evaluator:
    """The flag's rules as generated Python: each rule one `and` chain of inline clause tests (a
    clause costs a few bytecodes, not a call), then the fallthrough. A flag of one rule is one
    function; with several, each rule is a function of its own that the flag's function calls:
    shapes are then counted per rule, not per combination of rules (at 10,000 flags, 1,953
    combinations to compile, 0.4 s of a cold start, and a third of the memory), for one call
    per rule tried.

    Only identifiers appear in the generated text; every value (attribute names, sets, bounds,
    patterns, results) is an argument of the generated factory, so nothing a flag contains is
    ever parsed as code, and flags of one shape share one code object: a flag costs a function
    and the tuple of its values. A clause's values are checked as `_compile_clause` checks them
    (the same conversions raise); `_compile_clause` remains the reference, and property tests
    check that both agree.
    """

    def test(clause: Clause, bind: Callable[[Any], str]) -> str:
        op = clause.op
        fetch = "unit_id" if clause.attribute == "unit_id" else f"g({bind(_shared(clause.attribute))})"
        if op in ("equals", "in", "not_equals", "not_in"):
            sets = _value_sets(clause.values)
            if not sets[1] and not sets[2]:  # strings only (the usual case): a shorter text
                strs = bind(sets[0])
                found = f"(v in {strs} if (v := {fetch}).__class__ is _isstr else _member_str(v, {strs}))"
            else:
                strs, bools, nums = (bind(values) for values in sets)
                found = (
                    f"(v in {strs} if (c := (v := {fetch}).__class__) is _isstr else v in {bools} if c is _bool "
                    f"else v in {nums} if c is _int or c is _float else _member_slow(v, {strs}, {bools}, {nums}))"
                )
            expr = found if op in ("equals", "in") else f"(not {found} and v is not None)"
        elif op in NUMERIC_OPS:
            bounds = [b for b in (float(v) for v in clause.values) if not math.isnan(b)]
            loosest = max if op in ("lt", "lte") else min
            bound = bind(loosest(bounds) if bounds else math.nan)  # a NaN bound never matches
            sym = _SYMBOL[op]
            expr = (
                f"(v {sym} {bound} if (c := (v := {fetch}).__class__) is _float else _float(v) {sym} {bound} "
                f"if c is _int else ((x := _as_number(v)) is not None and x {sym} {bound}))"
            )
        elif op == "semver_eq":
            keys = bind(frozenset(_clause_version(v) for v in clause.values))
            expr = f"(_isinstance(v := {fetch}, _isstr) and {_VERSION_OF_V} in {keys})"
        elif op in SEMVER_OPS:
            versions = [_clause_version(v) for v in clause.values]
            plain = op.removeprefix("semver_")
            bound = bind(max(versions) if plain in ("lt", "lte") else min(versions))
            expr = (
                f"(_isinstance(v := {fetch}, _isstr) and (k := {_VERSION_OF_V}) is not None "
                f"and k {_SYMBOL[plain]} {bound})"
            )
        elif op == "regex":  # each pattern compiled once for every clause that uses it
            found = " or ".join(f"{bind(compile_pattern(str(p)))}(v)" for p in clause.values) or "False"
            expr = f"(_isinstance(v := {fetch}, _isstr) and ({found}))"
        else:  # in_segment, not_in_segment: their own predicate (negation included)
            return f"{bind(_compile_clause(clause, segments))}(unit_id, attrs)"
        return f"(not {expr})" if clause.negate else expr

    def condition(rule: Rule, bind: Callable[[Any], str]) -> str:
        clauses = sorted(rule.clauses, key=_clause_cost)  # see `_clause_cost`
        return " and ".join(test(c, bind) for c in clauses) if clauses else "True"

    def serve(what: Split | Evaluation, bind: Callable[[Any], str]) -> str:
        if isinstance(what, Evaluation):
            return f"return {bind(what)}"
        if len(what.results) == 1:
            return f"return {bind(what.results[0])}"
        results, uppers, prefix = bind(what.results), bind(what.uppers), bind(what.prefix)
        return f"return {results}[_bisect({uppers}, _hash(({prefix} + unit_id).encode()))]"

    values: list[Any] = []
    bind = _binder(values)
    lines = ["g = (attrs or _EMPTY).get"]
    for rule in flag.rules:
        if rule.rollout is not None:
            served = serve(split(rule.rollout, "rule", rule.id), bind)
        else:
            served = serve(result(rule.variation or flag.default_variation, "rule", rule.id), bind)
        if len(flag.rules) == 1 or not rule.clauses:
            test_rule = condition(rule, bind)
        else:  # each rule its own function: see the docstring
            rule_values: list[Any] = []
            predicate = _generated(("return " + condition(rule, _binder(rule_values)),), rule_values, ("g",))
            test_rule = f"{bind(predicate)}(unit_id, attrs, g)"
        lines += [f"if {test_rule}:", f"    {served}"]
    lines.append(serve(fallthrough, bind))
    return _generated(lines, values)


def _binder(values: list[Any]) -> Callable[[Any], str]:
    """`bind(value)`: the name of a new parameter of the generated function holding `value`."""

    def bind(value: Any) -> str:
        values.append(value)
        return f"_c{len(values) - 1}"

    return bind


def _generated(lines: Sequence[str], values: list[Any], extra: tuple[str, ...] = ()) -> Evaluator:
    """A function `(unit_id, attrs, *extra, _c0, _c1, …)` running `lines`, its `_c` parameters
    bound to `values`. The values are the function's defaults, never passed by a caller: one
    tuple per function, read with LOAD_FAST, where closure cells cost a cell object per value.
    (The text declares no defaults: FunctionType gives the last parameters theirs.)"""
    signature = ", ".join(("unit_id", "attrs", *extra, *(f"_c{i}" for i in range(len(values)))))
    body = "".join(f"\n    {line}" for line in lines)
    code = _shape(f"def evaluate({signature}):{body}")
    function: Evaluator = FunctionType(code, _GENERATED_GLOBALS, "evaluate", tuple(values))
    return function


_EXPECTED_TYPES: dict[str, tuple[type, ...]] = {
    "boolean": (bool,),
    "string": (str,),
    "number": (int, float),
    "json": (dict, list, str, int, float, bool, type(None)),
}


class _WireConfig(msgspec.Struct, frozen=True, gc=False):
    """`SdkConfig` as it arrives: each flag kept as its JSON text until it is first used."""

    environment: str
    flags: dict[str, msgspec.Raw]
    segments: dict[str, Segment] = msgspec.field(default_factory=dict)


_wire_decoder = msgspec.json.Decoder(_WireConfig)
_flag_decoder = msgspec.json.Decoder(SdkFlag)


@dataclass(frozen=True, slots=True)
class FlagFacts:
    assignment_unit: str
    default_variation: str
    values: Mapping[str, Any]


class CompiledConfig:
    """All flags of one environment. A flag is compiled (and, from JSON, decoded) when it is
    first evaluated, so a large config is ready at once and holds little more than its text."""

    __slots__ = ("_broken", "_evaluators", "_facts", "_flags", "_raw", "_segments", "environment")

    def __init__(self, config: SdkConfig, raw: Mapping[str, msgspec.Raw] | None = None) -> None:
        self.environment = config.environment
        segments: dict[str, Predicate] = {}
        for key, segment in config.segments.items():
            try:  # a broken segment disables only the flags that use it (they report invalid_flag)
                segments[key] = _compile_segment(segment)
            except (ValueError, KeyError, TypeError):
                continue
        self._segments = segments
        self._raw: Mapping[str, msgspec.Raw] = raw or {}
        self._flags: dict[str, SdkFlag] = dict(config.flags)
        self._evaluators: dict[str, Evaluator] = {}
        self._broken: dict[str, str] = {}
        self._facts: dict[str, FlagFacts] = {}

    @classmethod
    def from_json(cls, body: bytes) -> CompiledConfig:
        """Decode an `SdkConfig` body; raises msgspec errors, for any flag, as decoding it whole
        would (every flag is checked now, and decoded again when first used)."""
        wire = _wire_decoder.decode(body)
        for key, text in wire.flags.items():
            try:
                _flag_decoder.decode(text)
            except msgspec.ValidationError as exc:
                raise msgspec.ValidationError(f"flag {key!r}: {exc}") from exc
        config = SdkConfig(environment=wire.environment, flags={}, segments=wire.segments)
        return cls(config, wire.flags)

    def flag(self, key: str) -> SdkFlag | None:
        """The flag as configured (decoded from its text each time for a config from JSON: an
        evaluated flag keeps only its evaluator and `facts`, not its decoded form)."""
        flag = self._flags.get(key)
        if flag is None and key in self._raw:
            flag = _flag_decoder.decode(self._raw[key])
        return flag

    def facts(self, key: str) -> FlagFacts | None:
        """What the SDK needs of a flag besides its evaluation (its unit, default and values),
        kept once asked for; None for an unknown flag."""
        facts = self._facts.get(key)
        if facts is None:
            flag = self.flag(key)
            if flag is None:
                return None
            facts = self._facts[key] = FlagFacts(
                flag.assignment_unit, flag.default_variation, {v.key: v.value for v in flag.variations}
            )
        return facts

    def keys(self) -> list[str]:
        return list(self._raw or self._flags)

    def changed_keys(self, previous: CompiledConfig) -> list[str]:
        """Keys of the flags added, changed or removed since `previous` (sorted)."""
        changed = []
        for key in set(previous.keys()) | set(self.keys()):
            mine, theirs = self._raw.get(key), previous._raw.get(key)
            same = (
                mine == theirs
                if mine is not None and theirs is not None
                else self.flag(key) == previous.flag(key)
            )
            if not same:
                changed.append(key)
        return sorted(changed)

    def _compile(self, key: str) -> Evaluator | None:
        """The flag's evaluator, compiled now; None if it is missing or broken (see `_broken`)."""
        flag = self.flag(key)
        if flag is None or key in self._broken:
            return None
        try:
            evaluator = compile_flag(flag, self._segments, key)
        except (ValueError, KeyError, TypeError) as exc:
            self._broken[key] = f"flag {key!r} cannot be evaluated: {exc!r}"
            return None
        self._evaluators[key] = evaluator  # two threads may both compile it: the same result
        return evaluator

    def evaluate(
        self, flag_key: str, unit_id: str, attributes: Attributes | None = None, default: Any = None
    ) -> Evaluation:
        evaluator = self._evaluators.get(flag_key) or self._compile(flag_key)
        if evaluator is None:
            if flag_key in self._broken:
                return error_evaluation(
                    flag_key, default, "invalid_flag", self._broken[flag_key], self.flag(flag_key)
                )
            return error_evaluation(flag_key, default, "flag_not_found", f"no flag {flag_key!r}")
        try:
            return evaluator(unit_id, attributes)
        except Exception as exc:  # an application must never see a flag's failure
            return error_evaluation(
                flag_key, default, "general", f"evaluation failed: {exc!r}", self.flag(flag_key)
            )

    def evaluate_typed(
        self,
        flag_key: str,
        unit_id: str,
        attributes: Attributes | None,
        default: Any,
        expected: str,
    ) -> Evaluation:
        """Evaluate and check the value's type; a mismatch serves `default` (reason error)."""
        evaluation = self.evaluate(flag_key, unit_id, attributes, default)
        if evaluation.reason == "error":
            return evaluation
        value = evaluation.value
        ok = isinstance(value, _EXPECTED_TYPES[expected]) and not (
            expected == "number" and isinstance(value, bool)
        )
        if not ok:
            return error_evaluation(
                flag_key,
                default,
                "type_mismatch",
                f"flag {flag_key!r} is {type(value).__name__}, asked for {expected}",
                self.flag(flag_key),
            )
        return evaluation
