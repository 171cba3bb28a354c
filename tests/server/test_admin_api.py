"""The admin API against a real server on 127.0.0.1 and a real DuckDB file."""

from __future__ import annotations

import httpx

from ramplight.core.bucketing import SLOTS
from tests.factories import RunningServer, flag_doc


def store_of(server: RunningServer):  # the in-process server's own store, for direct checks
    return server.thread.server.config.app.state.ramplight.store


def test_created_flag_is_version_1_with_ranges_that_tile_all_slots(server: RunningServer) -> None:
    created = server.create_flag()
    assert created["version"] == 1
    ranges = created["environments"]["production"]["rollout"]["ranges"]
    assert ranges[0][1] == 0 and ranges[-1][2] == SLOTS
    assert sum(end - start for v, start, end in ranges if v == "candidate") == 5_000


def test_an_editor_with_a_stale_version_gets_409_and_the_other_edit_survives(server: RunningServer) -> None:
    created = server.create_flag()
    first = {**created, "description": "edited by alice"}
    second = {**created, "description": "edited by bob"}
    assert server.admin.put(f"/api/flags/{created['key']}", json=first).status_code == 200
    conflict = server.admin.put(f"/api/flags/{created['key']}", json=second)
    assert conflict.status_code == 409
    assert "version 2, not 1" in conflict.json()["message"]
    assert server.admin.get(f"/api/flags/{created['key']}").json()["description"] == "edited by alice"


def test_update_without_the_version_read_is_refused(server: RunningServer) -> None:
    created = server.create_flag()
    doc = {k: v for k, v in created.items() if k != "version"}
    response = server.admin.put(f"/api/flags/{created['key']}", json=doc)
    assert response.status_code == 422
    assert response.json()["problems"][0]["field"] == "version"


def test_if_match_header_carries_the_expected_version(server: RunningServer) -> None:
    created = server.create_flag()
    doc = {**created, "description": "x"}
    assert (
        server.admin.put(f"/api/flags/{created['key']}", json=doc, headers={"If-Match": '"7"'}).status_code
        == 409
    )
    assert (
        server.admin.put(f"/api/flags/{created['key']}", json=doc, headers={"If-Match": '"1"'}).status_code
        == 200
    )


def test_invalid_flag_reports_every_problem_with_its_field_path(server: RunningServer) -> None:
    doc = flag_doc()
    doc["environments"]["production"]["rollout"] = {"weights": {"control": 90, "candidate": 5}}
    doc["environments"]["production"]["off_variation"] = "nope"
    response = server.admin.post("/api/flags", json=doc)
    assert response.status_code == 422
    fields = {p["field"] for p in response.json()["problems"]}
    assert fields == {"environments.production.rollout.weights", "environments.production.off_variation"}


def test_wrongly_typed_flag_document_names_the_field(server: RunningServer) -> None:
    response = server.admin.post("/api/flags", json=flag_doc(assignment_unit=7))
    assert response.status_code == 422
    assert response.json()["problems"][0]["field"] == "assignment_unit"


def test_ramp_moves_weight_from_the_default_variation_and_is_audited(server: RunningServer) -> None:
    server.create_flag()
    response = server.admin.post(
        "/api/flags/support_assistant_profile/ramp",
        json={"environment": "production", "variation": "candidate", "percent": 20, "reason": "stage 2"},
    )
    assert response.status_code == 200, response.text
    assert response.json()["environments"]["production"]["rollout"]["weights"] == {
        "control": 80.0,
        "candidate": 20.0,
    }
    changes = server.admin.get("/api/flags/support_assistant_profile/changes").json()
    assert [c["action"] for c in changes] == ["create", "ramp"]
    ramp = changes[1]
    assert ramp["environment"] == "production" and ramp["reason"] == "stage 2"
    assert ramp["before"]["environments"]["production"]["rollout"]["weights"]["candidate"] == 5.0
    assert ramp["after"]["environments"]["production"]["rollout"]["weights"]["candidate"] == 20.0
    assert ramp["prev_hash"] == changes[0]["hash"]


