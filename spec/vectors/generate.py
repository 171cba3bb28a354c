"""Regenerate the cross-SDK test vectors in this directory from ramplight's own functions.

    python spec/vectors/generate.py           # rewrite hash.json, thresholds.json, ...
    python spec/vectors/generate.py --check   # exit 1 if a committed file is out of date

Inputs are fixed literals, so the output is byte-identical on every run. The format of each
file is described in `spec/bucketing.md` ("Test vectors").
"""

from __future__ import annotations

import argparse
import json
import sys
import unicodedata
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import msgspec

from ramplight.core.bucketing import (
    SLOTS,
    Allocation,
    SlotRange,
    contiguous_allocation,
    percent_to_slots,
    reallocate,
    slot_of,
    slot_threshold,
    unit_hash,
    variation_for_slot,
)
from ramplight.core.evaluate import CompiledConfig
from ramplight.core.flags import (
    Flag,
    SdkConfig,
    Segment,
    check_flag,
    convert_flag,
    convert_segment,
    sdk_flag,
    stabilize,
)
from ramplight.core.regex import MAX_ATTRIBUTE_LENGTH

HERE = Path(__file__).resolve().parent
ENVIRONMENT = "production"
UNITS = [f"user-{i}" for i in range(40)]


# -- hash.json ----------------------------------------------------------------------------


def _hash_case(salt: str, unit_id: str, note: str) -> dict[str, Any]:
    position = unit_hash(salt, unit_id)
    return {
        "note": note,
        "salt": salt,
        "unit_id": unit_id,
        "input_utf8_hex": f"{salt}:{unit_id}".encode().hex(),
        "position": str(position),
        "slot": slot_of(position),
    }


def hash_vectors() -> dict[str, Any]:
    cases = [_hash_case("support_assistant_profile", unit, "typical id") for unit in UNITS[:12]]
    cases += [
        _hash_case("checkout_copy", "", "empty unit_id: the input is the salt and ':'"),
        _hash_case("", "", "empty salt and unit_id: the input is ':' (1 byte)"),
        _hash_case("checkout_copy", "conversation-00042", "typical id"),
        _hash_case("checkout_copy", "ユーザー-7", "non-ASCII (3-byte UTF-8)"),
        _hash_case("checkout_copy", "👩\u200d💻", "emoji ZWJ sequence (4-byte UTF-8)"),
        _hash_case("checkout_copy", unicodedata.normalize("NFC", "Zoë"), "NFC: ë is U+00EB"),
        _hash_case("checkout_copy", unicodedata.normalize("NFD", "Zoë"), "NFD: e + U+0308; no normalisation"),
        _hash_case("a:b", "c", "the separator is not escaped: same input as salt 'a', unit 'b:c'"),
        _hash_case("a", "b:c", "the separator is not escaped: same input as salt 'a:b', unit 'c'"),
        _hash_case("Checkout_Copy", "User-1", "case-sensitive: no case folding"),
        _hash_case("checkout_copy", " user-1 ", "whitespace is part of the id: no trimming"),
    ]
    # XXH3 has separate code paths by input length; cover every boundary.
    for length in (2, 3, 4, 8, 9, 16, 17, 128, 129, 240, 241, 1024, 1025, 4096):
        cases.append(_hash_case("", "x" * (length - 1), f"input length {length} bytes"))
    return {
        "description": (
            "position = XXH3-64 (seed 0) of the UTF-8 bytes of salt + ':' + unit_id, as an unsigned "
            "64-bit integer written in decimal; slot = floor(position * 100000 / 2^64)."
        ),
        "cases": cases,
    }


# -- thresholds.json ----------------------------------------------------------------------


def threshold_vectors() -> dict[str, Any]:
    slots = [0, 1, 2, 3, 999, 1000, 5000, 20000, 33333, 50000, 66667, 95000, 99999, SLOTS]
    positions = {0, 1, 2**63 - 1, 2**63, 2**64 - 2, 2**64 - 1}
    for s in slots:
        t = slot_threshold(s)
        positions.update(p for p in (t - 1, t, t + 1) if 0 <= p < 2**64)
    return {
        "description": (
            "threshold(s) = ceil(s * 2^64 / 100000) is the smallest position whose slot is >= s, so "
            "slot_of(position) >= s exactly when position >= threshold(s). threshold(100000) = 2^64."
        ),
        "thresholds": [{"slot": s, "threshold": str(slot_threshold(s))} for s in slots],
        "positions": [{"position": str(p), "slot": slot_of(p)} for p in sorted(positions)],
    }


