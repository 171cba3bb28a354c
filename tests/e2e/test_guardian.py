"""The guardian through the real server: it rolls back a breached guardrail by itself, records
the decision with its evidence, calls the webhook, never acts twice on the same evidence, and
expands a safe release when the plan lets it."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest

from ramplight.core.audit import broken_links
from ramplight.server.run import free_port
from tests.e2e.test_decisions import FLAG, send_traffic, store_of
from tests.factories import RunningServer


class Receiver:
    """A webhook endpoint on 127.0.0.1 that keeps what it is sent; fails the first call."""

    def __init__(self) -> None:
        self.bodies: list[dict[str, Any]] = []
        self.calls = 0
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                outer.calls += 1
                body = self.rfile.read(int(self.headers["Content-Length"]))
                if outer.calls == 1:
                    self.send_response(503)  # the guardian's webhook must retry
                else:
                    outer.bodies.append(json.loads(body))
                    self.send_response(204)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.server.shutdown()


def wait_for(condition: Any, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.1)
    raise AssertionError("condition not met in time")


def setup_plan(server: RunningServer, **guardian: bool) -> None:
    server.create_flag()
    metric = {"type": "event", "event": "latency_ms", "aggregation": "mean", "direction": "decrease"}
    assert server.admin.put("/api/metrics/latency_ms", json=metric).status_code == 200
    plan = {
        "guardrails": [{"metric": "latency_ms", "margin": 0.05}],
        "stages": [{"percent": 5, "min_units": 100}, {"percent": 20, "min_units": 100}, {"percent": 100}],
        "gates": [],
        "guardian": guardian,
    }
    assert server.admin.put(f"/api/flags/{FLAG}/plans/production", json=plan).status_code == 200


def weights(server: RunningServer) -> dict[str, float]:
    flag: dict[str, Any] = server.admin.get(f"/api/flags/{FLAG}").json()
    result: dict[str, float] = flag["environments"]["production"]["rollout"]["weights"]
    return result


def test_the_guardian_rolls_back_a_breached_guardrail_by_itself(
    make_server, receiver: Receiver, tmp_path
) -> None:
    server: RunningServer = make_server(guardian_interval=0.2, webhooks=(receiver.url,))
    setup_plan(server)
    send_traffic(server, 4000, candidate_slowdown=0.3)
    wait_for(lambda: weights(server)["candidate"] == 0)

    (decision,) = store_of(server).decisions(FLAG)
    assert decision.actor == "guardian" and decision.state == "rollback" and not decision.forced
    assert decision.recommendation["sentence"].startswith("roll back: latency_ms is worse by")
    assert decision.evidence["sufficient_statistics"]["rows"]
    assert broken_links(store_of(server).flag_changes()) == []
    last_change = store_of(server).flag_changes()[-1]
    assert last_change.actor == "guardian" and last_change.action == "rollback"

    wait_for(lambda: len(receiver.bodies) == 1)
    assert receiver.calls >= 2  # the first delivery failed with 503 and was retried
    assert receiver.bodies[0]["action"] == "rollback" and receiver.bodies[0]["flag_key"] == FLAG

    # More checks on the same evidence (and after a restart) do not act again.
    outcomes = server.admin.post("/api/guardian/check").json()
    assert [o["acted"] for o in outcomes] == [None]
    server.thread.stop()
    restarted: RunningServer = make_server(db=server.settings.db, guardian_interval=0)
    headers = {"Authorization": f"Bearer {server.admin_key}"}
    with httpx.Client(base_url=restarted.url, headers=headers, timeout=60) as admin:
        assert [o["acted"] for o in admin.post("/api/guardian/check").json()] == [None]
    assert len(store_of(restarted).decisions(FLAG)) == 1


def test_the_guardian_expands_only_when_the_plan_lets_it(make_server) -> None:
    server: RunningServer = make_server(guardian_interval=0)
    setup_plan(server)  # guardian may roll back and pause, not expand
    send_traffic(server, 4000, candidate_slowdown=0.0)
    (outcome,) = server.admin.post("/api/guardian/check").json()
    assert outcome["recommendation"] == "expand" and outcome["acted"] is None
    assert weights(server)["candidate"] == 5

    plan = server.admin.get(f"/api/flags/{FLAG}/plans/production").json()
    plan["guardian"] = {"expand": True}
    assert server.admin.put(f"/api/flags/{FLAG}/plans/production", json=plan).status_code == 200
    (outcome,) = server.admin.post("/api/guardian/check").json()
    assert outcome["acted"] == "expand"
    assert weights(server)["candidate"] == 20
    # The 20 % stage has no units yet: the next check waits instead of expanding again.
    (outcome,) = server.admin.post("/api/guardian/check").json()
    assert outcome["acted"] is None and outcome["recommendation"] == "continue"
