"""Bounded ingestion against a real server: a stalled loader makes ingestion push back with 503
and Retry-After instead of growing the log; a segment that keeps failing is moved aside and never
blocks later ones or readouts; a readout on a backlog says how far behind it is."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx

from tests.factories import RunningServer

FLAG = "support_assistant_profile"


def state_of(server: RunningServer) -> Any:
    return server.thread.server.config.app.state.ramplight


@contextmanager
def loader_stalled(server: RunningServer) -> Iterator[None]:
    """Hold the store's write lock: the real loader blocks on it as on a slow disk."""
    lock = state_of(server).store._lock
    lock.acquire()
    try:
        yield
    finally:
        lock.release()


def batch(start: int, n: int) -> bytes:
    items = [{"ts": "2026-11-20T10:00:00Z", "flag_key": FLAG, "assignment_unit": "conversation",
              "unit_id": f"c{start + i}", "assigned_variation": "control", "served_variation": "control"}
             for i in range(n)]  # fmt: skip
    return json.dumps({"exposures": items}).encode()


def post(server: RunningServer, key: str, body: bytes) -> httpx.Response:
    return httpx.post(f"{server.url}/ingest/batch", content=body, timeout=30,
                      headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"})  # fmt: skip


def test_a_stalled_loader_makes_ingestion_push_back_then_recover(make_server: Any) -> None:
    server: RunningServer = make_server(max_backlog_mb=0.05, guardian_interval=0)  # 50 KB
    server.create_flag()
    key = server.sdk_key()
    acknowledged = 0
    with loader_stalled(server):
        refused = None
        for i in range(200):
            response = post(server, key, batch(i * 100, 100))
            if response.status_code == 503:
                refused = response
                break
            assert response.status_code == 200
            acknowledged += response.json()["accepted"]["exposures"]
            time.sleep(0.02)  # let the writer seal segments
        assert refused is not None, "ingestion never pushed back"
        assert int(refused.headers["Retry-After"]) >= 1
        assert refused.json()["error"] == "overloaded" and "waiting to load" in refused.json()["message"]
        status = server.admin.get("/api/ingest/status").json()
        assert status["pushing_back"] is True and status["backlog_bytes"] > 50_000
    deadline = time.monotonic() + 30
    while post(server, key, batch(10**6, 1)).status_code != 200:
        assert time.monotonic() < deadline
        time.sleep(0.2)
    state_of(server).log.flush()
    assert state_of(server).store.count("exposures") == acknowledged + 1


def test_a_readout_on_a_backlog_answers_with_what_is_loaded(make_server: Any) -> None:
    server: RunningServer = make_server(guardian_interval=0)
    server.create_flag()
    key = server.sdk_key()
    assert post(server, key, batch(0, 50)).status_code == 200
    state_of(server).log.flush()
    state_of(server).CATCH_UP_SECONDS = 0.5
    with loader_stalled(server):
        assert post(server, key, batch(50, 50)).status_code == 200
        started = time.monotonic()
        report = server.admin.get(f"/api/flags/{FLAG}/report")
        assert report.status_code == 200 and time.monotonic() - started < 10
        body = report.json()
        assert body["data_quality"]["exposed_units"] == 50  # what is loaded
        assert body["loading"]["behind_items"] == 50 and body["loading"]["behind_bytes"] > 0
    state_of(server).log.flush()
    assert "loading" not in server.admin.get(f"/api/flags/{FLAG}/report").json()


def test_a_segment_that_keeps_failing_is_moved_aside_and_can_be_reloaded(
    make_server: Any, tmp_path: Any
) -> None:
    first: RunningServer = make_server(guardian_interval=0)
    first.create_flag()
    log_dir = first.settings.log_dir
    first.thread.stop()
    bad = log_dir / "000000000100.seg"
    bad.mkdir(parents=True)
    (bad / "exposures.ndjson").write_text('{"event_id": "x", "ts": "not a time"}\n')
    server: RunningServer = make_server(db=first.settings.db, guardian_interval=0)
    admin = httpx.Client(
        base_url=server.url, headers={"Authorization": f"Bearer {first.admin_key}"}, timeout=60
    )
    key = admin.post("/api/keys", json={"kind": "sdk", "name": "x", "environment": "production"}).json()[
        "key"
    ]
    assert post(server, key, batch(0, 10)).status_code == 200
    deadline = time.monotonic() + 30
    while not admin.get("/api/ingest/status").json()["dead_letters"]:
        assert time.monotonic() < deadline
        time.sleep(0.2)
    (dead,) = admin.get("/api/ingest/status").json()["dead_letters"]
    assert (dead["name"] == "000000000100.seg" and "not a time" in dead["reason"]) or dead["reason"]
    report = admin.get(f"/api/flags/{FLAG}/report").json()
    assert report["data_quality"]["exposed_units"] == 10  # later evidence loaded; the readout works

    fixed = log_dir / "dead" / "000000000100.seg" / "exposures.ndjson"
    good = json.loads(batch(500, 1))["exposures"][0]
    fixed.write_text(json.dumps({**good, "event_id": "fixed-1", "environment": "production",
                                 "received_at": "2026-11-20T10:00:01Z"}) + "\n")  # fmt: skip
    reloaded = admin.post("/api/ingest/dead-letters/000000000100.seg/reload").json()
    assert reloaded["dead_letters"] == []
    assert state_of(server).store.count("exposures") == 11