def test_ramp_beyond_what_the_donor_has_is_refused_without_changing_the_flag(server: RunningServer) -> None:
    server.create_flag()
    response = server.admin.post(
        "/api/flags/support_assistant_profile/ramp",
        json={"environment": "production", "variation": "candidate", "percent": 50, "from": "fallback"},
    )
    assert response.status_code == 422
    assert "'fallback' has only 0 %" in response.json()["message"]
    assert server.admin.get("/api/flags/support_assistant_profile").json()["version"] == 1


def test_kill_serves_the_off_variation_and_restore_brings_the_rollout_back(server: RunningServer) -> None:
    server.create_flag()
    sdk = httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {server.sdk_key()}"})
    killed = server.admin.post(
        "/api/flags/support_assistant_profile/kill", json={"environment": "production"}
    )
    assert killed.status_code == 200
    assert sdk.get("/sdk/config").json()["flags"]["support_assistant_profile"]["enabled"] is False
    server.admin.post("/api/flags/support_assistant_profile/restore", json={"environment": "production"})
    assert sdk.get("/sdk/config").json()["flags"]["support_assistant_profile"]["enabled"] is True
    actions = [c["action"] for c in server.admin.get("/api/flags/support_assistant_profile/changes").json()]
    assert actions == ["create", "kill", "restore"]


def test_archived_flags_leave_the_sdk_config(server: RunningServer) -> None:
    server.create_flag()
    sdk = httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {server.sdk_key()}"})
    server.admin.post("/api/flags/support_assistant_profile/archive", json={"reason": "decided"})
    assert sdk.get("/sdk/config").json()["flags"] == {}
    assert server.admin.get("/api/flags").json() == []
    assert len(server.admin.get("/api/flags", params={"archived": True}).json()) == 1


def test_sdk_config_answers_304_until_something_changes(server: RunningServer) -> None:
    server.create_flag()
    sdk = httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {server.sdk_key()}"})
    first = sdk.get("/sdk/config")
    etag = first.headers["etag"]
    assert sdk.get("/sdk/config", headers={"If-None-Match": etag}).status_code == 304
    server.admin.post(
        "/api/flags/support_assistant_profile/ramp",
        json={"environment": "production", "variation": "candidate", "percent": 10},
    )
    changed = sdk.get("/sdk/config", headers={"If-None-Match": etag})
    assert changed.status_code == 200 and changed.headers["etag"] != etag


def test_missing_or_wrong_keys_are_401_and_sdk_keys_cannot_administer(server: RunningServer) -> None:
    anonymous = httpx.Client(base_url=server.url)
    assert anonymous.get("/api/flags").status_code == 401
    wrong = httpx.Client(base_url=server.url, headers={"Authorization": "Bearer rl_admin_not-a-real-key"})
    assert wrong.get("/api/flags").status_code == 401
    sdk = httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {server.sdk_key()}"})
    assert sdk.get("/api/flags").status_code == 403
    assert sdk.post("/api/flags", json=flag_doc()).status_code == 403


def test_sdk_key_reads_only_its_own_environment(server: RunningServer) -> None:
    staging = httpx.Client(
        base_url=server.url, headers={"Authorization": f"Bearer {server.sdk_key('staging')}"}
    )
    assert staging.get("/sdk/config").json()["environment"] == "staging"
    assert staging.get("/sdk/config", params={"environment": "production"}).status_code == 403


def test_revoked_keys_stop_working(server: RunningServer) -> None:
    created = server.admin.post(
        "/api/keys", json={"kind": "sdk", "name": "temp", "environment": "production"}
    ).json()
    sdk = httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {created['key']}"})
    assert sdk.get("/sdk/config").status_code == 200
    assert server.admin.delete(f"/api/keys/{created['id']}").status_code == 204
    assert sdk.get("/sdk/config").status_code == 401


