"""Config pushed to the SDK: `/sdk/stream` (Server-Sent Events) on a real server, and the
Python SDK following it — a kill reaches a client within a second without a poll."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

import httpx
import pytest
from httpx_sse import EventSource, ServerSentEvent

from ramplight import Client
from ramplight.server.run import ServerThread
from tests.factories import RunningServer

FLAG = "support_assistant_profile"


def until(condition: Callable[[], bool], seconds: float) -> float:
    """Seconds until `condition()` holds; fails after `seconds`."""
    started = time.monotonic()
    while not condition():
        assert time.monotonic() - started < seconds, f"not within {seconds} s"
        time.sleep(0.005)
    return time.monotonic() - started


class Recording(httpx.HTTPTransport):
    """The real HTTP transport, recording the paths it requests."""

    def __init__(self, refuse: frozenset[str] = frozenset()) -> None:
        super().__init__()
        self.paths: list[str] = []
        self.refuse = refuse

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self.paths.append(request.url.path)
        if request.url.path in self.refuse:  # as a server from before the stream existed answers
            return httpx.Response(404, json={"error": "not_found"}, request=request)
        return super().handle_request(request)


def kill(server: RunningServer) -> None:
    response = server.admin.post(f"/api/flags/{FLAG}/kill", json={"environment": "production"})
    assert response.status_code == 200, response.text


@pytest.fixture
def sdk(server: RunningServer) -> Iterator[httpx.Client]:
    key = server.sdk_key()
    with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {key}"}, timeout=10) as http:
        yield http


def configs(events: Iterator[ServerSentEvent]) -> Iterator[ServerSentEvent]:
    return (e for e in events if e.event == "config")


def test_the_stream_opens_with_the_config_polling_would_serve(
    server: RunningServer, sdk: httpx.Client
) -> None:
    server.create_flag()
    polled = sdk.get("/sdk/config", headers={"Accept-Encoding": "identity"})
    with sdk.stream("GET", "/sdk/stream") as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        events = EventSource(response).iter_sse()
        first = next(configs(events))
    assert first.id == polled.headers["etag"]
    assert first.data.encode() == polled.content


def test_a_change_is_pushed_as_the_next_event_and_last_event_id_skips_what_the_client_has(
    server: RunningServer, sdk: httpx.Client
) -> None:
    server.create_flag()
    etag = sdk.get("/sdk/config").headers["etag"]  # the gzipped body's: it names the same version
    with sdk.stream("GET", "/sdk/stream", headers={"Last-Event-ID": etag}) as response:
        events = EventSource(response).iter_sse()
        opening = next(events)
        assert opening.retry == 1000  # how soon to reconnect; no config: the client has this one
        kill(server)
        pushed = next(configs(events))
    assert pushed.id != etag
    assert pushed.id == sdk.get("/sdk/config", headers={"Accept-Encoding": "identity"}).headers["etag"]
    assert pushed.json()["flags"][FLAG]["enabled"] is False


def test_a_stream_names_its_environment_like_the_config_does(server: RunningServer) -> None:
    key = server.sdk_key("staging")
    anonymous = httpx.get(f"{server.url}/sdk/stream")
    assert anonymous.status_code == 401
    other = httpx.get(
        f"{server.url}/sdk/stream",
        params={"environment": "production"},
        headers={"Authorization": f"Bearer {key}"},
    )
    assert other.status_code == 403
    assert "staging" in other.json()["message"]


def test_revoking_the_key_ends_its_stream(server: RunningServer) -> None:
    created = server.admin.post(
        "/api/keys", json={"kind": "sdk", "name": "temp", "environment": "production"}
    ).json()
    headers = {"Authorization": f"Bearer {created['key']}"}
    with httpx.stream("GET", f"{server.url}/sdk/stream", headers=headers, timeout=10) as response:
        events = EventSource(response).iter_sse()
        next(configs(events))
        assert server.admin.delete(f"/api/keys/{created['id']}").status_code == 204
        assert list(configs(events)) == []  # the stream ended (a read timeout would raise)


def test_stopping_the_server_ends_open_streams_cleanly(make_server: Callable[..., RunningServer]) -> None:
    server = make_server()
    key = server.sdk_key()
    with httpx.stream(
        "GET", f"{server.url}/sdk/stream", headers={"Authorization": f"Bearer {key}"}, timeout=10
    ) as response:
        events = EventSource(response).iter_sse()
        next(configs(events))
        server.thread.stop()
        # The server ends the response before it shuts down: a complete chunked body, not a
        # connection cut after uvicorn's graceful-shutdown timeout (that raises here).
        assert list(configs(events)) == []


def test_a_kill_reaches_a_streaming_client_within_a_second_without_polling(server: RunningServer) -> None:
    server.create_flag(
        environments={
            "production": {
                "default_variation": "control",
                "off_variation": "control",
                "rollout": {"weights": {"control": 0, "candidate": 100}},
            }
        }
    )
    transport = Recording()
    with Client(server.sdk_key(), url=server.url, transport=transport, poll_interval=3600) as client:
        assert client.evaluate(FLAG, "u1").variation == "candidate"
        kill(server)
        waited = until(lambda: client.evaluate(FLAG, "u1").reason == "off", 1.0)
        assert transport.paths == ["/sdk/stream"], transport.paths
        changed: list[list[str]] = []
        client.on_config_change(changed.append)
        server.admin.post(f"/api/flags/{FLAG}/restore", json={"environment": "production"})
        until(lambda: changed == [[FLAG]], 1.0)
    assert waited < 1.0


def test_without_a_stream_the_client_polls(server: RunningServer) -> None:
    server.create_flag()
    transport = Recording(refuse=frozenset({"/sdk/stream"}))
    with Client(server.sdk_key(), url=server.url, transport=transport, poll_interval=0.05) as client:
        assert client.evaluate(FLAG, "u1").reason == "rollout"
        kill(server)
        until(lambda: client.evaluate(FLAG, "u1").reason == "off", 5.0)
    assert transport.paths[0] == "/sdk/stream"
    assert set(transport.paths[1:]) == {"/sdk/config"}
    assert transport.paths.count("/sdk/stream") == 1  # a 404 is not retried: that server has none


def test_through_a_restart_the_client_serves_the_last_config_then_follows_the_new_server(
    make_server: Callable[..., RunningServer],
) -> None:
    server = make_server()
    server.create_flag()
    client = Client(server.sdk_key(), url=server.url, poll_interval=0.2)
    try:
        assert client.evaluate(FLAG, "u1").reason == "rollout"
        server.thread.stop()
        assert client.evaluate(FLAG, "u1").reason == "rollout"  # fail-static: the last good config
        # A new server on the same database and port: the kill made there reaches the client.
        server.thread = ServerThread(server.settings).start()
        kill(server)
        until(lambda: client.evaluate(FLAG, "u1").reason == "off", 10.0)
        until(lambda: client._source.streaming, 10.0)  # type: ignore[attr-defined]
    finally:
        client.close()
