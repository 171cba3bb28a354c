"""Delivery through an outage, against a real server stopped and restarted on its port: what
the SDK took arrives exactly once, its bound drops the overflow and says so, close() keeps its
deadline, and what the server refuses is reported rather than retried."""

from __future__ import annotations

import itertools
import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from ramplight import Client
from ramplight.sdk.event_queue import DROPPED_EVENT
from ramplight.sdk.retry import Backoff
from ramplight.server.run import ServerThread, free_port
from ramplight.settings import Settings
from tests.factories import RunningServer
from tests.server.test_backpressure import loader_stalled

FLAG = "support_assistant_profile"
FAST = Backoff(base=0.05, cap=0.3)


def rows(thread: ServerThread, sql: str) -> list[tuple[Any, ...]]:
    state = thread.server.config.app.state.ramplight
    state.log.flush()
    result: list[tuple[Any, ...]] = state.store.query(sql)
    return result


def wait_for(condition: Callable[[], bool], seconds: float = 15.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.05)


class Timeline(httpx.HTTPTransport):
    """The real transport, noting when each batch was sent and when and how it was answered."""

    def __init__(self) -> None:
        super().__init__()
        self.batches: list[tuple[float, float, int, str | None]] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        sent = time.monotonic()
        response = super().handle_request(request)
        if request.url.path == "/ingest/batch":
            answered = (sent, time.monotonic(), response.status_code, response.headers.get("Retry-After"))
            self.batches.append(answered)
        return response


class Outage:
    """A server on a fixed port and database that can be stopped and brought back."""

    def __init__(self, make_server: Callable[..., RunningServer], tmp_path: Path) -> None:
        self.port = free_port()
        self.db = tmp_path / "outage.duckdb"
        first = make_server(db=self.db, port=self.port)
        first.create_flag()
        self.sdk_key = first.sdk_key()
        self.url = first.url
        self.thread = first.thread

    def client(self, **options: Any) -> Client:
        options = {"poll_interval": 3600, "flush_interval": 0.05, "retry_backoff": FAST, **options}
        return Client(self.sdk_key, url=self.url, **options)

    @contextmanager
    def down(self) -> Iterator[None]:
        self.thread.stop()
        try:
            yield
        finally:
            self.thread = ServerThread(Settings(db=self.db, port=self.port)).start()

    def stop(self) -> None:
        self.thread.stop()


def test_evidence_tracked_during_an_outage_arrives_exactly_once_when_the_server_returns(
    make_server: Callable[..., RunningServer], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="ramplight.sdk")
    outage = Outage(make_server, tmp_path)
    client = outage.client()
    try:
        with outage.down():
            for i in range(2000):
                assert client.track("resolved", f"conv_{i}", value=1, assignment_unit="conversation")
            for i in range(500):
                with client.exposure(FLAG, f"conv_{i}"):
                    pass
            wait_for(lambda: client.stats.retries >= 3)  # the sender kept trying through the outage
            assert client.stats.pending == 2500 and client.stats.sent == 0
        lines = [r.getMessage() for r in caplog.records]
        assert sum("unreachable" in line for line in lines) == 1  # once a minute, not once a retry
        assert not any(outage.sdk_key in line for line in lines)
        assert client.flush(timeout=20)
        stats = client.stats
        assert (stats.sent, stats.pending, stats.dropped, stats.rejected) == (2500, 0, 0, 0)
        assert rows(outage.thread, "SELECT count(*), count(DISTINCT event_id) FROM events") == [(2000, 2000)]
        assert rows(outage.thread, "SELECT count(*), count(DISTINCT unit_id) FROM exposures") == [(500, 500)]
        assert client.close() == {}
    finally:
        client.close(timeout=0)
        outage.stop()


def test_past_its_bound_the_queue_drops_new_items_and_reports_them_when_the_server_returns(
    make_server: Callable[..., RunningServer], tmp_path: Path
) -> None:
    outage = Outage(make_server, tmp_path)
    client = outage.client(queue_capacity=100)
    try:
        with outage.down():
            taken = [
                client.track("resolved", f"c{i}", value=1, assignment_unit="conversation") for i in range(150)
            ]
            assert taken.count(True) == 100 and taken[100:] == [False] * 50
            assert client.stats.dropped_by_reason == {"queue_full": 50}
        assert client.flush(timeout=20)
        assert (client.stats.sent, client.stats.dropped) == (100, 50)
        report = f"SELECT value, properties, assignment_unit FROM events WHERE name = '{DROPPED_EVENT}'"
        wait_for(lambda: bool(rows(outage.thread, report)))
        ((value, properties, unit),) = rows(outage.thread, report)
        assert value == 50 and unit == "sdk_instance"
        assert '"kind":"events"' in properties.replace(" ", "") and "queue_full" in properties
        assert rows(outage.thread, "SELECT count(*) FROM events WHERE name = 'resolved'") == [(100,)]
    finally:
        client.close(timeout=0)
        outage.stop()


