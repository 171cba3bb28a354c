"""Small factories for core and store tests: flag documents, checked flags, compiled configs."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import msgspec

from ramplight.core.evaluate import CompiledConfig
from ramplight.core.flags import Flag, SdkConfig, Segment, check_flag, convert_flag, sdk_flag, stabilize

ENV = "production"


def flag_doc(
    key: str = "checkout_copy",
    flag_type: str = "string",
    variations: list[dict[str, Any]] | None = None,
    assignment_unit: str = "user",
    **env: Any,
) -> dict[str, Any]:
    """A flag with `control`/`candidate` (values "A"/"B") configured in production by `env`."""
    return {
        "key": key,
        "type": flag_type,
        "assignment_unit": assignment_unit,
        "variations": variations or [{"key": "control", "value": "A"}, {"key": "candidate", "value": "B"}],
        "environments": {ENV: {"default_variation": "control", "off_variation": "control", **env}},
    }


def clause(attribute: str, op: str, *values: Any, negate: bool = False) -> dict[str, Any]:
    doc: dict[str, Any] = {"attribute": attribute, "op": op, "values": list(values)}
    if negate:
        doc["negate"] = True
    return doc


def rule(
    rule_id: str, *clauses: dict[str, Any], variation: str | None = "candidate", **rest: Any
) -> dict[str, Any]:
    doc: dict[str, Any] = {"id": rule_id, "clauses": list(clauses), **rest}
    if variation is not None:
        doc["variation"] = variation
    return doc


def rollout(**weights: float) -> dict[str, Any]:
    return {"weights": weights}


def segment(key: str, **fields: Any) -> Segment:
    return msgspec.convert({"key": key, **fields}, Segment)


def checked(doc: dict[str, Any], segments: Iterable[Segment] = (), previous: Flag | None = None) -> Flag:
    """Decode, validate and stabilize a flag document, as the control plane does."""
    flag = convert_flag(doc)
    check_flag(flag, {s.key: s for s in segments})
    return msgspec.structs.replace(
        stabilize(flag, previous), version=(previous.version + 1) if previous else 1
    )


def compiled(*flags: Flag, segments: Iterable[Segment] = ()) -> CompiledConfig:
    entries = {f.key: sdk_flag(f, ENV) for f in flags}
    config = SdkConfig(
        environment=ENV,
        flags={k: v for k, v in entries.items() if v is not None},
        segments={s.key: s for s in segments},
    )
    return CompiledConfig(config)


# -- evidence (raw contract items as an SDK sends them) -------------------------------------

DROP: Any = object()
"""An override value that removes the field."""


def without(base: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    doc = {**base, **overrides}
    return {k: v for k, v in doc.items() if v is not DROP}


def exposure_doc(**overrides: Any) -> dict[str, Any]:
    base = {
        "ts": "2025-03-01T11:59:00Z",
        "flag_key": "checkout_copy",
        "assignment_unit": "user",
        "unit_id": "user-1",
        "assigned_variation": "candidate",
        "served_variation": "candidate",
    }
    return without(base, overrides)


def event_doc(**overrides: Any) -> dict[str, Any]:
    base = {
        "ts": "2025-03-01T11:59:30Z",
        "name": "checkout_completed",
        "unit_id": "user-1",
        "assignment_unit": "user",
    }
    return without(base, overrides)


def eval_doc(**overrides: Any) -> dict[str, Any]:
    base = {
        "ts": "2025-03-01T11:59:45Z",
        "name": "faithfulness",
        "score": 0.9,
        "evaluator": "llm_judge",
        "unit_id": "user-1",
    }
    return without(base, overrides)