# -- rollout.json -------------------------------------------------------------------------


def _ranges(allocation: Iterable[SlotRange]) -> list[list[Any]]:
    return [[r.variation, r.start, r.end] for r in allocation]


def _rollout_case(
    name: str, salt: str, weights: list[tuple[str, float]] | None, allocation: Allocation
) -> dict[str, Any]:
    units = list(UNITS)
    for r in allocation:  # add the first further unit landing in each range the others miss
        n = len(UNITS)
        while not any(r.start <= slot_of(unit_hash(salt, u)) < r.end for u in units):
            if r.start <= slot_of(unit_hash(salt, f"user-{n}")) < r.end:
                units.append(f"user-{n}")
            n += 1
    assignments = []
    for unit in units:
        position = unit_hash(salt, unit)
        slot = slot_of(position)
        assignments.append(
            {
                "unit_id": unit,
                "position": str(position),
                "slot": slot,
                "variation": variation_for_slot(allocation, slot),
            }
        )
    return {
        "name": name,
        "salt": salt,
        "weights": [[k, w] for k, w in weights] if weights is not None else None,
        "ranges": _ranges(allocation),
        "assignments": assignments,
    }


def _initial(weights: list[tuple[str, float]]) -> Allocation:
    return contiguous_allocation({k: percent_to_slots(w) for k, w in weights})


def _ramp_path(start: list[tuple[str, float]], *steps: Mapping[str, float]) -> Allocation:
    allocation = _initial(start)
    for step in steps:
        allocation = reallocate(allocation, {k: percent_to_slots(w) for k, w in step.items()})
    return allocation


def rollout_vectors() -> dict[str, Any]:
    cases = []
    for name, salt, weights in [
        ("95/5 initial layout", "support_assistant_profile", [("control", 95.0), ("candidate", 5.0)]),
        ("50/50 initial layout", "checkout_copy", [("control", 50.0), ("candidate", 50.0)]),
        (
            "thirds with three decimals",
            "checkout_copy",
            [("a", 33.333), ("b", 33.333), ("c", 33.334)],
        ),
        ("candidate listed first", "checkout_copy", [("candidate", 10.0), ("control", 90.0)]),
        ("tiny slice 0.001 %", "model_route", [("control", 99.999), ("candidate", 0.001)]),
        ("zero weights take no slots", "model_route", [("off", 0.0), ("control", 100.0), ("candidate", 0.0)]),
    ]:
        cases.append(_rollout_case(name, salt, weights, _initial(weights)))
    fragmented = _ramp_path(
        [("control", 90.0), ("candidate", 5.0), ("fallback", 5.0)],
        {"control": 70.0, "candidate": 25.0, "fallback": 5.0},
        {"control": 75.0, "candidate": 20.0, "fallback": 5.0},
    )
    cases.append(
        _rollout_case(
            "fragmented ranges after ramps, listed oldest first, not by start (ranges are given)",
            "model_route",
            None,
            fragmented,
        )
    )
    return {
        "description": (
            "weights are percents in the order of the flag's weights mapping; ranges are [variation, "
            "start, end) slot ranges. When weights is not null, ranges is the initial contiguous layout "
            "of those weights; when it is null, ranges are given, in list (age) order, which need not be "
            "sorted by start. Each unit is served the variation whose range contains its slot."
        ),
        "cases": cases,
    }


# -- reallocate.json ----------------------------------------------------------------------


def _reallocate_case(name: str, before: Allocation, target: list[tuple[str, float]]) -> dict[str, Any]:
    slots = {k: percent_to_slots(w) for k, w in target}
    return {
        "name": name,
        "before": _ranges(before),
        "target": [[k, s] for k, s in slots.items()],
        "after": _ranges(reallocate(before, slots)),
    }


