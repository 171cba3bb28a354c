"""Every 4xx, framework-made or ours, is `{error, message, problems}` naming the field at fault."""

from __future__ import annotations

import httpx

from ramplight.server.errors import MAX_ADMIN_BODY_BYTES, field_path
from tests.factories import RunningServer, flag_doc


def assert_error_shape(response: httpx.Response, status: int, error: str) -> dict:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error", "message", "problems"}, body
    assert body["error"] == error
    return body


def test_a_body_that_is_not_json_names_the_body_and_where_parsing_stopped(server: RunningServer) -> None:
    response = server.admin.post(
        "/api/keys", content=b'{"kind": "sdk",', headers={"Content-Type": "application/json"}
    )
    body = assert_error_shape(response, 422, "validation_error")
    (problem,) = body["problems"]
    assert problem["field"] == "body"
    assert problem["reason"].startswith("not valid JSON at character")


def test_a_wrong_field_in_a_typed_body_is_named_by_its_path(server: RunningServer) -> None:
    response = server.admin.post("/api/keys", json={"kind": "root", "name": ""})
    body = assert_error_shape(response, 422, "validation_error")
    assert {p["field"] for p in body["problems"]} == {"kind", "name"}
    assert "kind:" in body["message"]


def test_a_bad_query_parameter_is_named_with_its_source(server: RunningServer) -> None:
    response = server.admin.get("/api/flags", params={"archived": "maybe"})
    body = assert_error_shape(response, 422, "validation_error")
    assert body["problems"][0]["field"] == "query.archived"


def test_unknown_routes_and_methods_answer_in_the_error_shape(server: RunningServer) -> None:
    missing = assert_error_shape(server.admin.get("/api/nothing-here"), 404, "not_found")
    assert missing["problems"] == []
    not_allowed = server.admin.patch("/api/keys")
    assert_error_shape(not_allowed, 405, "method_not_allowed")
    assert "GET" in not_allowed.headers["allow"]


def test_revoking_an_unknown_key_is_404(server: RunningServer) -> None:
    body = assert_error_shape(server.admin.delete("/api/keys/no-such-key"), 404, "not_found")
    assert "no-such-key" in body["message"]


def test_revoking_a_key_twice_is_still_204(server: RunningServer) -> None:
    created = server.admin.post("/api/keys", json={"kind": "sdk", "name": "t", "environment": "production"})
    key_id = created.json()["id"]
    assert server.admin.delete(f"/api/keys/{key_id}").status_code == 204
    assert server.admin.delete(f"/api/keys/{key_id}").status_code == 204


def test_an_admin_body_past_the_limit_is_413_before_it_is_parsed(server: RunningServer) -> None:
    doc = flag_doc(description="x" * MAX_ADMIN_BODY_BYTES)
    body = assert_error_shape(server.admin.post("/api/flags", json=doc), 413, "payload_too_large")
    assert str(MAX_ADMIN_BODY_BYTES) in body["message"]


def test_a_chunked_admin_body_past_the_limit_is_cut_off(server: RunningServer) -> None:
    def chunks():
        yield b'{"description": "'
        for _ in range(MAX_ADMIN_BODY_BYTES // 65536 + 1):
            yield b"x" * 65536
        yield b'"}'

    response = server.admin.post("/api/flags", content=chunks(), headers={"Content-Type": "application/json"})
    assert_error_shape(response, 413, "payload_too_large")


def test_an_admin_body_under_the_limit_is_served(server: RunningServer) -> None:
    doc = flag_doc(key="roomy", description="x" * (MAX_ADMIN_BODY_BYTES // 2))
    assert server.admin.post("/api/flags", json=doc).status_code == 201


def test_field_paths_read_like_the_flag_checks() -> None:
    assert field_path(("body", "flags", 0, "key")) == "flags[0].key"
    assert field_path(("query", "environment")) == "query.environment"
    assert field_path(("body",)) == "body"


def test_a_catastrophic_regex_is_refused_when_the_flag_is_saved(server: RunningServer) -> None:
    rules = [
        {
            "id": "r",
            "clauses": [{"attribute": "name", "op": "regex", "values": ["^(a+)+$"]}],
            "variation": "control",
        }
    ]
    doc = flag_doc(key="regex_flag")
    doc["environments"]["production"]["rules"] = rules
    body = assert_error_shape(server.admin.post("/api/flags", json=doc), 422, "validation_error")
    (problem,) = body["problems"]
    assert problem["field"] == "environments.production.rules[0].clauses[0].values[0]"
    assert "nested quantifiers" in problem["reason"]