def test_close_keeps_its_deadline_while_the_server_is_down_and_says_what_it_could_not_send(
    make_server: Callable[..., RunningServer], tmp_path: Path
) -> None:
    outage = Outage(make_server, tmp_path)
    client = outage.client(close_timeout=0.5)
    outage.stop()
    for i in range(30):
        client.track("resolved", f"c{i}", value=1, assignment_unit="conversation")
    for i in range(5):
        with client.exposure(FLAG, f"c{i}"):
            pass
    started = time.monotonic()
    unsent = client.close()
    assert time.monotonic() - started < 1.5
    assert unsent == {"events": 30, "exposures": 5}
    assert client.stats.dropped_by_reason == {"unsent_at_close": 35} and client.stats.pending == 0
    assert not client.track("late", "c1", assignment_unit="conversation")


def test_items_the_server_rejects_or_refuses_are_reported_not_retried(server: RunningServer) -> None:
    server.create_flag()
    with Client(server.sdk_key(), url=server.url, flush_interval=0.05, retry_backoff=FAST) as client:
        client.track("resolved", "c1", value=1, assignment_unit="conversation")
        client.track("resolved", "c2", value=1, assignment_unit="conversation", flag_key="no_such_flag")
        assert client.flush(timeout=10)
        assert (client.stats.sent, client.stats.rejected, client.stats.retries) == (1, 1, 0)
    with Client("not-a-key", url=server.url, flush_interval=0.05, retry_backoff=FAST, init_timeout=0) as bad:
        for i in range(5):
            bad.track("resolved", f"c{i}", value=1, assignment_unit="conversation")
        assert bad.flush(timeout=10)
        assert bad.stats.dropped_by_reason == {"refused": 5} and bad.stats.retries == 0


def test_a_server_pushing_back_is_retried_no_sooner_than_its_retry_after_and_loses_nothing(
    make_server: Callable[..., RunningServer],
) -> None:
    server = make_server(max_backlog_mb=0.05, guardian_interval=0)  # 50 KB of unloaded evidence
    server.create_flag()
    timeline = Timeline()
    client = Client(server.sdk_key(), url=server.url, transport=timeline, poll_interval=3600,
                    flush_interval=0.02, batch_size=100, retry_backoff=Backoff(base=0.01, cap=0.05))  # fmt: skip
    tracked = 0
    try:
        with loader_stalled(server):
            deadline = time.monotonic() + 15
            while not any(status == 503 for *_, status, _ in timeline.batches):
                assert time.monotonic() < deadline, "the server never pushed back"
                for _ in range(100):
                    client.track("resolved", f"c{tracked}", value=1, assignment_unit="conversation")
                    tracked += 1
                client.flush(timeout=1)
            wait_for(lambda: sum(status == 503 for *_, status, _ in timeline.batches) >= 2)
        assert client.flush(timeout=20)
        assert (client.stats.sent, client.stats.dropped) == (tracked, 0)
        assert rows(server.thread, "SELECT count(*), count(DISTINCT unit_id) FROM events") == [
            (tracked, tracked)
        ]
        for (_, answered, status, retry_after), (next_sent, *_) in itertools.pairwise(timeline.batches):
            if status == 503:  # the backoff alone would have waited at most 0.05 s
                assert retry_after is not None and next_sent - answered >= float(retry_after) >= 1
    finally:
        client.close(timeout=0)


def test_what_close_could_not_send_is_spooled_and_sent_by_the_next_client(
    make_server: Callable[..., RunningServer], tmp_path: Path
) -> None:
    outage = Outage(make_server, tmp_path)
    spool = tmp_path / "spool"
    with outage.down():
        first = outage.client(spool_dir=spool, init_timeout=0)
        for i in range(50):
            first.track("resolved", f"c{i}", value=1, assignment_unit="conversation")
        assert first.close(timeout=0.3) == {"events": 50}
        assert (first.stats.spooled, first.stats.dropped) == (50, 0)
        assert [p.suffix for p in spool.iterdir()] == [".ndjson"]
    second = outage.client(spool_dir=spool)
    try:
        assert second.stats.unspooled == 50 and not list(spool.iterdir())
        assert second.flush(timeout=20) and second.stats.sent == 50
        assert rows(outage.thread, "SELECT count(*), count(DISTINCT unit_id) FROM events") == [(50, 50)]
    finally:
        second.close(timeout=0)
        outage.stop()
