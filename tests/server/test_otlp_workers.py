"""Large OTLP trace requests decoded in worker processes (server/workers.py): the same log
lines, identities, rejections and exposures as decoding in the server's thread, whatever the
request holds; a worker that dies fails only the requests it held (503, nothing of them taken)
and loses nothing acknowledged."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span

from ramplight.core import otlp
from ramplight.core.contract import ValidatedBatch
from ramplight.server.workers import IngestWorkers
from ramplight.store.duckdb import DuckDBStore
from tests.core.test_otlp import _as_otlp_json, _unit_of, requests
from tests.factories import RunningServer

ALLOW = frozenset({"gen_ai.prompt"})
DENY = frozenset({"http.route"})
NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
START = time.time_ns() - 60_000_000_000
"""The spans' start: a re-export sends the same spans."""


def _in_thread(body: bytes, json: bool) -> tuple[otlp.DecodedTraces, int, ValidatedBatch]:
    """What the route does without workers."""
    policy = otlp.AttributePolicy(ALLOW, DENY)
    decoded = (otlp.decode_json if json else otlp.decode_protobuf)(body, policy, _unit_of)
    return (
        decoded,
        len(decoded.spans),
        otlp.accept_spans(decoded.spans, "production", NOW, decoded.canonicals),
    )


def _outcome(decoded: otlp.DecodedTraces, count: int, judged: ValidatedBatch) -> tuple[Any, ...]:
    spans = judged.kinds["spans"]
    return (
        count,
        spans.indexes,
        spans.event_ids,
        spans.identities,
        spans.payload_hashes,
        spans.lines,
        decoded.rejected,
        decoded.dropped_attributes,
        decoded.exposures,
        decoded.not_exposures,
    )


def _with_units(decoded: otlp.DecodedTraces) -> otlp.DecodedTraces:
    """As the route completes a worker's exposures from its flags."""
    for exposure in decoded.exposures:
        exposure["assignment_unit"] = _unit_of(exposure["flag_key"]) or "unknown"
    return decoded


@pytest.fixture(scope="module")
def workers() -> Iterator[IngestWorkers]:
    pool = IngestWorkers(1, ALLOW, DENY)
    yield pool
    pool.close()


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(request=requests)
def test_a_worker_judges_a_request_as_the_server_thread_does(
    workers: IngestWorkers, request: ExportTraceServiceRequest
) -> None:
    for body, json in ((request.SerializeToString(), False), (_as_otlp_json(request), True)):
        expected = _outcome(*_in_thread(body, json))
        decoded, count, judged = asyncio.run(workers.judge_traces(body, json, "production", NOW))
        assert _outcome(_with_units(decoded), count, judged) == expected
        assert judged.kinds["spans"].items == []  # the rows stay in the worker


def test_a_request_that_is_not_otlp_is_refused_by_a_worker_as_in_the_thread(workers: IngestWorkers) -> None:
    for body, json in ((b"\xff\xff\xff", False), (b"[1, 2", True), (b"[]", True)):
        with pytest.raises(otlp.OtlpError) as in_thread:
            _in_thread(body, json)
        with pytest.raises(otlp.OtlpError) as in_worker:
            asyncio.run(workers.judge_traces(body, json, "production", NOW))
        assert in_worker.value.message == in_thread.value.message
        assert in_worker.value.problems == in_thread.value.problems


def _request(first: int, n: int) -> bytes:
    """`n` spans in traces of 4, the roots carrying the flag, a unit and a prompt (dropped)."""

    def attr(key: str, value: str | int) -> KeyValue:
        any_value = AnyValue(string_value=value) if isinstance(value, str) else AnyValue(int_value=value)
        return KeyValue(key=key, value=any_value)

    start = START
    spans = []
    for i in range(first, first + n):
        trace, position = divmod(i, 4)
        span = Span(
            trace_id=(trace + 1).to_bytes(16, "big"),
            span_id=(i + 1).to_bytes(8, "big"),
            name="conversation" if position == 0 else "chat",
            start_time_unix_nano=start + i * 1000,
            end_time_unix_nano=start + i * 1000 + 5_000_000,
        )
        if position == 0:
            span.attributes.extend(
                [attr("feature_flag.key", "support_assistant_profile"), attr("feature_flag.context.id", f"u{trace}"),
                 attr("feature_flag.result.variant", "control"), attr("gen_ai.input.messages", "secret")]
            )  # fmt: skip
        else:
            span.parent_span_id = (trace * 4 + 1).to_bytes(8, "big")
            span.attributes.extend(
                [attr("gen_ai.request.model", "gpt-5-mini"), attr("gen_ai.usage.input_tokens", i)]
            )
            span.events.add(
                name="feature_flag.evaluation",
                time_unix_nano=start + i * 1000,
                attributes=[attr("feature_flag.key", "support_assistant_profile"),
                            attr("feature_flag.context.id", f"u{trace}"), attr("feature_flag.result.variant", "control")],
            )  # fmt: skip
        spans.append(span)
    resource = {"attributes": [attr("service.name", "support-assistant")]}
    request = ExportTraceServiceRequest(
        resource_spans=[ResourceSpans(resource=resource, scope_spans=[ScopeSpans(spans=spans)])]
    )
    return request.SerializeToString()


def _post(client: httpx.Client, body: bytes) -> httpx.Response:
    return client.post("/v1/traces", content=body, headers={"Content-Type": "application/x-protobuf"})


