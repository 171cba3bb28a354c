"""The measurement contract: item-by-item validation with kind, index, field and reason."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec
import pytest

from ramplight.core.contract import (
    MAX_ITEM_BYTES,
    MAX_STRING_PROPERTY,
    BatchRequest,
    EvalScore,
    Event,
    Exposure,
    FlagFacts,
    ValidatedBatch,
    judge_batch,
    validate_batch,
)
from tests.core.builders import DROP, eval_doc, event_doc, exposure_doc, without

NOW = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
FLAGS = {"checkout_copy": FlagFacts("user", frozenset({"control", "candidate", "fallback"}))}


def validate(kind: str, *docs: dict[str, Any] | bytes, **options: Any) -> ValidatedBatch:
    raws = [d if isinstance(d, bytes) else msgspec.json.encode(d) for d in docs]
    return validate_batch({kind: raws}, "production", FLAGS, NOW, **options)


def only_problem(batch: ValidatedBatch) -> tuple[str | None, int | None, str, str]:
    (problem,) = batch.problems
    assert batch.accepted_count == 0
    return problem.kind, problem.index, problem.field, problem.reason


LONG = "x" * (MAX_STRING_PROPERTY + 1)


@pytest.mark.parametrize(
    ("kind", "doc", "field", "reason"),
    [
        ("exposures", exposure_doc(unit_id=DROP), "unit_id", "required"),
        ("exposures", exposure_doc(unit_id=42), "unit_id", "Expected `str`, got `int`"),
        ("exposures", exposure_doc(unit_id=""), "unit_id", "length >= 1"),
        ("exposures", exposure_doc(variant="candidate"), "variant", "unknown field"),
        ("exposures", exposure_doc(ts="yesterday"), "ts", "Invalid RFC3339"),
        ("exposures", exposure_doc(ts="2025-03-01T11:59:00"), "ts", "timezone"),
        ("exposures", exposure_doc(ts="2025-03-01T13:01:00Z"), "ts", "more than an hour in the future"),
        (
            "exposures",
            exposure_doc(assignment_unit="conversation"),
            "assignment_unit",
            "flag 'checkout_copy' is assigned by 'user', not 'conversation'",
        ),
        (
            "exposures",
            exposure_doc(flag_key="ghost_flag"),
            "flag_key",
            "no flag 'ghost_flag' in environment 'production'",
        ),
        (
            "exposures",
            exposure_doc(assigned_variation="ghost"),
            "assigned_variation",
            "has no variation 'ghost'",
        ),
        ("exposures", exposure_doc(served_variation="ghost"), "served_variation", "has no variation 'ghost'"),
        (
            "exposures",
            exposure_doc(served_variation="control"),
            "fallback_reason",
            "required when served_variation differs from assigned",
        ),
        (
            "exposures",
            exposure_doc(served_variation="control", fallback_reason=""),
            "fallback_reason",
            "required",
        ),
        (
            "exposures",
            exposure_doc(attributes={"prompt": LONG}),
            "attributes.prompt",
            f"longer than {MAX_STRING_PROPERTY}",
        ),
        (
            "exposures",
            exposure_doc(environment="staging"),
            "environment",
            "is 'staging' but this batch is for 'production'",
        ),
        ("events", event_doc(value="high"), "value", "Expected `float | null`, got `str`"),
        ("events", event_doc(properties={"transcript": LONG}), "properties.transcript", "longer than"),
        ("events", event_doc(flag_key="ghost_flag"), "flag_key", "no flag 'ghost_flag'"),
        (
            "events",
            event_doc(flag_key="checkout_copy", assignment_unit="session"),
            "assignment_unit",
            "is assigned by 'user'",
        ),
        (
            "events",
            event_doc(flag_key="checkout_copy", variation="ghost"),
            "variation",
            "has no variation 'ghost'",
        ),
        ("events", event_doc(ts="2025-03-01T13:00:01Z"), "ts", "more than an hour in the future"),
        ("evals", eval_doc(unit_id=DROP), "unit_id", "needs unit_id, trace_id or response_id"),
        ("evals", eval_doc(evaluator="vibes"), "evaluator", "Invalid enum value 'vibes'"),
        ("evals", eval_doc(score=DROP), "score", "required"),
        ("evals", eval_doc(comment=LONG), "comment", f"length <= {MAX_STRING_PROPERTY}"),
        ("evals", eval_doc(variation="ghost", flag_key="checkout_copy"), "variation", "has no variation"),
    ],
)
def test_a_bad_item_is_reported_with_kind_index_field_and_reason(
    kind: str, doc: dict[str, Any], field: str, reason: str
) -> None:
    problem_kind, index, problem_field, problem_reason = only_problem(validate(kind, doc))
    assert (problem_kind, index, problem_field) == (kind, 0, field)
    assert reason in problem_reason


def test_malformed_json_is_reported_for_its_item_only() -> None:
    batch = validate("events", event_doc(), b"{not json", event_doc(unit_id="user-2"))
    (problem,) = batch.problems
    assert (problem.kind, problem.index, problem.field) == ("events", 1, "")
    assert problem.reason.startswith("JSON is malformed")
    assert [e.unit_id for e in batch.accepted["events"]] == ["user-1", "user-2"]  # type: ignore[union-attr]


def test_a_batch_keeps_its_good_items_and_reports_each_bad_one_by_index() -> None:
    batch = validate_batch(
        {
            "exposures": [
                msgspec.json.encode(d)
                for d in (
                    exposure_doc(unit_id="user-1"),
                    exposure_doc(unit_id="user-2", assignment_unit="account"),
                    exposure_doc(unit_id="user-3"),
                    exposure_doc(unit_id="user-4", served_variation="fallback", fallback_reason="timeout"),
                )
            ],
            "events": [msgspec.json.encode(event_doc(name=DROP)), msgspec.json.encode(event_doc())],
        },
        "production",
        FLAGS,
        NOW,
    )
    assert [(p.kind, p.index, p.field) for p in batch.problems] == [
        ("exposures", 1, "assignment_unit"),
        ("events", 0, "name"),
    ]
    assert [e.unit_id for e in batch.accepted["exposures"]] == ["user-1", "user-3", "user-4"]
    assert batch.accepted_count == 4
    assert batch.problems[0].render().startswith("exposures[1].assignment_unit: flag 'checkout_copy'")


def test_an_item_past_the_size_limit_is_rejected_on_its_own() -> None:
    big = exposure_doc(attributes={f"k{i}": "v" * 1000 for i in range(20)})
    batch = validate("exposures", exposure_doc(), big)
    (problem,) = batch.problems
    assert (problem.index, problem.field) == (1, "")
    assert f"the limit is {MAX_ITEM_BYTES}" in problem.reason
    assert batch.accepted_count == 1


def test_string_properties_up_to_the_limit_are_kept() -> None:
    fine = "x" * MAX_STRING_PROPERTY
    batch = validate("events", event_doc(properties={"label": fine}))
    assert batch.problems == ()


@pytest.mark.parametrize(
    ("kind", "doc", "field"),
    [
        (
            "exposures",
            exposure_doc(attributes={"plan": "pro", "email": "ana@example.com"}),
            "attributes.email",
        ),
        (
            "events",
            event_doc(properties={"plan": "pro", "ip": "10.0.0.1", "email": "a@b"}),
            "properties.email",
        ),
    ],
)
def test_the_property_allowlist_rejects_unlisted_keys(kind: str, doc: dict[str, Any], field: str) -> None:
    allow = frozenset({"plan"})
    _, _, problem_field, reason = only_problem(validate(kind, doc, allowed_properties=allow))
    assert (problem_field, reason) == (field, "not in the property allowlist")
    listed_only = without(doc, {"attributes" if kind == "exposures" else "properties": {"plan": "pro"}})
    assert validate(kind, listed_only, allowed_properties=allow).problems == ()


def test_a_timestamp_within_the_allowed_skew_is_accepted() -> None:
    almost = (NOW + timedelta(minutes=59)).isoformat()
    assert validate("exposures", exposure_doc(ts=almost)).problems == ()


def test_an_eval_joinable_by_trace_id_alone_is_accepted() -> None:
    batch = validate("evals", eval_doc(unit_id=DROP, trace_id="4bf92f3577b34da6a3ce929d0e0e4736"))
    assert batch.problems == ()
    (item,) = batch.accepted["evals"]
    assert isinstance(item, EvalScore) and item.trace_id == "4bf92f3577b34da6a3ce929d0e0e4736"


def test_a_served_fallback_with_its_reason_is_accepted_with_both_variations() -> None:
    batch = validate("exposures", exposure_doc(served_variation="control", fallback_reason="timeout"))
    (item,) = batch.accepted["exposures"]
    assert isinstance(item, Exposure)
    assert (item.assigned_variation, item.served_variation, item.fallback_reason) == (
        "candidate",
        "control",
        "timeout",
    )


def test_accepted_items_are_stamped_with_environment_and_received_at() -> None:
    batch = validate(
        "events", event_doc(), event_doc(environment="production", received_at="2020-01-01T00:00:00Z")
    )
    for item in batch.accepted["events"]:
        assert isinstance(item, Event)
        assert (item.environment, item.received_at) == ("production", NOW)


def test_a_derived_event_id_follows_the_canonical_form_not_the_bytes() -> None:
    doc = event_doc(properties={"b": 1, "a": "x"})
    same = msgspec.json.encode(doc)
    first = validate("events", same).accepted["events"][0]
    assert first.event_id is not None and len(first.event_id) == 32
    reformatted = same.replace(b',"', b', "').replace(b'":', b'": ')
    reordered = msgspec.json.encode(dict(reversed(list({**doc, "properties": {"a": "x", "b": 1}}.items()))))
    other_zone = msgspec.json.encode({**doc, "ts": doc["ts"].replace("Z", "+00:00")})
    for variant in (same, reformatted, reordered, other_zone):
        item = validate("events", variant).accepted["events"][0]
        assert (item.event_id, item.payload_hash) == (first.event_id, first.payload_hash), variant
    other = validate("events", event_doc(unit_id="user-2")).accepted["events"][0]
    assert other.event_id != first.event_id and other.payload_hash != first.payload_hash


def test_an_event_id_sent_by_the_client_is_kept() -> None:
    batch = validate("exposures", exposure_doc(event_id="sdk-42"), exposure_doc(event_id="sdk-42"))
    assert [e.event_id for e in batch.accepted["exposures"]] == ["sdk-42", "sdk-42"]


def test_late_evidence_for_an_archived_flag_still_validates_against_its_facts() -> None:
    # flag_facts() includes archived flags; validation only needs the facts.
    facts = {"old_flag": FlagFacts("conversation", frozenset({"control", "candidate"}))}
    doc = exposure_doc(
        flag_key="old_flag",
        assignment_unit="conversation",
        assigned_variation="control",
        served_variation="control",
    )
    batch = validate_batch({"exposures": [msgspec.json.encode(doc)]}, "production", facts, NOW)
    assert batch.problems == ()


def test_a_long_string_nested_in_properties_is_rejected_too() -> None:
    batch = validate("events", event_doc(properties={"llm": {"prompt": LONG}}))
    (problem,) = batch.problems
    assert problem.field.startswith("properties.llm")


def test_every_unknown_field_is_named_at_once_with_the_contracts_name_when_close() -> None:
    """The seed article's camelCase events: one answer lists every field to rename."""
    doc = {"ts": "2025-03-01T11:59:30Z", "name": "latency_ms", "unitId": "conv-1", "flagKey": "checkout_copy",
           "assignment_unit": "user", "Value": 812.0, "latencyMs": 812.0}  # fmt: skip
    batch = validate("events", doc)
    assert batch.accepted_count == 0
    assert {p.field: p.reason for p in batch.problems} == {
        "unitId": "unknown field; the contract's name is 'unit_id'",
        "flagKey": "unknown field; the contract's name is 'flag_key'",
        "Value": "unknown field; the contract's name is 'value'",
        "latencyMs": "unknown field (the contract's names: see docs/contract.md)",
    }
    assert {p.index for p in batch.problems} == {0}


