"""Config pushed to the SDK: `/sdk/stream` (Server-Sent Events) on a real server, and the
Python SDK following it — a kill reaches a client within a second without a poll."""

from __future__ import annotations

import threading
import time
import zlib
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


class GzipReader:
    """A gzipped stream's raw bytes, decompressed as they arrive (zlib checks the trailer's CRC-32
    and length when the member ends)."""

    def __init__(self, response: httpx.Response) -> None:
        self.chunks = response.iter_raw()
        self.inflate = zlib.decompressobj(wbits=31)
        self.text = b""

    def until(self, needle: bytes, occurrences: int = 1) -> bytes:
        """Read until `needle` has been decompressed `occurrences` times."""
        while self.text.count(needle) < occurrences:
            self.text += self.inflate.decompress(next(self.chunks))
        return self.text

    def rest(self) -> bytes:
        for chunk in self.chunks:
            self.text += self.inflate.decompress(chunk)
        return self.text


def test_the_stream_is_gzipped_when_accepted_each_event_whole_as_it_is_sent(
    make_server: Callable[..., RunningServer],
) -> None:
    server = make_server()
    server.create_flag()
    key = server.sdk_key()
    headers = {"Authorization": f"Bearer {key}", "Accept-Encoding": "gzip"}
    polled = httpx.get(f"{server.url}/sdk/config", headers={**headers, "Accept-Encoding": "identity"})
    with httpx.stream("GET", f"{server.url}/sdk/stream", headers=headers, timeout=10) as response:
        assert response.headers["content-encoding"] == "gzip"
        assert response.headers["vary"] == "Accept-Encoding"
        reader = GzipReader(response)
        first = reader.until(b"\n\n", 2)  # retry, then the config event: readable before any other
        assert first == (
            b"retry: 1000\n\nevent: config\nid: " + polled.headers["etag"].encode()
            + b"\ndata: " + polled.content + b"\n\n"
        )  # fmt: skip
        kill(server)
        pushed = reader.until(b"event: config", 2)[len(first) :]
        assert b'"enabled":false' in pushed and pushed.endswith(b"\n\n")
        server.thread.stop()
        rest = reader.rest()[len(first) + len(pushed) :]
    assert rest == b""
    assert reader.inflate.eof and reader.inflate.unused_data == b""  # a whole member, trailer checked


def test_a_stream_not_accepting_gzip_is_sent_as_is(server: RunningServer) -> None:
    key = server.sdk_key()
    headers = {"Authorization": f"Bearer {key}", "Accept-Encoding": "identity"}
    with httpx.stream("GET", f"{server.url}/sdk/stream", headers=headers, timeout=10) as response:
        assert "content-encoding" not in response.headers
        raw = b""
        for chunk in response.iter_raw():
            raw += chunk
            if raw.count(b"\n\n") >= 2:
                break
    assert raw.startswith(b"retry: 1000\n\nevent: config\nid: ")


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


def test_streams_woken_by_a_change_share_one_build_and_one_compression_of_the_new_config(
    server: RunningServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    import ramplight.server.state as state_module

    server.create_flag()
    key = server.sdk_key()
    builds: list[str] = []
    compressions: list[int] = []
    real_config, real_deflated = state_module.control.sdk_config, state_module.deflated

    def counted_config(store: object, environment: str) -> object:
        builds.append(environment)
        return real_config(store, environment)  # type: ignore[arg-type]

    def counted_deflated(data: bytes) -> bytes:
        compressions.append(len(data))
        return real_deflated(data)

    monkeypatch.setattr(state_module.control, "sdk_config", counted_config)
    monkeypatch.setattr(state_module, "deflated", counted_deflated)
    streams = 24
    first, second = threading.Barrier(streams + 1), threading.Barrier(streams + 1)
    errors: list[BaseException] = []

    def follow() -> None:
        headers = {"Authorization": f"Bearer {key}", "Accept-Encoding": "gzip"}
        try:
            with httpx.stream("GET", f"{server.url}/sdk/stream", headers=headers, timeout=30) as response:
                reader = GzipReader(response)
                reader.until(b"event: config")
                first.wait(30)
                text = reader.until(b"event: config", 2)
                assert b'"enabled":false' in text.split(b"event: config")[2]
                second.wait(30)
        except BaseException as exc:
            errors.append(exc)
            first.abort()
            second.abort()

    threads = [threading.Thread(target=follow) for _ in range(streams)]
    for thread in threads:
        thread.start()
    first.wait(30)  # every stream has the first config
    builds.clear()
    compressions.clear()
    kill(server)
    second.wait(30)  # every stream has the killed one
    for thread in threads:
        thread.join(30)
    assert errors == []
    assert builds == ["production"]  # not one a stream
    assert len(compressions) == 1
