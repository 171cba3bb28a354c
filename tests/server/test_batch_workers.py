"""`/ingest/batch` bodies judged in the ingestion workers (server/workers.py): the same answers,
byte for byte, and the same stored rows as judging in the server's thread — bad items, conflicts
and duplicates included; a worker that dies fails only the request it held (503, nothing of it
taken); where no worker can start, bodies are judged in the thread; backpressure still engages."""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import signal
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from ramplight.core.contract import BatchRequest, FlagFacts, ValidatedBatch, judge_batch
from ramplight.core.errors import PayloadTooLarge, ValidationError
from ramplight.server.workers import IngestWorkers, SpareCpu
from ramplight.store.duckdb import DuckDBStore
from tests.factories import RunningServer
from tests.server.test_ingest import event, exposure

FLAG = "support_assistant_profile"
FACTS = {FLAG: FlagFacts("conversation", frozenset({"control", "candidate"}))}
NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)


def _body(**kinds: list[Any]) -> bytes:
    return json.dumps(kinds).encode()


BAD_UTF8 = (
    b'{"events": ['
    + json.dumps(event("u1", event_id="e-good-1")).encode()
    + b', {"ts": "2026-11-20T10:01:00Z", "name": "n\xff\xfe", "unit_id": "u2", "assignment_unit": "conversation"}, '
    + json.dumps(event("u3", event_id="e-good-3")).encode()
    + b"]}"
)
"""A batch with one item that is not UTF-8: the batch is split slowly, the item refused alone."""

REQUESTS = [
    _body(
        exposures=[exposure("c1"), exposure("c2", assignment_unit="user"), exposure("c3", flag_version=2)],
        events=[
            event("c1", event_id="e1"),
            event("c2", ts="yesterday"),
            event("c3", colour="red", flagKey=FLAG),
            event("c4", event_id="e1"),  # the same id, another payload, in the same batch: a conflict
            event("c1", event_id="e1"),  # a duplicate within the batch
            event("c5", properties={"note": "x" * 2000}),
        ],
        evals=[
            {
                "ts": "2026-11-20T10:02:00Z",
                "name": "faithfulness",
                "score": 0.9,
                "evaluator": "llm_judge",
                "unit_id": "c1",
            },
            {"ts": "2026-11-20T10:02:00Z", "name": "faithfulness", "score": 0.9, "evaluator": "llm_judge"},
        ],
    ),
    BAD_UTF8,
    # Across batches: a resend (duplicates), a changed payload (conflict), a new item.
    _body(events=[event("c1", event_id="e1"), event("c9", event_id="e-good-1"), event("c6", event_id="e6")]),
    _body(exposures=[exposure("c1"), exposure("c3", flag_version=2)]),
    _body(events=[event(f"u{i}", value=i) for i in range(300)]),
]


@pytest.fixture(scope="module")
def workers() -> Iterator[IngestWorkers]:
    pool = IngestWorkers(1, frozenset(), frozenset())
    yield pool
    pool.close()


def _columns(judged: ValidatedBatch) -> tuple[Any, ...]:
    return (
        judged.problems,
        judged.environment,
        judged.received_at,
        {
            kind: (a.indexes, a.event_ids, a.identities, a.payload_hashes, a.lines)
            for kind, a in judged.kinds.items()
        },
    )


@pytest.mark.parametrize("body", REQUESTS, ids=range(len(REQUESTS)))
@pytest.mark.parametrize("allowed", [None, frozenset({"plan"})])
def test_a_worker_judges_a_batch_as_the_servers_thread_does(
    workers: IngestWorkers, body: bytes, allowed: frozenset[str] | None
) -> None:
    in_thread = judge_batch(BatchRequest(body, "production", FACTS, NOW, allowed, 10_000))
    in_worker = asyncio.run(
        workers.judge_batch(BatchRequest(body, "production", FACTS, NOW, allowed, 10_000))
    )
    assert in_worker is not None
    assert _columns(in_worker) == _columns(in_thread)
    assert in_thread.accepted_count > 0 or in_thread.problems


