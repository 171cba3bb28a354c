"""Replay every cross-SDK vector in spec/vectors/ against the implementation."""

from __future__ import annotations

import importlib.util
import json
from bisect import bisect_right
from itertools import pairwise
from pathlib import Path
from types import ModuleType
from typing import Any

import msgspec
import pytest

from ramplight.core.bucketing import (
    SLOTS,
    SlotRange,
    contiguous_allocation,
    percent_to_slots,
    reallocate,
    slot_of,
    slot_threshold,
    thresholds,
    unit_hash,
    variation_for_slot,
)
from ramplight.core.evaluate import CompiledConfig
from ramplight.core.flags import SdkConfig

VECTORS = Path(__file__).resolve().parents[2] / "spec" / "vectors"
REPLAYED = {"hash.json", "thresholds.json", "rollout.json", "reallocate.json", "evaluation.json"}


def load(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((VECTORS / name).read_text(encoding="utf-8"))
    return data


def ranges(rows: list[list[Any]]) -> tuple[SlotRange, ...]:
    return tuple(SlotRange(v, s, e) for v, s, e in rows)


def generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("spec_vectors_generate", VECTORS / "generate.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_vector_file_is_replayed_here() -> None:
    assert {p.name for p in VECTORS.glob("*.json")} == REPLAYED


def test_committed_vectors_match_what_the_generator_produces() -> None:
    for name, text in generator().build().items():
        assert (VECTORS / name).read_text(encoding="utf-8") == text, f"{name} is stale: run generate.py"


@pytest.mark.parametrize("case", load("hash.json")["cases"], ids=lambda c: f"{c['note']}:{c['unit_id'][:20]}")
def test_hash_vector(case: dict[str, Any]) -> None:
    assert f"{case['salt']}:{case['unit_id']}".encode().hex() == case["input_utf8_hex"]
    position = unit_hash(case["salt"], case["unit_id"])
    assert position == int(case["position"])
    assert slot_of(position) == case["slot"]


def test_threshold_vectors() -> None:
    data = load("thresholds.json")
    for row in data["thresholds"]:
        assert slot_threshold(row["slot"]) == int(row["threshold"])
    for row in data["positions"]:
        assert slot_of(int(row["position"])) == row["slot"]


@pytest.mark.parametrize("case", load("rollout.json")["cases"], ids=lambda c: c["name"])
def test_rollout_vector(case: dict[str, Any]) -> None:
    allocation = ranges(case["ranges"])
    if case["weights"] is not None:
        weights = {k: percent_to_slots(w) for k, w in case["weights"]}
        assert contiguous_allocation(weights) == allocation
    uppers, variations = thresholds(allocation)
    for unit in case["assignments"]:
        position = unit_hash(case["salt"], unit["unit_id"])
        assert position == int(unit["position"])
        assert slot_of(position) == unit["slot"]
        assert variation_for_slot(allocation, unit["slot"]) == unit["variation"]
        assert variations[bisect_right(uppers, position)] == unit["variation"]


def test_some_vectors_list_ranges_out_of_start_order_as_servers_send_them() -> None:
    def unsorted(rows: list[list[Any]]) -> bool:
        return [r[1] for r in rows] != sorted(r[1] for r in rows)

    assert any(unsorted(case["ranges"]) for case in load("rollout.json")["cases"])
    assert any(unsorted(case["after"]) for case in load("reallocate.json")["cases"])


@pytest.mark.parametrize("case", load("reallocate.json")["cases"], ids=lambda c: c["name"])
def test_reallocate_vector(case: dict[str, Any]) -> None:
    target = {k: s for k, s in case["target"]}
    assert reallocate(ranges(case["before"]), target) == ranges(case["after"])


def served_by_slot(rows: list[list[Any]]) -> list[str]:
    """The variation serving each slot, whatever the list order of the ranges."""
    out = [""] * SLOTS
    for variation, start, end in rows:
        out[start:end] = [variation] * (end - start)
    return out


def test_reallocate_paths_chain_and_end_serving_every_unit_as_they_began() -> None:
    paths: dict[str, list[dict[str, Any]]] = {}
    for case in load("reallocate.json")["cases"]:
        if ", step " in case["name"]:
            paths.setdefault(case["name"].split(", step ")[0], []).append(case)
    assert len(paths) >= 2
    for name, steps in paths.items():
        for previous, case in pairwise(steps):
            assert case["before"] == previous["after"], name
        # Each path ramps up and back down the same steps, so it restores the first assignment.
        assert served_by_slot(steps[-1]["after"]) == served_by_slot(steps[0]["before"]), name


def evaluation_cases() -> list[Any]:
    return [
        pytest.param(suite["config"], case, id=f"{suite['name']}:{i}:{case['flag_key']}")
        for suite in load("evaluation.json")["suites"]
        for i, case in enumerate(suite["cases"])
    ]


@pytest.mark.parametrize("source", ["structs", "json"])
@pytest.mark.parametrize(("config", "case"), evaluation_cases())
def test_evaluation_vector(config: dict[str, Any], case: dict[str, Any], source: str) -> None:
    if source == "json":  # as the SDK receives it: flags decoded and compiled when first used
        compiled = CompiledConfig.from_json(msgspec.json.encode(config))
    else:
        compiled = CompiledConfig(msgspec.convert(config, SdkConfig))
    if "expected_type" in case:
        result = compiled.evaluate_typed(
            case["flag_key"], case["unit_id"], case["attributes"], case["default"], case["expected_type"]
        )
    else:
        result = compiled.evaluate(case["flag_key"], case["unit_id"], case["attributes"], case["default"])
    assert (result.value, result.variation, result.reason, result.rule_id, result.error_code) == (
        case["value"],
        case["variation"],
        case["reason"],
        case["rule_id"],
        case["error_code"],
    )