def _reallocate_path(
    name: str, start: list[tuple[str, float]], *steps: list[tuple[str, float]]
) -> list[dict[str, Any]]:
    """One case per step of a ramp path; each case's `before` is the previous case's `after`."""
    cases = []
    allocation = _initial(start)
    labels = [_percents(start)] + [_percents(step) for step in steps]
    for i, step in enumerate(steps):
        case = _reallocate_case(f"{name}, step {i + 1}: {labels[i]} -> {labels[i + 1]}", allocation, step)
        cases.append(case)
        allocation = tuple(SlotRange(v, a, b) for v, a, b in case["after"])
    return cases


def _percents(weights: list[tuple[str, float]]) -> str:
    return "/".join(f"{w:g}" for _, w in weights)


def reallocate_vectors() -> dict[str, Any]:
    c95 = _initial([("control", 95.0), ("candidate", 5.0)])
    c80 = reallocate(c95, {"control": 80_000, "candidate": 20_000})
    three = _initial([("control", 90.0), ("candidate", 5.0), ("fallback", 5.0)])
    fragmented = _ramp_path(
        [("control", 90.0), ("candidate", 5.0), ("fallback", 5.0)],
        {"control": 70.0, "candidate": 25.0, "fallback": 5.0},
        {"control": 75.0, "candidate": 20.0, "fallback": 5.0},
    )
    cases = [
        _reallocate_case("fresh layout from nothing", (), [("control", 95.0), ("candidate", 5.0)]),
        _reallocate_case(
            "ramp 5 -> 20 from control: the taken slots are appended as the candidate's newest range",
            c95,
            [("control", 80.0), ("candidate", 20.0)],
        ),
        _reallocate_case(
            "roll back 20 -> 5: the candidate returns exactly the slots it took, keeping its original 5 %",
            c80,
            [("control", 95.0), ("candidate", 5.0)],
        ),
        _reallocate_case("ramp 20 -> 50 from control", c80, [("control", 50.0), ("candidate", 50.0)]),
        _reallocate_case(
            "ramp 5 -> 100 (control goes to zero)", c95, [("control", 0.0), ("candidate", 100.0)]
        ),
        _reallocate_case("roll back 20 -> 0", c80, [("control", 100.0), ("candidate", 0.0)]),
        _reallocate_case("unchanged weights keep every range", c80, [("control", 80.0), ("candidate", 20.0)]),
        _reallocate_case(
            "a variation missing from the target gives up all its slots",
            three,
            [("control", 95.0), ("candidate", 5.0)],
        ),
        _reallocate_case(
            "a new variation takes freed slots",
            c95,
            [("control", 85.0), ("candidate", 5.0), ("fallback", 10.0)],
        ),
        _reallocate_case(
            "two shrink, two grow: growers fill the lowest freed slots in target order",
            _initial([("a", 40.0), ("b", 30.0), ("c", 20.0), ("d", 10.0)]),
            [("d", 25.0), ("a", 30.0), ("c", 30.0), ("b", 15.0)],
        ),
        _reallocate_case(
            "fragmented: a shrinking variation gives up its newest ranges first",
            fragmented,
            [("control", 40.0), ("candidate", 55.0), ("fallback", 5.0)],
        ),
        _reallocate_case(
            "fragmented: shrinking the candidate releases from the top of its newest range, "
            "keeping its original 5 %",
            fragmented,
            [("control", 83.0), ("candidate", 12.0), ("fallback", 5.0)],
        ),
        *_reallocate_path(
            "ramp 5 -> 20 -> 50 -> 20 -> 5",
            [("control", 95.0), ("candidate", 5.0)],
            [("control", 80.0), ("candidate", 20.0)],
            [("control", 50.0), ("candidate", 50.0)],
            [("control", 80.0), ("candidate", 20.0)],
            [("control", 95.0), ("candidate", 5.0)],
        ),
        *_reallocate_path(
            "three variations: each rollback returns the units its ramp took",
            [("control", 90.0), ("candidate", 5.0), ("fallback", 5.0)],
            [("control", 70.0), ("candidate", 25.0), ("fallback", 5.0)],
            [("control", 70.0), ("candidate", 15.0), ("fallback", 15.0)],
            [("control", 70.0), ("candidate", 25.0), ("fallback", 5.0)],
            [("control", 90.0), ("candidate", 5.0), ("fallback", 5.0)],
        ),
    ]
    return {
        "description": (
            "before: [variation, start, end) ranges tiling 0..100000, listed oldest first (list order is "
            "age, not sorted by start); target: [variation, slots] in the order of the new weights "
            "mapping; after: the ranges reallocate() produces, in list order: kept ranges in place, "
            "taken slots appended, a range merged into its list predecessor when the same variation "
            "continues it. Compare lists exactly, order included."
        ),
        "cases": cases,
    }


