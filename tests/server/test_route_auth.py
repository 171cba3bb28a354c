"""Every route refuses a missing, unknown, revoked or wrong-scope key: walked from the app's own
route table, so a route added without its group's guard fails here.

The route groups (server/routes/) each carry one guard: admin routes need an admin key; SDK and
ingestion routes take an SDK key of their environment (naming another environment is 403) or an
admin key naming one. The MCP endpoint (`/mcp`, server/mcp.py) is guarded as admin routes are.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import httpx
from fastapi.routing import iter_route_contexts

from tests.factories import RunningServer

PUBLIC = {"/healthz", "/openapi.json", "/docs", "/docs/oauth2-redirect", "/login", "/logout"}
GROUPS = ("/api/", "/sdk/", "/ingest/", "/v1/", "/mcp")
ADMIN = ("/api/", "/mcp")
UI = {
    "/",
    "/flags/x",
    "/flags/x/actions",
    "/flags/x/requests",
    "/requests",
    "/requests/x/x",
    "/users",
    "/users/x",
    "/new-flag",
    "/flags/x/ramp",
    "/flags/x/edit",
    "/flags/x/stamp",
    "/flags/x/decisions/x",
    "/flags/x/decisions/x/replay",
}
"""The web UI's pages: a browser session guards them (an API key does not), see test below."""
UI_JSON = {"/flags/x/stamp"}
"""Asked by the pages' script, not navigated to: 401 instead of the redirect to sign in."""


def routes(server: RunningServer) -> list[tuple[str, str]]:
    app = server.thread.server.config.app
    found = []
    for route in iter_route_contexts(app.routes):  # included routers' routes with their prefixes
        path = re.sub(r"\{[^}]+\}", "x", route.path)
        if route.path not in PUBLIC and path not in UI:
            found.extend((method, path) for method in sorted((route.methods or set()) - {"HEAD", "OPTIONS"}))
    return found


def test_every_route_belongs_to_a_guarded_group(server: RunningServer) -> None:
    found = routes(server)
    assert len(found) >= 40
    assert [p for _, p in found if not p.startswith(GROUPS)] == []
    assert {p.split("/")[1] for _, p in found} == {"api", "sdk", "ingest", "v1", "mcp"}


def test_every_route_refuses_a_missing_or_wrong_key(server: RunningServer) -> None:
    found = routes(server)
    sdk_key = server.sdk_key()
    staging_key = server.sdk_key("staging")
    revoked = server.admin.post("/api/keys", json={"kind": "admin", "name": "gone"}).json()
    assert server.admin.delete(f"/api/keys/{revoked['id']}").status_code == 204
    with httpx.Client(base_url=server.url, timeout=30) as client:

        def status(method: str, path: str, key: str | None, **params: str) -> int:
            headers = {"Authorization": f"Bearer {key}"} if key else {}
            return client.request(method, path, json={}, headers=headers, params=params).status_code

        for method, path in found:
            assert status(method, path, None) == 401, (method, path)
            assert status(method, path, "rl_admin_not-a-key") == 401, (method, path)
            assert status(method, path, revoked["key"]) == 401, (method, path)
            if path.startswith(ADMIN):
                assert status(method, path, sdk_key) == 403, (method, path)
            else:
                # An SDK key acts in its own environment only.
                assert status(method, path, staging_key, environment="production") == 403, (method, path)
                assert status(method, path, sdk_key, environment="staging") == 403, (method, path)


def test_the_guard_lets_the_right_key_through(server: RunningServer) -> None:
    """The refusals above are the guard's, not the route's: the right key is served."""
    sdk_key = server.sdk_key("staging")
    with httpx.Client(base_url=server.url, timeout=30) as client:
        own = client.get("/sdk/config", headers={"Authorization": f"Bearer {sdk_key}"})
        assert own.status_code == 200
        as_admin = server.admin.get("/sdk/config", params={"environment": "staging"})
        assert as_admin.status_code == 200 and as_admin.json() == own.json()
        no_env = server.admin.get("/sdk/config")
        assert no_env.status_code == 422 and no_env.json()["problems"][0]["field"] == "environment"
        sent = client.post(
            "/ingest/batch", json={"events": []}, headers={"Authorization": f"Bearer {sdk_key}"}
        )
        assert sent.status_code == 200 and sum(sent.json()["accepted"].values()) == 0


def test_an_admin_key_naming_an_environment_that_does_not_exist_is_answered_404_and_nothing_is_kept(
    server: RunningServer,
) -> None:
    """An SDK key's environment exists; an admin key names one, and a typo (or an empty name)
    must not be served an empty config or have its evidence filed under an environment nobody
    reads. Walked over every SDK and ingestion route; an environment created since is served."""
    found = [(m, p) for m, p in routes(server) if not p.startswith(ADMIN)]
    assert {p for _, p in found} >= {"/sdk/config", "/sdk/stream", "/ingest/batch", "/v1/traces", "/v1/logs"}
    ts = (datetime.now(UTC) - timedelta(minutes=1)).isoformat()
    body = {"events": [{"ts": ts, "name": "resolved", "unit_id": "u1", "assignment_unit": "conversation"}]}
    for environment in ("prodution", "", "canary"):
        for method, path in found:
            answer = server.admin.request(method, path, params={"environment": environment}, json=body)
            assert answer.status_code == 404, (method, path, environment, answer.text)
            error = answer.json()
            assert error["error"] == "not_found" and f"no environment {environment!r}" in error["message"]
            assert "production, staging" in error["message"]
    assert server.admin.post("/api/environments", json={"key": "canary"}).status_code == 201
    assert server.admin.get("/sdk/config", params={"environment": "canary"}).status_code == 200
    sent = server.admin.post("/ingest/batch", params={"environment": "canary"}, json=body)
    assert sent.status_code == 200 and sent.json()["accepted"]["events"] == 1
    state = server.thread.server.config.app.state.ramplight
    state.log.flush(timeout=30)
    assert [state.store.count(kind, "canary") for kind in ("events", "spans")] == [1, 0]
    assert sum(state.store.count(kind) for kind in ("exposures", "events", "evals", "spans")) == 1


def test_every_web_page_needs_a_session_and_an_api_key_is_not_one(server: RunningServer) -> None:
    app = server.thread.server.config.app
    pages = [
        (method, re.sub(r"\{[^}]+\}", "x", route.path))
        for route in iter_route_contexts(app.routes)
        for method in sorted((route.methods or set()) - {"HEAD", "OPTIONS"})
        if re.sub(r"\{[^}]+\}", "x", route.path) in UI
    ]
    assert {p for _, p in pages} == UI
    server.create_flag(key="x")
    with httpx.Client(base_url=server.url, timeout=30) as client:
        for method, path in pages:
            for headers in ({}, {"Authorization": f"Bearer {server.admin_key}"}):
                answer = client.request(
                    method, path, data={"action": "kill", "environment": "production"}, headers=headers
                )
                if path in UI_JSON:
                    assert answer.status_code == 401 and answer.json()["error"] == "unauthorized", path
                    continue
                assert answer.status_code == 303, (method, path)
                assert answer.headers["location"].startswith("/login?next="), (method, path)
    assert server.admin.get("/api/flags/x").json()["version"] == 1  # nothing acted
