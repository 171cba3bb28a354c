"""A plan's `drift:` list: decoded with the plan, every problem named by item and field."""

from __future__ import annotations

from typing import Any

import pytest

from ramplight.core.drift import check_drift
from ramplight.core.errors import ValidationError
from ramplight.core.metrics import Metric
from ramplight.core.plan import check_plan, convert_plan


def plan_with(*drift: dict[str, Any]) -> Any:
    return convert_plan({"flag_key": "support_assistant_profile", "drift": list(drift)})


def problems(*drift: dict[str, Any]) -> dict[str, str]:
    return {p.field: p.reason for p in check_drift(plan_with(*drift).drift)}


def test_each_source_takes_its_own_columns_and_json_keys() -> None:
    assert not problems(
        {"key": "input_length", "source": "exposures", "property": "attributes.input_chars", "type": "numeric"},
        {"key": "query", "source": "exposures", "property": "attributes.query.category", "type": "categorical"},
        {"key": "fallback", "source": "exposures", "property": "fallback_reason", "type": "categorical"},
        {"key": "latency", "source": "events", "property": "value", "type": "numeric", "event": "latency_ms"},
        {"key": "tool", "source": "events", "property": "properties.tool", "type": "categorical", "event": "call"},
        {"key": "score", "source": "evals", "property": "score", "type": "numeric", "eval": "faithfulness"},
        {"key": "label", "source": "evals", "property": "label", "type": "categorical", "eval": "faithfulness"},
        {"key": "tokens", "source": "spans", "property": "input_tokens", "type": "numeric", "over": "phase"},
        {"key": "model", "source": "spans", "property": "gen_ai_model", "type": "categorical", "max_categories": 5},
        {"key": "retries", "source": "spans", "property": "attributes.retries", "type": "numeric",
         "span_name": "llm.call"},
    )  # fmt: skip


def test_every_problem_names_the_item_and_field_and_says_why() -> None:
    found = problems(
        {"key": "a", "source": "exposures", "property": "value", "type": "numeric"},
        {"key": "b", "source": "events", "property": "value", "type": "numeric"},
        {"key": "c", "source": "spans", "property": "duration_ms", "type": "categorical"},
        {"key": "a", "source": "spans", "property": "gen_ai_model", "type": "numeric"},
        {
            "key": "e",
            "source": "exposures",
            "property": "properties.x",
            "type": "numeric",
            "span_name": "llm",
        },
        {
            "key": "f",
            "source": "evals",
            "property": "score",
            "type": "numeric",
            "eval": "x",
            "max_categories": 5,
        },
        {
            "key": "g",
            "source": "exposures",
            "property": "attributes.x",
            "type": "categorical",
            "max_categories": 1,
        },
        {"key": "Bad Key", "source": "evals", "property": "attributes.x", "type": "numeric", "eval": "x"},
    )
    assert found == {
        "drift[0].property": "no property 'value' of exposures; use one of fallback_reason, attributes.<key>",
        "drift[1].event": "required for source events (the event name)",
        "drift[2].property": "'duration_ms' holds numbers: use type numeric",
        "drift[3].key": "'a' is already drift[0]",
        "drift[3].property": "'gen_ai_model' holds labels: use type categorical",
        "drift[4].property": "exposures have no JSON column 'properties'; use `attributes.<key>`",
        "drift[4].span_name": "only for source spans, not exposures",
        "drift[5].max_categories": "only for type categorical",
        "drift[6].max_categories": "within [2, 100]",
        "drift[7].key": "use 1-100 of a-z 0-9 _ . - starting alphanumeric",
        "drift[7].property": "evals have no JSON column 'attributes'",
    }


def test_a_plan_with_a_bad_drift_item_is_refused_naming_it() -> None:
    plan = plan_with(
        {"key": "len", "source": "events", "property": "attributes.n", "type": "numeric", "event": "x"}
    )
    metrics: dict[str, Metric] = {}
    with pytest.raises(ValidationError) as raised:
        check_plan(plan, metrics, ["control", "candidate"], "control")
    assert raised.value.message == (
        "invalid plan for 'support_assistant_profile': drift[0].property: "
        "events have no JSON column 'attributes'; use `properties.<key>`"
    )


@pytest.mark.parametrize(
    ("item", "message"),
    [
        ({"key": "a", "sourse": "spans"}, "invalid plan: drift[0]: Object contains unknown field `sourse`"),
        (
            {"key": "a", "source": "logs", "property": "x", "type": "numeric"},
            "invalid plan: drift[0].source: Invalid enum value 'logs'",
        ),
        (
            {"key": "a", "source": "spans", "property": "name", "type": "categorical", "over": "week"},
            "invalid plan: drift[0].over: Invalid enum value 'week'",
        ),
    ],
)
def test_a_malformed_drift_item_fails_decoding_with_its_path(item: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError) as raised:
        plan_with(item)
    assert raised.value.message == message