# -- evaluation.json ----------------------------------------------------------------------

ON_OFF = [{"key": "off", "value": "off-value"}, {"key": "on", "value": "on-value"}]


def _flag(key: str, env: dict[str, Any], variations: list[dict[str, Any]] | None = None, **doc: Any) -> Flag:
    flag = convert_flag(
        {
            "key": key,
            "type": "string",
            "assignment_unit": "user",
            "variations": variations or ON_OFF,
            "environments": {ENVIRONMENT: {"default_variation": "off", "off_variation": "off", **env}},
            **doc,
        }
    )
    return msgspec.structs.replace(flag, version=1)


def _valid(flag: Flag, segments: Mapping[str, Segment], previous: Flag | None = None) -> Flag:
    check_flag(flag, segments)
    return stabilize(flag, previous)


def _clause_flag(key: str, *clauses: dict[str, Any]) -> dict[str, Any]:
    return {"rules": [{"id": f"{key}-rule", "clauses": list(clauses), "variation": "on"}]}


def _probe(
    compiled: CompiledConfig,
    flag_key: str,
    unit_id: str,
    attributes: dict[str, Any] | None = None,
    default: Any = "caller-default",
    expected_type: str | None = None,
) -> dict[str, Any]:
    if expected_type is None:
        result = compiled.evaluate(flag_key, unit_id, attributes, default)
    else:
        result = compiled.evaluate_typed(flag_key, unit_id, attributes, default, expected_type)
    case: dict[str, Any] = {
        "flag_key": flag_key,
        "unit_id": unit_id,
        "attributes": attributes,
        "default": default,
    }
    if expected_type is not None:
        case["expected_type"] = expected_type
    case.update(
        {
            "value": result.value,
            "variation": result.variation,
            "reason": result.reason,
            "rule_id": result.rule_id,
            "error_code": result.error_code,
        }
    )
    return case