@pytest.mark.parametrize(
    ("body", "error"),
    [
        (b"[1, 2]", ValidationError),
        (b'{"events": [], "spans": []}', ValidationError),
        (b'{"events": [{"a": 1}', ValidationError),
        (_body(events=[event(f"u{i}") for i in range(11)]), PayloadTooLarge),
    ],
)
def test_a_body_that_is_not_a_batch_is_refused_by_a_worker_as_in_the_thread(
    workers: IngestWorkers, body: bytes, error: type[ValidationError]
) -> None:
    with pytest.raises(error) as in_thread:
        judge_batch(BatchRequest(body, "production", FACTS, NOW, None, 10))
    with pytest.raises(error) as in_worker:
        asyncio.run(workers.judge_batch(BatchRequest(body, "production", FACTS, NOW, None, 10)))
    assert type(in_worker.value) is type(in_thread.value)
    assert (in_worker.value.message, in_worker.value.problems) == (
        in_thread.value.message,
        in_thread.value.problems,
    )


def _post(client: httpx.Client, body: bytes) -> httpx.Response:
    return client.post("/ingest/batch", content=body, headers={"Content-Type": "application/json"})


def _stored(server: RunningServer) -> dict[str, list[tuple[Any, ...]]]:
    """Every stored row but `received_at` (the server's clock), in a stable order."""
    server.thread.stop()
    store = DuckDBStore(server.settings.db, read_only=True)
    try:
        out = {}
        for kind in ("exposures", "events", "evals"):
            columns, _ = store.read(f"SELECT * FROM {kind} LIMIT 0")
            kept = ", ".join(f'"{c}"' for c in columns if c != "received_at")
            out[kind] = store.read(f"SELECT {kept} FROM {kind} ORDER BY identity")[1]
        return out
    finally:
        store.close()


def _state(server: RunningServer) -> Any:
    return server.thread.server.config.app.state.ramplight


def test_batches_judged_in_workers_answer_and_store_as_in_the_servers_thread(
    make_server: Callable[..., RunningServer], tmp_path: Path
) -> None:
    answers, rows = [], []
    for pool in (0, 2):
        server = make_server(
            db=tmp_path / f"w{pool}.duckdb",
            otlp_workers=pool,
            batch_worker_min_bytes=0,
            batch_worker_spare_cores=0,
        )
        server.create_flag()
        with httpx.Client(
            base_url=server.url, headers={"Authorization": f"Bearer {server.sdk_key()}"}
        ) as client:
            answers.append(
                [(r.status_code, r.content) for r in (_post(client, b) for b in [*REQUESTS, *REQUESTS])]
            )
        if pool:
            assert len(_state(server).workers.pids()) == pool  # judged there, not in the thread
        rows.append(_stored(server))
    assert answers[0] == answers[1]
    assert rows[0] == rows[1]
    first = json.loads(answers[1][0][1])
    assert first["duplicates"]["events"] == 1
    assert {(p["index"], p["field"]) for p in first["rejected"] if p["kind"] == "events"} >= {
        (1, "ts"), (2, "colour"), (2, "flagKey"), (3, "event_id"), (5, "properties.note"),
    }  # fmt: skip
    bad_utf8 = json.loads(answers[1][1][1])
    assert bad_utf8["accepted"]["events"] == 2
    assert [(p["index"], p["reason"][:19]) for p in bad_utf8["rejected"]] == [(1, "not valid UTF-8 (by")]
    across = json.loads(answers[1][2][1])
    assert across["duplicates"]["events"] == 1 and across["accepted"]["events"] == 1
    assert [(p["index"], p["field"]) for p in across["rejected"]] == [(1, "event_id")]
    resent = [json.loads(body) for _, body in answers[1][len(REQUESTS) :]]
    assert all(sum(a["accepted"].values()) == 0 for a in resent)
    assert len(rows[1]["events"]) == 1 + 2 + 1 + 300


def test_a_worker_that_dies_fails_only_its_batch_with_503_and_nothing_of_it_is_taken(
    make_server: Callable[..., RunningServer],
) -> None:
    server = make_server(otlp_workers=1, batch_worker_min_bytes=0, batch_worker_spare_cores=0)
    server.create_flag()
    workers: IngestWorkers = _state(server).workers
    first = _body(events=[event(f"a{i}", event_id=f"a{i}") for i in range(100)])
    second = _body(events=[event(f"b{i}", event_id=f"b{i}") for i in range(100)])
    with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {server.sdk_key()}"}) as client:
        assert _post(client, first).status_code == 200
        (pid,) = workers.pids()
        os.kill(pid, signal.SIGKILL)
        refused = _post(client, second)
        assert refused.status_code == 503, refused.text
        assert refused.headers["Retry-After"]
        assert "nothing of it was taken" in refused.text
        again = _post(client, second)  # the SDK's retry, to a new pool: new, not a duplicate
        assert again.status_code == 200, again.text
        assert again.json()["accepted"]["events"] == 100
        assert again.json()["duplicates"]["events"] == 0
        assert workers.restarts == 1
        assert workers.pids() != [pid]
    stored = _stored(server)["events"]
    assert len(stored) == len({row[0] for row in stored}) == 200


