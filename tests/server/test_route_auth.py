"""Every route refuses a missing key, and admin routes refuse an SDK key: walked from the app's own
route table, so a route added without authentication fails here."""

from __future__ import annotations

import re

import httpx
from fastapi.routing import APIRoute

from tests.factories import RunningServer

PUBLIC = {"/healthz", "/openapi.json", "/docs", "/docs/oauth2-redirect", "/redoc"}


def routes(server: RunningServer) -> list[tuple[str, str]]:
    app = server.thread.server.config.app
    found = []
    for route in app.routes:
        if isinstance(route, APIRoute) and route.path not in PUBLIC:
            path = re.sub(r"\{[^}]+\}", "x", route.path)
            found.extend((method, path) for method in sorted(route.methods - {"HEAD", "OPTIONS"}))
    return found


def test_every_route_refuses_a_missing_or_wrong_key(server: RunningServer) -> None:
    found = routes(server)
    assert len(found) > 25
    sdk_key = server.sdk_key()
    with httpx.Client(base_url=server.url, timeout=30) as anonymous:
        for method, path in found:
            response = anonymous.request(method, path, json={})
            assert response.status_code == 401, (method, path, response.status_code)
            wrong = anonymous.request(
                method, path, json={}, headers={"Authorization": "Bearer rl_admin_not-a-key"}
            )
            assert wrong.status_code == 401, (method, path, wrong.status_code)
            if path.startswith("/api/"):
                as_sdk = anonymous.request(
                    method, path, json={}, headers={"Authorization": f"Bearer {sdk_key}"}
                )
                assert as_sdk.status_code == 403, (method, path, as_sdk.status_code)