def test_api_keys_are_stored_only_as_hashes(server: RunningServer) -> None:
    created = server.admin.post(
        "/api/keys", json={"kind": "sdk", "name": "app", "environment": "production"}
    ).json()
    listed = server.admin.get("/api/keys").json()
    assert all("key" not in k and "key_hash" not in k for k in listed)
    rows = store_of(server).query("SELECT key_hash, prefix FROM api_keys")
    assert all(created["key"] not in (h, p) for h, p in rows)
    assert any(created["key"].startswith(p) for _, p in rows)


def test_apply_is_idempotent_and_shows_a_diff(server: RunningServer) -> None:
    doc = flag_doc()
    first = server.admin.post("/api/apply", json={"flags": [doc]}).json()
    assert first[0]["action"] == "create"
    assert server.admin.post("/api/apply", json={"flags": [doc]}).json()[0]["action"] == "unchanged"
    doc["environments"]["production"]["rollout"]["weights"] = {"control": 90, "candidate": 10}
    planned = server.admin.post("/api/apply", json={"flags": [doc], "dry_run": True}).json()[0]
    assert planned["action"] == "update" and '"candidate": 10' in planned["diff"]
    assert server.admin.get("/api/flags/support_assistant_profile").json()["version"] == 1


def test_segments_are_versioned_and_shipped_in_the_sdk_config(server: RunningServer) -> None:
    created = server.admin.put("/api/segments/beta-accounts", json={"included": ["conv_1"]})
    assert created.status_code == 200 and created.json()["version"] == 1
    stale = server.admin.put("/api/segments/beta-accounts", json={"included": ["conv_2"]})
    assert stale.status_code == 409
    updated = server.admin.put("/api/segments/beta-accounts", json={"included": ["conv_2"], "version": 1})
    assert updated.json()["version"] == 2
    sdk = httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {server.sdk_key()}"})
    assert sdk.get("/sdk/config").json()["segments"]["beta-accounts"]["included"] == ["conv_2"]


def test_openapi_document_is_served_with_the_docs_page(server: RunningServer) -> None:
    client = httpx.Client(base_url=server.url)
    spec = client.get("/openapi.json").json()
    assert "/ingest/batch" in spec["paths"] and "Flag" in spec["components"]["schemas"]
    assert client.get("/docs").status_code == 200


def test_metrics_are_defined_over_http_and_drive_the_report_sql_and_export(server: RunningServer) -> None:
    server.create_flag()
    created = server.admin.put(
        "/api/metrics/latency", json={"type": "event", "event": "latency_ms", "aggregation": "mean"}
    )
    assert created.status_code == 200
    assert created.json()["version"] == 1
    assert server.admin.put("/api/metrics/latency", json={"type": "event", "event": "x"}).status_code == 409
    bad = server.admin.put(
        "/api/metrics/ratio", json={"type": "ratio", "numerator": "latency", "denominator": "nope"}
    )
    assert bad.status_code == 422
    assert bad.json()["problems"][0]["field"] == "denominator"
    report = server.admin.get(
        "/api/flags/support_assistant_profile/report", params={"metric": "latency"}
    ).json()
    assert report["schema"] == "ramplight.readout/v2"
    assert [m["key"] for m in report["metrics"]] == ["latency"]
    for dialect in ("duckdb", "postgres", "clickhouse"):
        sql = server.admin.get("/api/flags/support_assistant_profile/sql", params={"dialect": dialect})
        assert sql.status_code == 200
        assert sql.text.startswith("WITH exposed AS")
    csv = server.admin.get("/api/flags/support_assistant_profile/units", params={"format": "csv"})
    assert csv.text.splitlines()[0] == "unit_id,variation,phase,segment,first_ts,fell_back,latency"
    missing = server.admin.get("/api/flags/support_assistant_profile/report", params={"metric": "nope"})
    assert missing.status_code == 404
