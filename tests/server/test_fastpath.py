"""The ingestion fast path (server/fastpath.py): `POST /ingest/batch` with no query string is
answered before FastAPI's routing, and answers — errors included — and stores exactly what the
FastAPI route does; every other request goes through to the app."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from ramplight.server.fastpath import IngestFastPath
from tests.factories import RunningServer
from tests.server.test_batch_workers import REQUESTS, _stored
from tests.server.test_ingest import event

LIMIT = 120_000
"""RAMPLIGHT_MAX_BATCH_BYTES for both servers: REQUESTS fit, the oversized bodies below do not."""

OVERSIZED = json.dumps({"events": [event(f"big{i}", value=i) for i in range(1500)]}).encode()


def _exchanges(client: httpx.Client, query: str, sdk: str, admin: str) -> list[tuple[Any, ...]]:
    """The same requests to `/ingest/batch{query}`: status, body and the headers that matter."""

    def post(body: bytes, key: str | None = sdk, **headers: str) -> httpx.Response:
        if key is not None:
            headers["Authorization"] = f"Bearer {key}"
        return client.post(f"/ingest/batch{query}", content=body, headers=headers)

    def chunked() -> Any:  # no Content-Length: the limit applies as the body streams in
        yield OVERSIZED[:70_000]
        yield OVERSIZED[70_000:]

    responses = [post(body) for body in (*REQUESTS, *REQUESTS)]
    responses += [
        post(b"[1, 2]"),
        post(b'{"events": [{"a": 1}'),
        post(b""),
        post(b'{"spans": []}'),
        post(OVERSIZED),  # declared past the limit: refused before reading
        client.post(f"/ingest/batch{query}", content=chunked(), headers={"Authorization": f"Bearer {sdk}"}),
        post(REQUESTS[0], key=None),
        post(REQUESTS[0], key="rl_sdk_not_a_key"),
        post(REQUESTS[0], key=None, Authorization="Basic abc"),
    ]
    if not query:  # an admin key must name the environment, which needs a query string
        responses.append(post(REQUESTS[0], key=admin))
    return [
        (
            r.status_code,
            r.content,
            r.headers.get("content-type"),
            r.headers.get("www-authenticate"),
            r.headers.get("retry-after"),
        )
        for r in responses
    ]


def test_the_fast_path_answers_and_stores_as_the_route(
    make_server: Callable[..., RunningServer], tmp_path: Path
) -> None:
    answers, rows = [], []
    # The route is reached with any query string; `?via=route` is one it ignores.
    for name, query in (("fast", ""), ("route", "?via=route")):
        server = make_server(db=tmp_path / f"{name}.duckdb", otlp_workers=0, max_batch_bytes=LIMIT)
        server.create_flag()
        with httpx.Client(base_url=server.url) as client:
            answers.append(_exchanges(client, query, server.sdk_key(), server.admin_key))
        rows.append(_stored(server))
    fast, route = answers
    assert fast[: len(route)] == route
    assert rows[0] == rows[1]
    statuses = [a[0] for a in fast]
    assert statuses[: 2 * len(REQUESTS)] == [200] * (2 * len(REQUESTS))
    assert statuses[2 * len(REQUESTS) :] == [422, 422, 422, 422, 413, 413, 401, 401, 401, 422]
    admin = json.loads(fast[-1][1])
    assert admin["problems"] == [
        {"field": "environment", "reason": "admin keys must name the environment (?environment=)"}
    ]
    assert fast[-4][3] == "Bearer"  # a missing key is told how to send one
    assert len(rows[0]["events"]) == 1 + 2 + 1 + 300


def test_the_fast_path_takes_only_the_sdk_form_of_the_batch_request(
    make_server: Callable[..., RunningServer],
) -> None:
    server = make_server()
    server.create_flag()
    app = server.thread.server.config.app
    sdk = server.sdk_key().encode()
    passed: list[tuple[str, str, bytes]] = []

    async def inner(scope: dict[str, Any], receive: Any, send: Any) -> None:
        passed.append((scope["method"], scope["path"], scope["query_string"]))

    async def call(method: str, path: str, query: bytes = b"") -> list[dict[str, Any]]:
        body = json.dumps({"events": [event("u1", event_id="fast-1")]}).encode()
        messages = [{"type": "http.request", "body": body, "more_body": False}]
        sent: list[dict[str, Any]] = []

        async def receive() -> dict[str, Any]:
            return messages.pop(0)

        async def send(message: dict[str, Any]) -> None:
            sent.append(message)

        scope = {
            "type": "http",
            "method": method,
            "path": path,
            "query_string": query,
            "headers": [(b"authorization", b"Bearer " + sdk), (b"content-length", b"%d" % len(body))],
            "app": app,
        }
        await IngestFastPath(inner)(scope, receive, send)
        return sent

    async def run() -> None:
        answered = await call("POST", "/ingest/batch")
        assert answered[0]["status"] == 200
        assert json.loads(answered[1]["body"])["accepted"]["events"] == 1
        for method, path, query in (
            ("GET", "/ingest/batch", b""),
            ("POST", "/ingest/batch", b"environment=production"),
            ("POST", "/ingest/batch/", b""),
            ("POST", "/v1/traces", b""),
        ):
            assert await call(method, path, query) == []

    asyncio.run(run())  # the server's own loop is idle meanwhile: no request is in flight
    assert passed == [
        ("GET", "/ingest/batch", b""),
        ("POST", "/ingest/batch", b"environment=production"),
        ("POST", "/ingest/batch/", b""),
        ("POST", "/v1/traces", b""),
    ]
