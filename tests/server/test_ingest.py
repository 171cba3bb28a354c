"""Ingestion over HTTP: the contract enforced item by item, idempotent, with size limits."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx

from tests.factories import RunningServer


def exposure(unit: str, **overrides: Any) -> dict[str, Any]:
    item = {
        "ts": "2026-11-20T10:00:00Z",
        "flag_key": "support_assistant_profile",
        "assignment_unit": "conversation",
        "unit_id": unit,
        "assigned_variation": "candidate",
        "served_variation": "candidate",
    }
    item.update(overrides)
    return item


def event(unit: str, **overrides: Any) -> dict[str, Any]:
    item = {
        "ts": "2026-11-20T10:01:00Z",
        "name": "resolved_without_escalation",
        "unit_id": unit,
        "assignment_unit": "conversation",
        "value": 1,
    }
    item.update(overrides)
    return item


def sdk_client(server: RunningServer, environment: str = "production") -> httpx.Client:
    return httpx.Client(
        base_url=server.url, headers={"Authorization": f"Bearer {server.sdk_key(environment)}"}
    )


def counts(server: RunningServer) -> dict[str, int]:
    state = server.thread.server.config.app.state.ramplight
    state.log.flush()
    return {kind: state.store.count(kind) for kind in ("exposures", "events", "evals")}


def test_a_batch_with_bad_items_keeps_the_good_ones_and_names_each_bad_one(server: RunningServer) -> None:
    server.create_flag()
    body = {
        "exposures": [exposure("c1"), exposure("c2", assignment_unit="user"), exposure("c3")],
        "events": [event("c1"), event("c2", ts="yesterday"), event("c3", colour="red")],
        "evals": [
            {
                "ts": "2026-11-20T10:02:00Z",
                "name": "faithfulness",
                "score": 0.9,
                "evaluator": "llm_judge",
                "unit_id": "c1",
            }
        ],
    }
    response = sdk_client(server).post("/ingest/batch", json=body)
    assert response.status_code == 200
    result = response.json()
    assert result["accepted"] == {"exposures": 2, "events": 1, "evals": 1}
    rejected = {(p["kind"], p["index"], p["field"]): p["reason"] for p in result["rejected"]}
    assert set(rejected) == {
        ("exposures", 1, "assignment_unit"),
        ("events", 1, "ts"),
        ("events", 2, "colour"),
    }
    assert "assigned by 'conversation', not 'user'" in rejected[("exposures", 1, "assignment_unit")]
    assert counts(server) == {"exposures": 2, "events": 1, "evals": 1}


def test_a_fallback_is_stored_with_assigned_and_served_variation(server: RunningServer) -> None:
    server.create_flag()
    item = exposure("c9", served_variation="control", fallback_reason="timeout")
    assert sdk_client(server).post("/ingest/batch", json={"exposures": [item]}).json()["rejected"] == []
    counts(server)
    store = server.thread.server.config.app.state.ramplight.store
    assert store.query(
        "SELECT assigned_variation, served_variation, fallback_reason, environment FROM exposures"
    ) == [("candidate", "control", "timeout", "production")]


def test_retried_batches_are_counted_once(server: RunningServer) -> None:
    server.create_flag()
    client = sdk_client(server)
    body = {"exposures": [exposure("c1", event_id="e-1")], "events": [event("c1"), event("c2")]}
    for _ in range(3):
        assert client.post("/ingest/batch", json=body).status_code == 200
    assert counts(server) == {"exposures": 1, "events": 2, "evals": 0}


def test_an_sdk_key_writes_only_its_own_environment(server: RunningServer) -> None:
    server.create_flag()
    client = sdk_client(server)
    other = client.post("/ingest/batch", json={"events": [event("c1", environment="staging")]}).json()
    assert other["rejected"][0]["field"] == "environment"
    assert (
        client.post("/ingest/batch", params={"environment": "staging"}, json={"events": []}).status_code
        == 403
    )


def test_admin_keys_must_name_the_environment(server: RunningServer) -> None:
    response = server.admin.post("/ingest/batch", json={"events": [event("c1")]})
    assert response.status_code == 422
    assert (
        server.admin.post(
            "/ingest/batch", params={"environment": "staging"}, json={"events": [event("c1")]}
        ).json()["accepted"]["events"]
        == 1
    )


def test_batches_past_the_limits_get_413_with_the_limit_named(
    make_server: Callable[..., RunningServer],
) -> None:
    server = make_server(max_batch_items=5, max_batch_bytes=4_000)
    client = sdk_client(server)
    too_many = client.post("/ingest/batch", json={"events": [event(f"c{i}") for i in range(6)]})
    assert too_many.status_code == 413 and "limit is 5" in too_many.json()["message"]
    too_big = client.post("/ingest/batch", json={"events": [event("c1", properties={"note": "x" * 900})] * 5})
    assert too_big.status_code == 413 and "RAMPLIGHT_MAX_BATCH_BYTES" in too_big.json()["message"]
    assert counts(server)["events"] == 0


def test_oversized_items_and_long_texts_are_rejected_alone(server: RunningServer) -> None:
    client = sdk_client(server)
    body = {"events": [event("c1", properties={"transcript": "y" * 5000}), event("c2")]}
    result = client.post("/ingest/batch", json=body).json()
    assert result["accepted"]["events"] == 1
    assert result["rejected"][0]["field"] == "properties.transcript"


def test_a_body_that_is_not_a_batch_is_422(server: RunningServer) -> None:
    client = sdk_client(server)
    for body in (b"not json", b"[1,2]", b'{"spans": []}'):
        response = client.post("/ingest/batch", content=body, headers={"Content-Type": "application/json"})
        assert response.status_code == 422, body
        assert response.json()["message"].startswith("request body is not a batch")