# -- identities are pinned ----------------------------------------------------------------
# Stored rows keep the identity and payload hash computed when they arrived, and a resend is
# judged against them: if the canonical form, a hash or the log line changed, a resend of an
# item stored by an earlier version would be taken as new (stored twice) or as a conflict.
# These values were computed by the version before ingestion's encoding was reworked.
PINNED_BODY = json.dumps(
    {
        "exposures": [
            {
                "ts": "2026-11-20T10:00:00+02:00",
                "flag_key": "support_assistant_profile",
                "assignment_unit": "conversation",
                "unit_id": "c1",
                "assigned_variation": "candidate",
                "served_variation": "candidate",
                "attributes": {"plan": "pro", "channel": "chat"},
                "behavior": {"model": "m", "k": [3, 1]},
            }
        ],
        "events": [
            {
                "value": 4.5,
                "ts": "2026-11-20T10:01:00.250Z",
                "name": "csat_score",
                "unit_id": "c1",
                "assignment_unit": "conversation",
                "event_id": "evt-1",
                "ids": {"user": "u1", "account": "a1"},
                "properties": {"z": 1, "a": [True, None]},
                "flag_key": "support_assistant_profile",
                "variation": "candidate",
            }
        ],
        "evals": [
            {
                "ts": "2026-11-20T10:02:00Z",
                "name": "faithfulness",
                "score": 0.75,
                "evaluator": "llm_judge",
                "trace_id": "t" * 32,
                "comment": "ok \u00e9\u2603",
            }
        ],
    }
).encode()