def test_where_no_worker_can_start_batches_are_judged_in_the_servers_thread(
    make_server: Callable[..., RunningServer], monkeypatch: pytest.MonkeyPatch
) -> None:
    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise OSError(11, "Resource temporarily unavailable")

    alone = IngestWorkers(1, frozenset(), frozenset())
    with monkeypatch.context() as patch:
        patch.setattr("concurrent.futures.ProcessPoolExecutor.submit", refuse)
        assert (
            asyncio.run(alone.judge_batch(BatchRequest(REQUESTS[0], "production", FACTS, NOW, None, 100)))
            is None
        )
    assert alone.unavailable
    alone.close()

    server = make_server(otlp_workers=1, batch_worker_min_bytes=0, batch_worker_spare_cores=0)
    server.create_flag()
    _state(server).workers.unavailable = True
    with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {server.sdk_key()}"}) as client:
        answer = _post(client, REQUESTS[-1])
        assert answer.status_code == 200, answer.text
        assert answer.json()["accepted"]["events"] == 300
    assert _state(server).workers.pids() == []
    assert len(_stored(server)["events"]) == 300


def test_with_batches_judged_in_workers_a_stalled_loader_still_makes_ingestion_push_back(
    make_server: Callable[..., RunningServer],
) -> None:
    server = make_server(
        otlp_workers=1,
        batch_worker_min_bytes=0,
        batch_worker_spare_cores=0,
        max_backlog_mb=0.05,
        guardian_interval=0,
    )
    server.create_flag()
    state = _state(server)
    with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {server.sdk_key()}"}) as client:
        acknowledged = 0
        with state.store._lock:  # the loader blocks on the store's write lock, as on a slow disk
            deadline = time.monotonic() + 60
            for i in itertools.count():  # the writer seals a segment every 0.5 s: the backlog grows
                answer = _post(client, _body(events=[event(f"p{i}-{j}") for j in range(100)]))
                if answer.status_code == 503 or time.monotonic() > deadline:
                    break
                assert answer.status_code == 200, answer.text
                acknowledged += answer.json()["accepted"]["events"]
            assert answer.status_code == 503
            assert answer.headers["Retry-After"]
            assert "nothing was taken" in answer.text
            assert len(state.workers.pids()) == 1
        state.log.flush()
    assert len(_stored(server)["events"]) == acknowledged > 0


def test_spare_cpu_is_read_from_the_machines_idle_ticks(tmp_path: Path) -> None:
    stat = tmp_path / "stat"
    stat.write_text("cpu  100 0 100 800 0 0 0 0 0 0\ncpu0 50 0 50 400 0 0 0 0 0 0\n")
    spare = SpareCpu(stat)
    machine = os.cpu_count() or 1
    assert spare.idle_cores() == machine  # nothing measured yet: assumed idle
    stat.write_text("cpu  700 0 200 1100 0 0 0 0 0 0\n")  # 1,000 ticks more, 300 of them idle
    deadline = time.monotonic() + 10
    while spare.idle_cores() == machine:  # re-read once its window has passed
        assert time.monotonic() < deadline
    assert spare.idle_cores() == pytest.approx(0.3 * machine)
    assert SpareCpu(tmp_path / "absent").idle_cores() is None


def test_while_no_core_is_spare_large_batches_are_judged_in_the_servers_thread(
    make_server: Callable[..., RunningServer],
) -> None:
    server = make_server(otlp_workers=1, batch_worker_min_bytes=0, batch_worker_spare_cores=1000)
    server.create_flag()
    workers: IngestWorkers = _state(server).workers
    assert not workers.worth_it(1000)
    assert workers.worth_it(0)
    with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {server.sdk_key()}"}) as client:
        answer = _post(client, REQUESTS[-1])
        assert answer.status_code == 200, answer.text
        assert answer.json()["accepted"]["events"] == 300
    assert workers.pids() == []  # no pool was started for it
    assert len(_stored(server)["events"]) == 300