def _operator_config() -> tuple[SdkConfig, list[dict[str, Any]]]:
    segments = {
        "beta": convert_segment(
            {
                "key": "beta",
                "included": ["user-1", "user-2"],
                "excluded": ["user-3"],
                "clauses": [{"attribute": "plan", "op": "equals", "values": ["enterprise"]}],
            }
        ),
        "by_account": convert_segment({"key": "by_account", "attribute": "account_id", "included": ["acme"]}),
        # Only a string attribute value can be listed; an array/object value leaves the clauses.
        "by_tags": convert_segment(
            {
                "key": "by_tags",
                "attribute": "tags",
                "included": ["beta"],
                "excluded": ["blocked"],
                "clauses": [{"attribute": "plan", "op": "equals", "values": ["enterprise"]}],
            }
        ),
    }
    ops: list[tuple[str, dict[str, Any], list[tuple[str, dict[str, Any] | None]]]] = [
        (
            "op-equals",
            {"attribute": "plan", "op": "equals", "values": ["pro"]},
            [
                ("u", {"plan": "pro"}),
                ("u", {"plan": "Pro"}),
                ("u", {}),
                ("u", None),
                ("u", {"plan": ["pro"]}),
            ],
        ),
        (
            "op-in",
            {"attribute": "region", "op": "in", "values": ["eu", "uk", 7]},
            [
                ("u", {"region": "uk"}),
                ("u", {"region": "us"}),
                ("u", {"region": 7}),
                ("u", {"region": 7.0}),
                ("u", {"region": "7"}),
            ],
        ),
        (
            "op-in-a-boolean-is-not-a-number",
            {"attribute": "beta", "op": "in", "values": [1, 0]},
            [
                ("u", {"beta": True}),
                ("u", {"beta": False}),
                ("u", {"beta": 1}),
                ("u", {"beta": 0.0}),
                ("u", {"beta": "1"}),
            ],
        ),
        (
            "op-equals-boolean",
            {"attribute": "beta", "op": "equals", "values": [True]},
            [
                ("u", {"beta": True}),
                ("u", {"beta": 1}),
                ("u", {"beta": 1.0}),
                ("u", {"beta": "true"}),
                ("u", {"beta": False}),
            ],
        ),
        (
            "op-not-in-boolean",
            {"attribute": "beta", "op": "not_in", "values": [True, 0]},
            [("u", {"beta": 1}), ("u", {"beta": False}), ("u", {"beta": True}), ("u", {"beta": 0})],
        ),
        (
            "op-in-unit-id",
            {"op": "in", "values": ["user-5", "user-6"]},
            [("user-5", None), ("user-7", None), ("user-7", {"unit_id": "user-5"})],
        ),
        (
            "op-not-equals",
            {"attribute": "plan", "op": "not_equals", "values": ["free"]},
            [("u", {"plan": "pro"}), ("u", {"plan": "free"}), ("u", {}), ("u", {"plan": None})],
        ),
        (
            "op-not-in",
            {"attribute": "region", "op": "not_in", "values": ["eu", "uk"]},
            [("u", {"region": "us"}), ("u", {"region": "eu"}), ("u", {})],
        ),
        (
            "op-regex",
            {"attribute": "email", "op": "regex", "values": ["@example\\.com$", "^admin@"]},
            [
                ("u", {"email": "ana@example.com"}),
                ("u", {"email": "admin@corp.io"}),
                ("u", {"email": "ana@example.com.evil"}),
                ("u", {"email": 42}),
                ("u", {}),
            ],
        ),
        (
            "op-regex-unanchored",
            {"attribute": "ua", "op": "regex", "values": ["Mobile"]},
            [("u", {"ua": "Mozilla/5.0 (iPhone) Mobile Safari"}), ("u", {"ua": "mobile"})],
        ),
        (
            "op-regex-length-limit",
            {"attribute": "ua", "op": "regex", "values": ["^a"]},
            [("u", {"ua": "a" * MAX_ATTRIBUTE_LENGTH}), ("u", {"ua": "a" * (MAX_ATTRIBUTE_LENGTH + 1)})],
        ),
        (
            "op-regex-ascii-classes",
            {"attribute": "code", "op": "regex", "values": ["^\\d+$", "^\\w$"]},
            [("u", {"code": "123"}), ("u", {"code": "\u0663"}), ("u", {"code": "\u00e9"})],
        ),
        (
            "op-lt",
            {"attribute": "age_days", "op": "lt", "values": [30]},
            [
                ("u", {"age_days": 29.5}),
                ("u", {"age_days": 30}),
                ("u", {"age_days": "12"}),
                ("u", {"age_days": True}),
                ("u", {"age_days": "soon"}),
                ("u", {}),
            ],
        ),
        (
            "op-lte",
            {"attribute": "age_days", "op": "lte", "values": [30]},
            [("u", {"age_days": 30}), ("u", {"age_days": 30.001})],
        ),
        (
            "op-gt-any",
            {"attribute": "seats", "op": "gt", "values": [100, 10]},
            [("u", {"seats": 50}), ("u", {"seats": 5}), ("u", {"seats": "1e3"})],
        ),
        (
            "op-gte",
            {"attribute": "seats", "op": "gte", "values": [10.5]},
            [("u", {"seats": 10.5}), ("u", {"seats": 10})],
        ),
        (
            "op-semver-gte",
            {"attribute": "app_version", "op": "semver_gte", "values": ["2.4.0"]},
            [
                ("u", {"app_version": "2.4.0"}),
                ("u", {"app_version": "v2.10.1"}),
                ("u", {"app_version": "2.4.0-rc.1"}),
                ("u", {"app_version": "2.3.99"}),
                ("u", {"app_version": "2.4"}),
                ("u", {"app_version": 3}),
                ("u", {"app_version": "V2.5.0"}),
            ],
        ),
        (
            "op-semver-eq",
            {"attribute": "app_version", "op": "semver_eq", "values": ["1.0.0"]},
            [("u", {"app_version": "1.0.0+build.7"}), ("u", {"app_version": "1.0.0-beta"})],
        ),
        (
            "op-semver-lt",
            {"attribute": "app_version", "op": "semver_lt", "values": ["1.0.0"]},
            [("u", {"app_version": "1.0.0-alpha.10"}), ("u", {"app_version": "1.0.0"})],
        ),
        (
            "op-semver-lte",
            {"attribute": "app_version", "op": "semver_lte", "values": ["1.0.0"]},
            [("u", {"app_version": "1.0.0"}), ("u", {"app_version": "1.0.1"})],
        ),
        (
            "op-semver-gt",
            {"attribute": "app_version", "op": "semver_gt", "values": ["1.0.0-alpha.9"]},
            [("u", {"app_version": "1.0.0-alpha.10"}), ("u", {"app_version": "1.0.0-alpha.9"})],
        ),
        (
            "op-in-segment",
            {"op": "in_segment", "values": ["beta", "by_account"]},
            [
                ("user-1", None),
                ("user-3", {"plan": "enterprise"}),
                ("user-9", {"plan": "enterprise"}),
                ("user-9", {"plan": "pro"}),
                ("user-9", {"account_id": "acme"}),
                ("user-9", {"account_id": ["acme"]}),
                ("user-9", None),
            ],
        ),
        (
            "op-in-segment-non-string-attribute",
            {"op": "in_segment", "values": ["by_tags"]},
            [
                ("u", {"tags": "beta"}),
                ("u", {"tags": ["beta"]}),
                ("u", {"tags": {"beta": True}}),
                ("u", {"tags": ["blocked"], "plan": "enterprise"}),
                ("u", {"tags": "blocked", "plan": "enterprise"}),
                ("u", {"tags": 7, "plan": "enterprise"}),
            ],
        ),
        (
            "op-not-in-segment",
            {"op": "not_in_segment", "values": ["beta"]},
            [("user-1", None), ("user-9", None), ("user-3", {"plan": "enterprise"})],
        ),
        (
            "op-negate",
            {"attribute": "plan", "op": "equals", "values": ["free"], "negate": True},
            [("u", {"plan": "free"}), ("u", {"plan": "pro"}), ("u", {})],
        ),
    ]
    flags = {}
    cases: list[dict[str, Any]] = []
    for key, clause, _ in ops:
        flags[key] = _valid(_flag(key, _clause_flag(key, clause)), segments)
    flags["op-two-clauses-and"] = _valid(
        _flag(
            "op-two-clauses-and",
            _clause_flag(
                "op-two-clauses-and",
                {"attribute": "plan", "op": "equals", "values": ["pro"]},
                {"attribute": "region", "op": "in", "values": ["eu"]},
            ),
        ),
        segments,
    )
    config = SdkConfig(
        environment=ENVIRONMENT,
        flags={k: sdk_flag(f, ENVIRONMENT) for k, f in flags.items()},  # type: ignore[misc]
        segments=segments,
    )
    compiled = CompiledConfig(config)
    for key, _, probes in ops:
        cases += [_probe(compiled, key, unit, attrs) for unit, attrs in probes]
    cases += [
        _probe(compiled, "op-two-clauses-and", "u", {"plan": "pro", "region": "eu"}),
        _probe(compiled, "op-two-clauses-and", "u", {"plan": "pro", "region": "us"}),
    ]
    return config, cases


