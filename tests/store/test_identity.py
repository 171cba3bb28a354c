"""The identity index against a plain dict model, and resends through the real server."""

from __future__ import annotations

import json
from typing import Any

import httpx
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ramplight.store import identity as identity_module
from ramplight.store.identity import UNKNOWN_PAYLOAD, IdentityIndex
from tests.factories import RunningServer


@settings(max_examples=200, deadline=None)
@given(
    stored=st.dictionaries(st.integers(1, 50), st.integers(1, 3), max_size=20),
    calls=st.lists(st.lists(st.tuples(st.integers(1, 60), st.integers(1, 3)), max_size=8), max_size=8),
    merge_at=st.integers(1, 10),
)
def test_verdicts_match_a_dict_of_everything_seen(
    stored: dict[int, int], calls: list[list[tuple[int, int]]], merge_at: int
) -> None:
    old = identity_module.MERGE_AT
    identity_module.MERGE_AT = merge_at
    try:
        index = IdentityIndex()
        index.load(np.array(list(stored), dtype=np.uint64), np.array(list(stored.values()), dtype=np.uint64))
        model = dict(stored)
        for call in calls:
            verdicts = index.admit([k for k, _ in call], [p for _, p in call])
            for (key, payload), verdict in zip(call, verdicts, strict=True):
                expected = (
                    "new" if key not in model else ("duplicate" if model[key] == payload else "conflict")
                )
                assert verdict == expected
                model.setdefault(key, payload)
        assert len(index) == len(model)
    finally:
        identity_module.MERGE_AT = old


def test_forget_undoes_an_admission_that_was_not_made_durable() -> None:
    index = IdentityIndex()
    assert index.admit([7, 8], [1, 1]) == ["new", "new"]
    index.forget([7])
    assert index.admit([7, 8], [1, 1]) == ["new", "duplicate"]


def test_rows_stored_before_payload_hashes_count_as_duplicates() -> None:
    index = IdentityIndex()
    index.load(np.array([5], dtype=np.uint64), np.array([UNKNOWN_PAYLOAD], dtype=np.uint64))
    assert index.admit([5], [123]) == ["duplicate"]


FLAG = "support_assistant_profile"


def exposure(unit: str, **extra: Any) -> dict[str, Any]:
    return {"ts": "2026-11-20T10:00:00.000Z", "flag_key": FLAG, "assignment_unit": "conversation",
            "unit_id": unit, "assigned_variation": "control", "served_variation": "control", **extra}  # fmt: skip


def post(server: RunningServer, env: str, body: bytes) -> dict[str, Any]:
    key = server.sdk_key(env)
    response = httpx.post(f"{server.url}/ingest/batch", content=body, timeout=30,
                          headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"})  # fmt: skip
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result


def stored(server: RunningServer, sql: str) -> list[tuple[Any, ...]]:
    state = server.thread.server.config.app.state.ramplight
    state.log.flush()
    return state.store.query(sql)


@pytest.fixture
def both_envs(server: RunningServer) -> RunningServer:
    doc = {"key": FLAG, "type": "boolean", "assignment_unit": "conversation",
           "variations": [{"key": "control", "value": False}, {"key": "candidate", "value": True}],
           "environments": {e: {"default_variation": "control", "off_variation": "control"}
                            for e in ("production", "staging")}}  # fmt: skip
    assert server.admin.post("/api/flags", json=doc).status_code == 201
    return server


def test_the_same_event_id_in_two_environments_is_two_items(both_envs: RunningServer) -> None:
    body = json.dumps({"exposures": [exposure("c1", event_id="e-1")]}).encode()
    assert post(both_envs, "staging", body)["accepted"]["exposures"] == 1
    assert post(both_envs, "production", body)["accepted"]["exposures"] == 1
    assert stored(both_envs, "SELECT environment FROM exposures ORDER BY 1") == [
        ("production",),
        ("staging",),
    ]


def test_a_changed_payload_under_a_known_event_id_is_a_named_conflict(both_envs: RunningServer) -> None:
    post(both_envs, "production", json.dumps({"exposures": [exposure("c1", event_id="e-1")]}).encode())
    moved = exposure("c1", event_id="e-1", ts="2026-11-20T10:00:00.001Z")
    result = post(both_envs, "production", json.dumps({"exposures": [exposure("c2"), moved]}).encode())
    assert result["accepted"]["exposures"] == 1
    (conflict,) = result["rejected"]
    assert (conflict["kind"], conflict["index"], conflict["field"]) == ("exposures", 1, "event_id")
    assert "different payload (conflict)" in conflict["reason"]
    assert stored(both_envs, "SELECT count(*) FROM exposures WHERE event_id = 'e-1'") == [(1,)]


def test_a_resend_in_another_byte_layout_is_a_duplicate_stored_once(both_envs: RunningServer) -> None:
    item = exposure("c1", attributes={"plan": "pro", "region": "eu"})
    first = json.dumps({"exposures": [item, item]}).encode()
    assert post(both_envs, "production", first)["duplicates"]["exposures"] == 1
    reordered = dict(reversed(list({**item, "attributes": {"region": "eu", "plan": "pro"}}.items())))
    again = json.dumps({"exposures": [reordered]}, indent=3).encode()
    result = post(both_envs, "production", again)
    assert (result["accepted"]["exposures"], result["duplicates"]["exposures"]) == (0, 1)
    assert stored(both_envs, "SELECT count(*) FROM exposures") == [(1,)]


def test_a_resend_after_a_restart_is_still_a_duplicate(make_server: Any, tmp_path: Any) -> None:
    first: RunningServer = make_server()
    first.admin.post("/api/flags", json={"key": FLAG, "type": "boolean", "assignment_unit": "conversation",
                     "variations": [{"key": "control", "value": False}, {"key": "candidate", "value": True}],
                     "environments": {"production": {"default_variation": "control", "off_variation": "control"}}})  # fmt: skip
    body = json.dumps({"exposures": [exposure("c1")]}).encode()
    assert post(first, "production", body)["accepted"]["exposures"] == 1
    first.thread.stop()
    second: RunningServer = make_server(db=first.settings.db)
    key_client = httpx.Client(base_url=second.url, headers={"Authorization": f"Bearer {first.admin_key}"})
    sdk = key_client.post("/api/keys", json={"kind": "sdk", "name": "x", "environment": "production"}).json()[
        "key"
    ]
    again = httpx.post(f"{second.url}/ingest/batch", content=body, timeout=30,
                       headers={"Authorization": f"Bearer {sdk}", "Content-Type": "application/json"}).json()  # fmt: skip
    assert (again["accepted"]["exposures"], again["duplicates"]["exposures"]) == (0, 1)