PINNED = {
    "exposures": (
        ["492d2df07d1818f3e132bc13c32b1893"],
        [3700068793699595640],
        [7256221181019460034],
        [
            b'{"assigned_variation":"candidate","assignment_unit":"conversation","attributes":{"channel":"chat","plan":"pro"},"behavior":{"k":[3,1],"model":"m"},"flag_key":"support_assistant_profile","served_variation":"candidate","ts":"2026-11-20T08:00:00Z","unit_id":"c1","environment":"production","event_id":"492d2df07d1818f3e132bc13c32b1893","identity":3700068793699595640,"payload_hash":7256221181019460034,"received_at":"2026-11-20T12:00:00Z"}'
        ],
    ),
    "events": (
        ["evt-1"],
        [4833790580274441583],
        [2557206440774317135],
        [
            b'{"assignment_unit":"conversation","flag_key":"support_assistant_profile","ids":{"account":"a1","user":"u1"},"name":"csat_score","properties":{"a":[true,null],"z":1},"ts":"2026-11-20T10:01:00.250000Z","unit_id":"c1","value":4.5,"variation":"candidate","environment":"production","event_id":"evt-1","identity":4833790580274441583,"payload_hash":2557206440774317135,"received_at":"2026-11-20T12:00:00Z"}'
        ],
    ),
    "evals": (
        ["596ffaa9ec9885207a9e85b475286959"],
        [17325824745039371963],
        [514631743501621039],
        [
            b'{"comment":"ok \xc3\xa9\xe2\x98\x83","evaluator":"llm_judge","name":"faithfulness","score":0.75,"trace_id":"tttttttttttttttttttttttttttttttt","ts":"2026-11-20T10:02:00Z","environment":"production","event_id":"596ffaa9ec9885207a9e85b475286959","identity":17325824745039371963,"payload_hash":514631743501621039,"received_at":"2026-11-20T12:00:00Z"}'
        ],
    ),
}


def test_identities_payload_hashes_and_log_lines_do_not_change_between_versions() -> None:
    facts = {"support_assistant_profile": FlagFacts("conversation", frozenset({"control", "candidate"}))}
    now = datetime(2026, 11, 20, 12, tzinfo=UTC)
    judged = judge_batch(BatchRequest(PINNED_BODY, "production", facts, now, None, 100))
    assert not judged.problems
    got = {kind: (a.event_ids, a.identities, a.payload_hashes, a.lines) for kind, a in judged.kinds.items()}
    assert got == PINNED