def _flow_config() -> tuple[SdkConfig, list[dict[str, Any]]]:
    segments: dict[str, Segment] = {}
    rollout = {"rollout": {"weights": {"off": 80.0, "on": 20.0}}}
    first_rule = {
        "rules": [
            {
                "id": "staff",
                "clauses": [{"attribute": "email", "op": "regex", "values": ["@ramplight\\.dev$"]}],
                "variation": "on",
            },
            {
                "id": "beta-split",
                "clauses": [{"attribute": "plan", "op": "in", "values": ["beta"]}],
                "rollout": {"weights": {"off": 50.0, "on": 50.0}},
            },
            {
                "id": "everyone-else-on-mobile",
                "clauses": [{"attribute": "mobile", "op": "equals", "values": [True]}],
                "variation": "off",
            },
        ],
        **rollout,
    }
    # Ramped 5 % -> 20 % -> back to 10 %: the stored ranges are no longer contiguous.
    three = [*ON_OFF, {"key": "fallback", "value": "fallback-value"}]
    ramped: Flag | None = None
    for percent in (5.0, 20.0, 10.0):
        weights = {"off": 95.0 - percent, "on": percent, "fallback": 5.0}
        ramped = _valid(
            _flag("ramped", {"rollout": {"weights": weights}}, variations=three), segments, ramped
        )
    assert ramped is not None
    json_variations = [
        {"key": "control", "value": {"prompt_profile": "support_v3", "temperature": 0.2}},
        {"key": "candidate", "value": {"prompt_profile": "support_v4", "temperature": 0.0}},
    ]
    flags = {
        "rollout-only": _valid(_flag("rollout-only", rollout), segments),
        "default-only": _valid(_flag("default-only", {"default_variation": "on"}), segments),
        "killed": _valid(_flag("killed", {**first_rule, "enabled": False}), segments),
        "rules-then-rollout": _valid(_flag("rules-then-rollout", first_rule), segments),
        "custom-salt": _valid(_flag("custom-salt", {**rollout, "salt": "checkout-experiment-2"}), segments),
        "ramped": ramped,
        "json-profile": _valid(
            _flag(
                "json-profile",
                {
                    "default_variation": "control",
                    "off_variation": "control",
                    "rollout": {"weights": {"control": 50.0, "candidate": 50.0}},
                },
                variations=json_variations,
                type="json",
            ),
            segments,
        ),
        "boolean-flag": _valid(
            _flag(
                "boolean-flag",
                {"default_variation": "no", "off_variation": "no"},
                variations=[{"key": "no", "value": False}, {"key": "yes", "value": True}],
                type="boolean",
            ),
            segments,
        ),
        # Broken on purpose (a config no server would send): evaluation serves the caller's default.
        "broken-unknown-variation": _flag(
            "broken-unknown-variation", {"rules": [{"id": "r", "clauses": [], "variation": "ghost"}]}
        ),
        "broken-unknown-segment": _flag(
            "broken-unknown-segment",
            _clause_flag("broken-unknown-segment", {"op": "in_segment", "values": ["nope"]}),
        ),
    }
    config = SdkConfig(
        environment=ENVIRONMENT,
        flags={k: sdk_flag(f, ENVIRONMENT) for k, f in flags.items()},  # type: ignore[misc]
        segments=segments,
    )
    compiled = CompiledConfig(config)
    cases: list[dict[str, Any]] = []
    for unit in UNITS[:10]:
        cases.append(_probe(compiled, "rollout-only", unit))
        cases.append(_probe(compiled, "custom-salt", unit))
        cases.append(_probe(compiled, "json-profile", unit))
    cases += [_probe(compiled, "ramped", unit) for unit in UNITS]
    for unit in UNITS[10:20]:
        cases.append(_probe(compiled, "rules-then-rollout", unit, {"plan": "beta"}))
    cases += [
        _probe(compiled, "default-only", "user-1"),
        _probe(compiled, "killed", "user-1", {"email": "ana@ramplight.dev"}),
        _probe(compiled, "rules-then-rollout", "user-1", {"email": "ana@ramplight.dev", "plan": "beta"}),
        _probe(compiled, "rules-then-rollout", "user-1", {"mobile": True}),
        _probe(compiled, "rules-then-rollout", "user-1", {"mobile": False}),
        _probe(compiled, "rules-then-rollout", "user-2", None),
        _probe(compiled, "no-such-flag", "user-1"),
        _probe(compiled, "no-such-flag", "user-1", default=None),
        _probe(compiled, "broken-unknown-variation", "user-1"),
        _probe(compiled, "broken-unknown-segment", "user-1"),
        _probe(compiled, "boolean-flag", "user-1", default=True, expected_type="boolean"),
        _probe(compiled, "boolean-flag", "user-1", default="x", expected_type="string"),
        _probe(compiled, "json-profile", "user-1", default={}, expected_type="json"),
        _probe(compiled, "json-profile", "user-1", default=0, expected_type="number"),
        _probe(compiled, "no-such-flag", "user-1", default=False, expected_type="boolean"),
    ]
    return config, cases