def _stored(server: RunningServer, sql: str) -> list[tuple[Any, ...]]:
    server.thread.stop()
    store = DuckDBStore(server.settings.db, read_only=True)
    try:
        return store.read(sql)[1]
    finally:
        store.close()


def test_spans_through_workers_are_stored_as_through_the_server_thread(
    make_server: Callable[..., RunningServer], tmp_path: Any
) -> None:
    rows = []
    for workers in (0, 2):
        server = make_server(
            db=tmp_path / f"w{workers}.duckdb", otlp_workers=workers, otlp_worker_min_bytes=0
        )
        server.create_flag()
        headers = {"Authorization": f"Bearer {server.sdk_key()}"}
        with httpx.Client(base_url=server.url, headers=headers, timeout=60) as client:
            for first in (0, 200, 0):  # the last is a re-export: stored once
                answer = _post(client, _request(first, 200))
                assert answer.status_code == 200, answer.text
                assert (
                    ExportTraceServiceResponse.FromString(answer.content).partial_success.rejected_spans == 0
                )
        rows.append(
            (
                _stored(
                    server,
                    "SELECT trace_id, span_id, name, unit_id, flag_key, attributes::VARCHAR, identity, payload_hash"
                    " FROM spans ORDER BY trace_id, span_id",
                ),
                _stored(
                    server, "SELECT unit_id, flag_key, assignment_unit, trace_id FROM exposures ORDER BY ALL"
                ),
            )
        )
    assert len(rows[0][0]) == 400
    assert rows[0] == rows[1]
    assert "secret" not in str(rows[1][0])
    assert len(rows[1][1]) == 300  # one flag evaluation event a child span
    assert {r[2] for r in rows[1][1]} == {"conversation"}  # the flag's unit, set by the server


def _state(server: RunningServer) -> Any:
    return server.thread.server.config.app.state.ramplight  # type: ignore[union-attr]


def test_a_worker_that_dies_fails_only_its_request_with_503_and_loses_nothing_acknowledged(
    make_server: Callable[..., RunningServer],
) -> None:
    server = make_server(otlp_workers=1, otlp_worker_min_bytes=0)
    server.create_flag()
    headers = {"Authorization": f"Bearer {server.sdk_key()}"}
    workers: IngestWorkers = _state(server).workers
    with httpx.Client(base_url=server.url, headers=headers, timeout=60) as client:
        assert _post(client, _request(0, 100)).status_code == 200
        (pid,) = workers.pids()
        os.kill(pid, signal.SIGKILL)
        refused = _post(client, _request(100, 100))
        assert refused.status_code == 503, refused.text
        assert refused.headers["Retry-After"]
        assert "nothing of it was taken" in refused.text
        assert workers.restarts == 1
        again = _post(client, _request(100, 100))  # the exporter's retry, to a new pool
        assert again.status_code == 200, again.text
        assert ExportTraceServiceResponse.FromString(again.content).partial_success.rejected_spans == 0
        assert workers.pids() != [pid]
    ((spans, distinct),) = _stored(server, "SELECT count(*), count(DISTINCT span_id) FROM spans")
    assert spans == distinct == 200


def test_where_no_worker_can_start_requests_are_decoded_in_the_servers_thread(
    make_server: Callable[..., RunningServer], monkeypatch: pytest.MonkeyPatch
) -> None:
    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise OSError(11, "Resource temporarily unavailable")

    alone = IngestWorkers(1, ALLOW, DENY)
    with monkeypatch.context() as patch:
        patch.setattr("concurrent.futures.ProcessPoolExecutor.submit", refuse)
        assert asyncio.run(alone.judge_traces(_request(0, 4), False, "production", NOW)) is None
    assert alone.unavailable
    assert asyncio.run(alone.judge_traces(_request(0, 4), False, "production", NOW)) is None  # not retried
    alone.close()

    server = make_server(otlp_workers=1, otlp_worker_min_bytes=0)
    server.create_flag()
    _state(server).workers.unavailable = True
    headers = {"Authorization": f"Bearer {server.sdk_key()}"}
    with httpx.Client(base_url=server.url, headers=headers, timeout=60) as client:
        answer = _post(client, _request(0, 100))
        assert answer.status_code == 200, answer.text
        assert ExportTraceServiceResponse.FromString(answer.content).partial_success.rejected_spans == 0
    assert _state(server).workers.pids() == []
    ((spans,),) = _stored(server, "SELECT count(*) FROM spans")
    assert spans == 100


_HOLDER = """
import asyncio, sys, time
from datetime import UTC, datetime
from ramplight.server.workers import IngestWorkers
from tests.server.test_otlp_workers import _request
workers = IngestWorkers(2, frozenset(), frozenset())
asyncio.run(workers.judge_traces(_request(0, 8), False, "production", datetime.now(UTC)))
print(*workers.pids(), flush=True)
time.sleep(120)
"""


def test_workers_end_when_the_server_is_killed() -> None:
    """A server killed with SIGKILL cannot stop its pool: its workers must not outlive it."""
    holder = subprocess.Popen(
        [sys.executable, "-c", _HOLDER],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
    )
    try:
        assert holder.stdout is not None
        pids = [int(p) for p in holder.stdout.readline().split()]
        assert len(pids) == 2
        holder.kill()
        holder.wait(timeout=10)
        deadline = time.monotonic() + 10
        while any(Path(f"/proc/{pid}").exists() for pid in pids) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not [pid for pid in pids if Path(f"/proc/{pid}").exists()]
    finally:
        holder.kill()
