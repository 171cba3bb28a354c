"""The SDK against a real server: local evaluation, exposures when behavior runs, batching."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from ramplight import Client
from ramplight.server.run import ServerThread, free_port
from ramplight.settings import Settings
from tests.factories import RunningServer


class CountingTransport(httpx.HTTPTransport):
    """The real HTTP transport, counting the requests it sends."""

    def __init__(self) -> None:
        super().__init__()
        self.paths: list[str] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self.paths.append(request.url.path)
        return super().handle_request(request)


def stored(server: RunningServer, sql: str) -> list[tuple]:
    state = server.thread.server.config.app.state.ramplight
    state.log.flush()
    return state.store.query(sql)


@pytest.fixture
def client_for(server: RunningServer) -> Callable[..., Client]:
    made: list[Client] = []

    def make(**options: object) -> Client:
        client = Client(server.sdk_key(), url=server.url, **options)  # type: ignore[arg-type]
        made.append(client)
        return client

    yield make
    for client in made:
        client.close()


def test_evaluation_is_local_after_the_first_config(server: RunningServer) -> None:
    server.create_flag()
    transport = CountingTransport()
    with Client(server.sdk_key(), url=server.url, transport=transport, poll_interval=3600) as client:
        results = [client.evaluate("support_assistant_profile", f"conv_{i}") for i in range(5000)]
        assert transport.paths == ["/sdk/stream"]
    shares = sum(r.variation == "candidate" for r in results) / len(results)
    assert 0.03 < shares < 0.07
    assert {r.reason for r in results} == {"rollout"}


def test_unknown_flags_serve_the_callers_default_and_say_why(server: RunningServer, client_for) -> None:
    client = client_for()
    evaluation = client.evaluate("no_such_flag", "u1", default={"prompt_profile": "safe"})
    assert evaluation.value == {"prompt_profile": "safe"}
    assert (evaluation.reason, evaluation.error_code) == ("error", "flag_not_found")
    assert client.bool_value("no_such_flag", "u1", default=True) is True


def test_typed_accessors_refuse_a_value_of_the_wrong_type(server: RunningServer, client_for) -> None:
    server.create_flag()
    client = client_for()
    assert client.string_value("support_assistant_profile", "u1", default="fallback") == "fallback"
    assert client.json_value("support_assistant_profile", "u1")["prompt_profile"].startswith("support_v")


def test_exposure_fires_when_the_behavior_ran_with_assigned_and_served(
    server: RunningServer, client_for
) -> None:
    server.create_flag(
        environments={
            "production": {
                "default_variation": "control",
                "off_variation": "control",
                "rollout": {"weights": {"candidate": 100}},
            }
        }
    )
    client = client_for()
    with client.exposure("support_assistant_profile", "conv_1", {"plan": "pro"}) as x:
        assert x.value == {"prompt_profile": "support_v4"}
        assert x.fallback("timeout") == {"prompt_profile": "support_v3"}
    with client.exposure("support_assistant_profile", "conv_2") as x:
        pass
    evaluated_only = client.evaluate("support_assistant_profile", "conv_3")
    assert evaluated_only.variation == "candidate"
    assert client.flush()
    rows = stored(
        server,
        "SELECT unit_id, assigned_variation, served_variation, fallback_reason, "
        "behavior->>'prompt_profile', attributes->>'plan' FROM exposures ORDER BY unit_id",
    )
    assert rows == [
        ("conv_1", "candidate", "control", "timeout", "support_v3", "pro"),
        ("conv_2", "candidate", "candidate", None, "support_v4", None),
    ]


def test_track_and_score_reach_the_store_joined_on_the_unit(server: RunningServer, client_for) -> None:
    server.create_flag()
    client = client_for()
    assert client.track("latency_ms", "conv_1", value=1840, flag_key="support_assistant_profile")
    assert client.track(
        "resolved", "conv_1", value=1, assignment_unit="conversation", properties={"channel": "chat"}
    )
    assert client.score("faithfulness", 0.92, unit_id="conv_1", evaluator="llm_judge", evaluator_version="v2")
    assert not client.track("orphan", "conv_1")  # no unit can be known: counted, not raised
    client.flush()
    assert stored(server, "SELECT name, value, assignment_unit FROM events ORDER BY name") == [
        ("latency_ms", 1840.0, "conversation"),
        ("resolved", 1.0, "conversation"),
    ]
    assert stored(server, "SELECT name, score, evaluator FROM evals") == [("faithfulness", 0.92, "llm_judge")]


def test_a_config_change_reaches_the_client_by_etag_polling(server: RunningServer, client_for) -> None:
    server.create_flag()
    client = client_for(poll_interval=3600, stream=False)
    assert client.refresh() is False  # unchanged: 304
    server.admin.post("/api/flags/support_assistant_profile/kill", json={"environment": "production"})
    assert client.refresh() is True
    assert client.evaluate("support_assistant_profile", "conv_1").reason == "off"


def test_the_last_good_config_keeps_serving_when_the_server_goes_away(server: RunningServer) -> None:
    server.create_flag()
    client = Client(server.sdk_key(), url=server.url, poll_interval=3600)
    before = [client.evaluate("support_assistant_profile", f"c{i}").variation for i in range(200)]
    server.thread.stop()
    assert client.refresh() is False
    after = [client.evaluate("support_assistant_profile", f"c{i}").variation for i in range(200)]
    assert after == before
    client.close(timeout=1)


def test_events_sent_while_the_server_is_down_arrive_after_it_starts(tmp_path: Path, make_server) -> None:
    port = free_port()
    first = make_server(db=tmp_path / "a.duckdb", port=port)
    sdk_key = first.sdk_key()
    first.thread.stop()
    client = Client(sdk_key, url=first.url, init_timeout=0, flush_interval=0.05)
    for i in range(20):
        client.track("resolved", f"conv_{i}", value=1, assignment_unit="conversation")
    restarted = ServerThread(Settings(db=tmp_path / "a.duckdb", port=port)).start()
    try:
        assert client.flush(timeout=30)
        assert client.stats.sent == 20 and client.stats.retries >= 1
        state = restarted.server.config.app.state.ramplight
        state.log.flush()
        assert state.store.count("events") == 20
    finally:
        client.close(timeout=1)
        restarted.stop()


def test_a_full_queue_drops_new_items_and_counts_them(server: RunningServer, client_for) -> None:
    client = client_for(queue_capacity=10, flush_interval=3600, batch_size=1000)
    results = [client.track("resolved", f"c{i}", value=1, assignment_unit="conversation") for i in range(25)]
    assert results.count(True) == 10 and client.stats.dropped == 15
    client.close()
    assert client.stats.sent == 10


def test_close_sends_what_is_queued(server: RunningServer) -> None:
    client = Client(server.sdk_key(), url=server.url, flush_interval=3600)
    for i in range(1200):
        client.track("resolved", f"c{i}", value=1, assignment_unit="conversation")
    client.close()
    assert client.stats.sent == 1200
    assert stored(server, "SELECT count(*) FROM events") == [(1200,)]


def test_ramping_up_never_moves_a_candidate_unit_back_to_control(server: RunningServer, client_for) -> None:
    server.create_flag()
    client = client_for(poll_interval=3600, stream=False)
    units = [f"conv_{i}" for i in range(20_000)]
    before = {u: client.evaluate("support_assistant_profile", u).variation for u in units}
    for percent in (10, 20, 50):
        server.admin.post(
            "/api/flags/support_assistant_profile/ramp",
            json={"environment": "production", "variation": "candidate", "percent": percent},
        )
        assert client.refresh()
        after = {u: client.evaluate("support_assistant_profile", u).variation for u in units}
        assert all(after[u] == "candidate" for u in units if before[u] == "candidate")
        moved = [u for u in units if after[u] != before[u]]
        assert all(before[u] == "control" and after[u] == "candidate" for u in moved)
        assert abs(sum(v == "candidate" for v in after.values()) / len(units) - percent / 100) < 0.015
        before = after