def _broken_segment_config() -> tuple[SdkConfig, list[dict[str, Any]]]:
    """Segments no server would send: each is skipped, so only flags that use it are broken."""
    segments = {
        "staff": convert_segment({"key": "staff", "included": ["user-1"]}),
        "bad_regex": convert_segment(
            {"key": "bad_regex", "clauses": [{"attribute": "email", "op": "regex", "values": ["("]}]}
        ),
        "unsafe_regex": convert_segment(
            {"key": "unsafe_regex", "clauses": [{"attribute": "email", "op": "regex", "values": ["^(a+)+$"]}]}
        ),
        "bad_bound": convert_segment(
            {"key": "bad_bound", "clauses": [{"attribute": "seats", "op": "gt", "values": ["many"]}]}
        ),
        "nested": convert_segment(
            {"key": "nested", "clauses": [{"attribute": "unit_id", "op": "in_segment", "values": ["staff"]}]}
        ),
    }

    def member_of(key: str, *segment_keys: str, **env: Any) -> Flag:
        rules = [
            {"id": f"in-{k}", "clauses": [{"op": "in_segment", "values": [k]}], "variation": "on"}
            for k in segment_keys
        ]
        return _valid(_flag(key, {"rules": rules, **env}), segments)

    flags = {
        "uses-staff": member_of("uses-staff", "staff"),
        "uses-bad-regex": member_of("uses-bad-regex", "bad_regex"),
        "uses-unsafe-regex": member_of("uses-unsafe-regex", "unsafe_regex"),
        "uses-bad-bound": member_of("uses-bad-bound", "bad_bound"),
        "uses-nested": member_of("uses-nested", "nested"),
        "staff-then-bad-regex": member_of("staff-then-bad-regex", "staff", "bad_regex"),
        "killed-uses-bad-regex": member_of("killed-uses-bad-regex", "bad_regex", enabled=False),
        "no-segments": _valid(
            _flag("no-segments", {"rollout": {"weights": {"off": 50.0, "on": 50.0}}}), segments
        ),
    }
    config = SdkConfig(
        environment=ENVIRONMENT,
        flags={k: sdk_flag(f, ENVIRONMENT) for k, f in flags.items()},  # type: ignore[misc]
        segments=segments,
    )
    compiled = CompiledConfig(config)
    cases = [_probe(compiled, key, unit) for key in flags for unit in ("user-1", "user-2")]
    return config, cases


