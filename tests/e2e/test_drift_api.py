"""Drift through the HTTP API of a real server: a plan's drift properties are validated by field
and read out by the report endpoint."""

from __future__ import annotations

import random
from datetime import UTC, datetime

import httpx

from tests.factories import RunningServer

FLAG = "support_assistant_profile"
INPUT_LENGTH = {"key": "input_length", "source": "exposures", "property": "attributes.input_chars",
                "type": "numeric"}  # fmt: skip


def test_a_plan_with_a_bad_drift_property_is_refused_with_its_field(server: RunningServer) -> None:
    server.create_flag()
    bad = {
        "drift": [INPUT_LENGTH, {**INPUT_LENGTH, "property": "attributes.input_chars", "max_categories": 9}]
    }
    response = server.admin.put(f"/api/flags/{FLAG}/plans/production", json=bad)
    assert response.status_code == 422
    assert {(p["field"], p["reason"]) for p in response.json()["problems"]} == {
        ("drift[1].key", "'input_length' is already drift[0]"),
        ("drift[1].max_categories", "only for type categorical"),
    }


def test_the_report_endpoint_reads_out_a_plans_drift(server: RunningServer) -> None:
    server.create_flag()
    plan = {"drift": [INPUT_LENGTH], "gates": []}
    assert server.admin.put(f"/api/flags/{FLAG}/plans/production", json=plan).status_code == 200
    rng = random.Random(4)
    now = datetime.now(UTC).isoformat()
    exposures = [
        {"ts": now, "flag_key": FLAG, "assignment_unit": "conversation", "unit_id": f"c{i}",
         "assigned_variation": variation, "served_variation": variation,
         "attributes": {"input_chars": round(rng.lognormvariate(6, 0.4) * (1.5 if variation == "candidate" else 1))}}
        for i, variation in enumerate(["control", "candidate"] * 300)
    ]  # fmt: skip
    with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {server.sdk_key()}"}) as sdk:
        assert sdk.post("/ingest/batch", json={"exposures": exposures}).status_code == 200
    report = server.admin.get(f"/api/flags/{FLAG}/report").json()
    (entry,) = report["drift"]["properties"]
    (comparison,) = entry["between_variations"]
    assert (comparison["variation"], comparison["vs"], comparison["rows"]) == ("candidate", "control", 300)
    assert entry["verdict"] == comparison["verdict"] == "major"