def evaluation_vectors() -> dict[str, Any]:
    suites = []
    for name, build in (
        ("clause operators", _operator_config),
        ("evaluation order", _flow_config),
        ("a broken segment breaks only the flags that use it", _broken_segment_config),
    ):
        config, cases = build()
        suites.append({"name": name, "config": msgspec.to_builtins(config), "cases": cases})
    return {
        "description": (
            "config is an SdkConfig document (GET /api/sdk/config shape). Each case evaluates flag_key "
            "for unit_id with attributes and the caller's default; when expected_type is present the "
            "typed evaluation is used. Expected: value, variation, reason, rule_id, error_code."
        ),
        "suites": suites,
    }


# -- output -------------------------------------------------------------------------------

FILES = {
    "hash.json": hash_vectors,
    "thresholds.json": threshold_vectors,
    "rollout.json": rollout_vectors,
    "reallocate.json": reallocate_vectors,
    "evaluation.json": evaluation_vectors,
}


def _dump(value: Any, indent: str) -> str:
    """JSON with one object member or list item per line, but short arrays on one line."""
    inner = indent + " "
    if isinstance(value, dict) and value:
        members = [f"{inner}{json.dumps(k, ensure_ascii=False)}: {_dump(v, inner)}" for k, v in value.items()]
        return "{\n" + ",\n".join(members) + "\n" + indent + "}"
    if isinstance(value, list) and any(isinstance(v, dict) or (isinstance(v, list) and v) for v in value):
        items = [inner + _dump(v, inner) for v in value]
        return "[\n" + ",\n".join(items) + "\n" + indent + "]"
    return json.dumps(value, ensure_ascii=False)


def render(data: dict[str, Any]) -> str:
    return _dump(data, "") + "\n"


def build() -> dict[str, str]:
    """File name → the text it should contain."""
    return {name: render(make()) for name, make in FILES.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--check", action="store_true", help="fail if a committed file is out of date")
    args = parser.parse_args(argv)
    stale = []
    for name, text in build().items():
        path = HERE / name
        if args.check:
            if not path.exists() or path.read_text(encoding="utf-8") != text:
                stale.append(name)
        else:
            path.write_text(text, encoding="utf-8")
            print(f"wrote {path}")
    if stale:
        print(f"out of date: {', '.join(stale)} (run python spec/vectors/generate.py)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
