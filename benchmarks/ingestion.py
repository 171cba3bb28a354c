"""Ingestion: events/s over HTTP into a real Ramplight server, against DuckDB's own loader.

    python benchmarks/ingestion.py             # 1,000,000 events
    python benchmarks/ingestion.py --quick     # 50,000 events (smoke run)
    python benchmarks/ingestion.py --spans-only --spans 204800   # only (e), OTLP spans
    python benchmarks/ingestion.py --otlp-workers 0   # (a) and (e) judged in the server's thread
    python benchmarks/ingestion.py --events-only      # (a) and (b) alone: to compare two versions

The same ≈400-byte outcome events (the contract's `Event`: ts, name, unit_id,
assignment_unit, event_id, value, ids, properties, flag_key, variation, trace_id) go
  (a) to `ramplight serve` in its own process, as 500-event POST /ingest/batch requests over
      several keep-alive connections on 127.0.0.1, fsync on (the default): acknowledged/s
      (the server judges a batch in its ingestion workers while a core is spare);
  (b) …until they are all loaded in the DuckDB store (the report endpoint flushes the log):
      end-to-end loaded/s, checked by counting rows in the database afterwards;
  (c) the floor: DuckDB's NDJSON reader loading all of them from one file into a fresh
      `events` table of the same schema;
  (d) the naive baseline: one DuckDB transaction per 500-event request (Python objects →
      Arrow, and executemany on a sample), in process, without HTTP.
  (e) OTLP spans to the same server: protobuf ExportTraceServiceRequests of 512 spans (traces of
      a root and seven children with GenAI attributes, as an agent emits them) to /v1/traces
      over the same connections, acknowledged durably, then loaded (target: 50,000 spans/s);
      the server decodes them in its span-decoding workers (RAMPLIGHT_OTLP_WORKERS; the
      server's CPU time counts theirs).
Request bodies are encoded before the clock starts, so the load generator stays light.
"""

from __future__ import annotations

import argparse
import http.client
import itertools
import json
import os
import random
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import msgspec
import pyarrow as pa
from _common import RamplightServer, load_average, loopback_only, machine, peak_rss_mb, rate, ratio
from rich.console import Console
from rich.table import Table

from ramplight.store.duckdb import DuckDBStore
from ramplight.store.duckdb.store import EVIDENCE_COLUMNS

FLAG_KEY = "support_assistant_profile"
BATCH = 500
TARGET_ACK_PER_S = 150_000
SPAN_BATCH = 512
TARGET_SPANS_PER_S = 50_000
NAMES = ("resolved_without_escalation", "csat_score", "handoff_to_human", "answer_latency_ms")
CHANNELS = ("chat", "email", "voice")
PLANS = ("free", "pro", "team", "enterprise")
MODELS = ("stable", "candidate")

console = Console(width=None if sys.stdout.isatty() else 132)


# -- data ---------------------------------------------------------------------------------


def make_events(n: int, rng: random.Random, now: datetime, units: int) -> list[dict[str, Any]]:
    """`n` outcome events about `units` conversations, timestamped over the last six hours."""
    events = []
    for _ in range(n):
        unit = rng.randrange(1, units + 1)
        variation = "candidate" if rng.random() < 0.2 else "control"
        name = rng.choice(NAMES)
        ts = now - timedelta(seconds=rng.uniform(60, 6 * 3600))
        events.append(
            {
                "ts": ts.isoformat().replace("+00:00", "Z"),
                "name": name,
                "unit_id": f"conv_{unit:07d}",
                "assignment_unit": "conversation",
                "event_id": uuid.UUID(int=rng.getrandbits(128)).hex,
                "value": round(rng.uniform(0, 2000), 3)
                if name == "answer_latency_ms"
                else float(rng.random() < 0.7),
                "flag_key": FLAG_KEY,
                "variation": variation,
                "trace_id": uuid.UUID(int=rng.getrandbits(128)).hex,
                "ids": {"user": f"user_{rng.randrange(10**6):06d}"},
                "properties": {
                    "channel": rng.choice(CHANNELS),
                    "plan": rng.choice(PLANS),
                    "model_route": MODELS[variation == "candidate"],
                    "tokens": rng.randrange(50, 4000),
                },
            }
        )
    return events


def generate(n: int, ndjson: Path, seed: int = 11) -> list[bytes]:
    """Encode `n` events as 500-event request bodies, and write the same events to `ndjson`
    as the server's log holds them (stamped with environment and received_at)."""
    rng = random.Random(seed)
    now = datetime.now(UTC)
    received = now.isoformat().replace("+00:00", "Z")
    encoder = msgspec.json.Encoder()
    bodies = []
    with ndjson.open("wb") as handle:
        for _ in range(n // BATCH):
            events = make_events(BATCH, rng, now, units=max(1, n // 4))
            bodies.append(encoder.encode({"events": events}))
            handle.write(
                encoder.encode_lines(
                    [{**e, "environment": "production", "received_at": received} for e in events]
                )
            )
    return bodies


@dataclass
class HttpResult:
    acked: int
    ack_seconds: float
    loaded_seconds: float
    loaded_rows: int
    p50_ms: float
    p99_ms: float
    server_rss_mb: float
    server_cpu_s: float
    readout_seconds: float
    client_cpu_s: float
    pushed_back: int
    ack_server_cpu_s: float
    ack_loop_cpu_s: float
    ack_workers_cpu_s: float
    spans_seconds: float = 0.0
    spans_loaded_seconds: float = 0.0
    span_rows: int = 0
    span_p50_ms: float = 0.0
    span_server_cpu_s: float = 0.0
    span_loop_cpu_s: float = 0.0
    span_workers_cpu_s: float = 0.0


def post_all(url: str, sdk_key: str, bodies: list[bytes], connections: int) -> tuple[int, list[float], int]:
    """POST every body over `connections` keep-alive connections; all must answer 200 in the end.
    A 503 (backpressure: nothing was taken) is waited out for its Retry-After and sent again,
    as the SDK does; the 503s are counted and the wait stays inside the acknowledged time."""
    host, port = url.removeprefix("http://").split(":")
    headers = {"Authorization": f"Bearer {sdk_key}", "Content-Type": "application/json"}
    counter = itertools.count()
    latencies: list[float] = []
    acked = [0] * connections
    pushed_back = [0] * connections
    errors: list[str] = []

    def worker(slot: int) -> None:
        conn = http.client.HTTPConnection(host, int(port), timeout=300)
        try:
            while not errors:
                i = next(counter)
                if i >= len(bodies):
                    return
                while True:
                    started = time.perf_counter()
                    conn.request("POST", "/ingest/batch", body=bodies[i], headers=headers)
                    response = conn.getresponse()
                    data = response.read()
                    latencies.append(time.perf_counter() - started)
                    if response.status != 503:
                        break
                    pushed_back[slot] += 1
                    time.sleep(float(response.getheader("Retry-After") or 1))
                if response.status != 200:
                    errors.append(f"request {i}: HTTP {response.status}: {data[:300]!r}")
                    return
                answer = json.loads(data)
                if answer["rejected"]:
                    errors.append(f"request {i}: rejected items: {answer['rejected'][:3]}")
                    return
                acked[slot] += answer["accepted"]["events"]
        except Exception as exc:  # surfaced below; the benchmark must not hang
            errors.append(f"connection {slot}: {exc!r}")
        finally:
            conn.close()

    threads = [threading.Thread(target=worker, args=(s,), daemon=True) for s in range(connections)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=600)
    if errors or any(t.is_alive() for t in threads):
        raise RuntimeError("ingestion failed: " + "; ".join(errors[:3]))
    return sum(acked), latencies, sum(pushed_back)


def generate_spans(n: int, seed: int = 13) -> list[bytes]:
    """`n` spans as protobuf request bodies of SPAN_BATCH spans: traces of 8 (a conversation root,
    retrieval, model calls and tool calls), the root carrying the flag and unit attributes."""
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
    from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
    from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span

    rng = random.Random(seed)
    start = time.time_ns() - 3_600_000_000_000

    def attr(key: str, value: str | int) -> KeyValue:
        any_value = AnyValue(string_value=value) if isinstance(value, str) else AnyValue(int_value=value)
        return KeyValue(key=key, value=any_value)

    names = ("retrieve", "chat", "chat", "execute_tool", "chat", "execute_tool", "chat")
    bodies = []
    resource_attrs = [attr("service.name", "support-assistant")]
    for first in range(0, n, SPAN_BATCH):
        spans = []
        for i in range(first, min(first + SPAN_BATCH, n)):
            trace, position = divmod(i, 8)
            trace_id = (trace + 1).to_bytes(16, "big")
            begin = start + trace * 1_000_000 + position * 50_000
            span = Span(
                trace_id=trace_id,
                span_id=(i + 1).to_bytes(8, "big"),
                name="conversation" if position == 0 else names[position - 1],
                kind=Span.SPAN_KIND_SERVER if position == 0 else Span.SPAN_KIND_CLIENT,
                start_time_unix_nano=begin,
                end_time_unix_nano=begin + rng.randrange(5_000_000, 900_000_000),
            )
            if position:
                span.parent_span_id = (trace * 8 + 1).to_bytes(8, "big")
                span.attributes.extend(
                    [attr("gen_ai.operation.name", "chat"), attr("gen_ai.request.model", "gpt-5-mini"),
                     attr("gen_ai.usage.input_tokens", rng.randrange(200, 4000)),
                     attr("gen_ai.usage.output_tokens", rng.randrange(20, 800))]
                )  # fmt: skip
            else:
                span.attributes.extend(
                    [attr("feature_flag.key", FLAG_KEY), attr("feature_flag.context.id", f"conv_{trace}"),
                     attr("feature_flag.result.variant", "candidate" if trace % 5 == 0 else "control")]
                )  # fmt: skip
            spans.append(span)
        request = ExportTraceServiceRequest(
            resource_spans=[
                ResourceSpans(resource={"attributes": resource_attrs}, scope_spans=[ScopeSpans(spans=spans)])
            ]
        )
        bodies.append(request.SerializeToString())
    return bodies


def post_spans(url: str, sdk_key: str, bodies: list[bytes], connections: int) -> tuple[float, list[float]]:
    """POST every OTLP body; each must be taken whole (no partial success). Seconds, latencies."""
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse

    host, port = url.removeprefix("http://").split(":")
    headers = {"Authorization": f"Bearer {sdk_key}", "Content-Type": "application/x-protobuf"}
    counter = itertools.count()
    latencies: list[float] = []
    errors: list[str] = []

    def worker() -> None:
        conn = http.client.HTTPConnection(host, int(port), timeout=300)
        try:
            while not errors:
                i = next(counter)
                if i >= len(bodies):
                    return
                while True:
                    sent = time.perf_counter()
                    conn.request("POST", "/v1/traces", body=bodies[i], headers=headers)
                    response = conn.getresponse()
                    data = response.read()
                    latencies.append(time.perf_counter() - sent)
                    if response.status != 503:
                        break
                    time.sleep(float(response.getheader("Retry-After") or 1))
                answer = ExportTraceServiceResponse.FromString(data) if response.status == 200 else None
                if answer is None or answer.partial_success.rejected_spans:
                    errors.append(f"request {i}: HTTP {response.status}: {data[:300]!r}")
        except Exception as exc:
            errors.append(repr(exc))
        finally:
            conn.close()

    started = time.perf_counter()
    threads = [threading.Thread(target=worker, daemon=True) for _ in range(connections)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=600)
    if errors:
        raise RuntimeError("span ingestion failed: " + "; ".join(errors[:3]))
    return time.perf_counter() - started, latencies


def run_http(
    tmp: Path,
    bodies: list[bytes],
    connections: int,
    server_type: type[RamplightServer] = RamplightServer,
    span_bodies: list[bytes] | None = None,
) -> HttpResult:
    db = tmp / "served.duckdb"
    server = server_type(db, tmp / "server.log")
    try:
        doc = {
            "key": FLAG_KEY,
            "type": "json",
            "assignment_unit": "conversation",
            "variations": [
                {"key": "control", "value": {"model_route": "stable"}},
                {"key": "candidate", "value": {"model_route": "candidate"}},
            ],
            "environments": {
                "production": {
                    "default_variation": "control",
                    "off_variation": "control",
                    "rollout": {"weights": {"control": 80, "candidate": 20}},
                }
            },
        }
        server.admin.post("/api/flags", json=doc).raise_for_status()
        sdk_key = server.admin.post(
            "/api/keys", json={"kind": "sdk", "name": "bench", "environment": "production"}
        ).json()["key"]

        # The first request is sent before the clock starts: it may start the server's ingestion
        # workers (two processes importing Ramplight), once in a server's life.
        first, _, _ = post_all(server.url, sdk_key, bodies[:1], 1)
        cpu_before, loop_before = server.cpu_seconds(), server.loop_cpu_seconds()
        workers_before = server.workers_cpu_seconds()
        own_before = os.times()
        started = time.perf_counter()
        acked, latencies, pushed_back = post_all(server.url, sdk_key, bodies[1:], connections)
        acked += first
        acked_at = time.perf_counter()
        own_after = os.times()
        ack_server_cpu = server.cpu_seconds() - cpu_before
        ack_loop_cpu = server.loop_cpu_seconds() - loop_before
        ack_workers_cpu = server.workers_cpu_seconds() - workers_before
        client_cpu = (own_after.user - own_before.user) + (own_after.system - own_before.system)
        # The report endpoint seals the open log segment and waits until everything
        # acknowledged is loaded (then computes a readout: no exposures here, so it is quick).
        report = f"/api/flags/{FLAG_KEY}/report"
        server.admin.get(report, params={"environment": "production"}).raise_for_status()
        loaded_at = time.perf_counter()
        server.admin.get(report, params={"environment": "production"}).raise_for_status()
        readout_seconds = time.perf_counter() - loaded_at  # the same readout, nothing left to load
        server_cpu = server.cpu_seconds() - cpu_before
        server_rss = server.peak_rss()
        spans_seconds = spans_loaded_seconds = span_server_cpu = span_loop_cpu = span_workers_cpu = 0.0
        span_latencies: list[float] = []
        if span_bodies:
            # The first request imports the OTLP protobuf modules: it is sent before the clock starts.
            post_spans(server.url, sdk_key, span_bodies[:1], 1)
            cpu_before, loop_before = server.cpu_seconds(), server.loop_cpu_seconds()
            workers_before = server.workers_cpu_seconds()
            spans_seconds, span_latencies = post_spans(server.url, sdk_key, span_bodies[1:], connections)
            span_server_cpu = server.cpu_seconds() - cpu_before
            span_loop_cpu = server.loop_cpu_seconds() - loop_before
            span_workers_cpu = server.workers_cpu_seconds() - workers_before
            began = time.perf_counter()
            server.admin.get(report, params={"environment": "production"}).raise_for_status()
            spans_loaded_seconds = spans_seconds + time.perf_counter() - began
    finally:
        server.stop()
    store = DuckDBStore(db, read_only=True)
    try:
        rows = store.count("events")
        span_rows = store.count("spans")
    finally:
        store.close()
    span_latencies.sort()
    latencies.sort()
    return HttpResult(
        acked=acked,
        ack_seconds=acked_at - started,
        loaded_seconds=loaded_at - started,
        loaded_rows=rows,
        p50_ms=latencies[len(latencies) // 2] * 1000 if latencies else 0.0,
        p99_ms=latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))] * 1000 if latencies else 0.0,
        server_rss_mb=server_rss,
        server_cpu_s=server_cpu,
        readout_seconds=readout_seconds,
        client_cpu_s=client_cpu,
        pushed_back=pushed_back,
        ack_server_cpu_s=ack_server_cpu,
        ack_loop_cpu_s=ack_loop_cpu,
        ack_workers_cpu_s=ack_workers_cpu,
        spans_seconds=spans_seconds,
        spans_loaded_seconds=spans_loaded_seconds,
        span_rows=span_rows,
        span_p50_ms=span_latencies[len(span_latencies) // 2] * 1000 if span_latencies else 0.0,
        span_server_cpu_s=span_server_cpu,
        span_loop_cpu_s=span_loop_cpu,
        span_workers_cpu_s=span_workers_cpu,
    )


# -- DuckDB alone ---------------------------------------------------------------------------


def fresh_store(path: Path) -> DuckDBStore:
    # Runs the migrations (the same `events` schema as the server's); reads files beside it.
    return DuckDBStore(path, allowed_directories=(path.parent,))


def run_ndjson_floor(tmp: Path, ndjson: Path, variant: str) -> tuple[float, int]:
    """`plain`: INSERT into the store's `events` table (the floor); `loader`: the log loader's own
    de-duplicating load of the same file; `keyed`: INSERT OR IGNORE into a table with a PRIMARY
    KEY on event_id (the index-based de-duplication a user might reach for)."""
    store = fresh_store(tmp / f"floor-{variant}.duckdb")
    try:
        con = store.connection()
        columns = "{" + ", ".join(f"'{k}': '{v}'" for k, v in EVIDENCE_COLUMNS["events"].items()) + "}"
        verb = "INSERT OR IGNORE INTO" if variant == "keyed" else "INSERT INTO"
        if variant == "keyed":
            con.execute("DROP TABLE events")
            con.execute(
                "CREATE TABLE events ("
                + ", ".join(f"{k} {v}" for k, v in EVIDENCE_COLUMNS["events"].items())
                + ", PRIMARY KEY (event_id))"
            )
        if variant == "loader":
            started = time.perf_counter()
            store.load_segment("bench-000001.seg", {"events": ndjson})
            return time.perf_counter() - started, store.count("events")
        started = time.perf_counter()
        con.execute(
            f"{verb} events BY NAME SELECT * FROM read_json(?, format = 'newline_delimited', columns = {columns})",
            [str(ndjson)],
        )
        elapsed = time.perf_counter() - started
        return elapsed, store.count("events")
    finally:
        store.close()


ARROW_SCHEMA = pa.schema(
    [
        ("event_id", pa.string()),
        ("ts", pa.timestamp("us", tz="UTC")),
        ("received_at", pa.timestamp("us", tz="UTC")),
        ("environment", pa.string()),
        ("name", pa.string()),
        ("unit_id", pa.string()),
        ("assignment_unit", pa.string()),
        ("ids", pa.string()),
        ("value", pa.float64()),
        ("properties", pa.string()),
        ("flag_key", pa.string()),
        ("variation", pa.string()),
        ("trace_id", pa.string()),
    ]
)


def naive_rows(body: bytes, received: datetime) -> list[dict[str, Any]]:
    """What a hand-written endpoint does with one request: parse, stamp, flatten JSON fields."""
    rows = []
    for e in json.loads(body)["events"]:
        rows.append(
            {
                "event_id": e.get("event_id") or uuid.uuid4().hex,
                "ts": datetime.fromisoformat(e["ts"]),
                "received_at": received,
                "environment": "production",
                "name": e["name"],
                "unit_id": e["unit_id"],
                "assignment_unit": e["assignment_unit"],
                "ids": json.dumps(e["ids"]) if e.get("ids") is not None else None,
                "value": e.get("value"),
                "properties": json.dumps(e["properties"]) if e.get("properties") is not None else None,
                "flag_key": e.get("flag_key"),
                "variation": e.get("variation"),
                "trace_id": e.get("trace_id"),
            }
        )
    return rows


def run_naive_arrow(tmp: Path, bodies: list[bytes]) -> tuple[float, int]:
    store = fresh_store(tmp / "naive-arrow.duckdb")
    try:
        con: duckdb.DuckDBPyConnection = store.connection()
        started = time.perf_counter()
        for body in bodies:
            table = pa.Table.from_pylist(naive_rows(body, datetime.now(UTC)), schema=ARROW_SCHEMA)
            con.execute("BEGIN TRANSACTION")
            con.register("batch_rows", table)
            con.execute("INSERT INTO events BY NAME SELECT * FROM batch_rows")
            con.unregister("batch_rows")
            con.execute("COMMIT")
        elapsed = time.perf_counter() - started
        return elapsed, store.count("events")
    finally:
        store.close()


def run_naive_executemany(tmp: Path, bodies: list[bytes]) -> tuple[float, int]:
    store = fresh_store(tmp / "naive-executemany.duckdb")
    names = [f.name for f in ARROW_SCHEMA]
    sql = f"INSERT INTO events ({', '.join(names)}) VALUES ({', '.join('?' for _ in names)})"
    try:
        con = store.connection()
        started = time.perf_counter()
        for body in bodies:
            rows = [[row[k] for k in names] for row in naive_rows(body, datetime.now(UTC))]
            con.execute("BEGIN TRANSACTION")
            con.executemany(sql, rows)
            con.execute("COMMIT")
        elapsed = time.perf_counter() - started
        return elapsed, store.count("events")
    finally:
        store.close()


# -- main ---------------------------------------------------------------------------------


def span_rows(served: HttpResult, n_spans: int) -> list[tuple[str, int, float, str]]:
    timed = n_spans - SPAN_BATCH  # the first request is sent before the clock starts
    return [
        (
            "(e) OTLP spans (protobuf), acknowledged",
            timed,
            served.spans_seconds,
            f"{SPAN_BATCH}-span requests to /v1/traces; request p50 {served.span_p50_ms:.0f} ms (rate in spans/s)",
        ),
        (
            "(e) OTLP spans, loaded in DuckDB",
            served.span_rows - SPAN_BATCH,
            served.spans_loaded_seconds,
            "counted afterwards",
        ),
    ]


def report_events(served: HttpResult, n: int) -> None:
    """Where (a)'s CPU time goes while acknowledging: the whole server (workers, log writer and
    loading included), its event loop's thread, and the event-judging workers."""
    n -= BATCH  # the first request is sent before the clock starts
    loop_us = served.ack_loop_cpu_s / n * 1e6
    console.print(
        f"While acknowledging events: server {served.ack_server_cpu_s / n * 1e6:.1f} CPU-µs/event, of "
        f"which the event loop's thread {loop_us:.1f} ({served.ack_loop_cpu_s / served.ack_seconds:.0%} of "
        f"a core; at a whole core it would take {rate(1e6 / loop_us)}), the workers "
        f"{served.ack_workers_cpu_s / n * 1e6:.1f} ({served.ack_workers_cpu_s / served.ack_seconds:.0%} of a core)."
    )


def report_spans(served: HttpResult, n_spans: int) -> None:
    """Where (e)'s CPU time goes: the event loop's thread (the bound when it decodes every span),
    the span-decoding workers, and the rest (log writer, loading into the store, HTTP threads)."""
    timed = n_spans - SPAN_BATCH
    loop_us = max(served.span_loop_cpu_s / timed * 1e6, 1e-3)  # a tiny run may see no tick
    workers_us = served.span_workers_cpu_s / timed * 1e6
    console.print(
        f"While acknowledging spans: server {served.span_server_cpu_s / timed * 1e6:.1f} CPU-µs/span, of "
        f"which the event loop's thread {loop_us:.1f} ({served.span_loop_cpu_s / served.spans_seconds:.0%} of "
        f"a core; at a whole core it would take {rate(1e6 / loop_us)}), the span-decoding workers "
        f"{workers_us:.1f} ({served.span_workers_cpu_s / served.spans_seconds:.0%} of a core)."
    )
    span_rate = timed / served.spans_seconds
    met = "[green]met[/]" if span_rate >= TARGET_SPANS_PER_S else "[red]missed[/]"
    console.print(
        f"Target: ≥ {TARGET_SPANS_PER_S:,} OTLP spans/s acknowledged and durable — {met} ({rate(span_rate)})."
    )


def run_spans_only(connections: int, n_spans: int) -> None:
    console.print(
        f"[bold]OTLP ingestion[/] of {n_spans:,} spans in {SPAN_BATCH}-span requests — {machine()}, "
        f"{load_average()}"
    )
    with tempfile.TemporaryDirectory(prefix="ramplight-bench-ingest-") as name:
        served = run_http(Path(name), [], connections, span_bodies=generate_spans(n_spans))
    if served.span_rows != n_spans:
        raise RuntimeError(f"loaded {served.span_rows:,} of {n_spans:,} spans")
    table = Table(title=f"OTLP ingestion of {n_spans:,} spans, {connections} connections over 127.0.0.1")
    table.add_column("path")
    for column in ("spans", "seconds", "spans/s"):
        table.add_column(column, justify="right")
    table.add_column("notes")
    for label, count, seconds, notes in span_rows(served, n_spans):
        table.add_row(label, f"{count:,}", f"{seconds:.2f}", rate(count / seconds), notes)
    console.print(table)
    console.print(f"At the end: {load_average()}.")
    report_spans(served, n_spans)


def run_events_only(n: int, connections: int) -> None:
    """(a) and (b) alone: the server's path, for comparing two versions of it run after run."""
    console.print(f"[bold]Ingestion[/] of {n:,} events (only (a) and (b)) — {machine()}, {load_average()}")
    with tempfile.TemporaryDirectory(prefix="ramplight-bench-ingest-") as name:
        tmp = Path(name)
        bodies = generate(n, tmp / "events.ndjson")
        served = run_http(tmp, bodies, connections)
    if served.acked != n or served.loaded_rows != n:
        raise RuntimeError(f"acknowledged {served.acked:,} and loaded {served.loaded_rows:,} of {n:,}")
    timed = n - BATCH
    console.print(
        f"(a) acknowledged {rate(timed / served.ack_seconds)} (p50 {served.p50_ms:.0f} ms, "
        f"{served.pushed_back:,} answered 503); (b) loaded {rate((served.loaded_rows - BATCH) / served.loaded_seconds)}"
    )
    console.print(f"At the end: {load_average()}.")
    report_events(served, n)


def run(n: int, connections: int, executemany_events: int, n_spans: int) -> None:
    console.print(
        f"[bold]Ingestion[/] of {n:,} events in {BATCH}-event requests — {machine()}, {load_average()}"
    )
    with tempfile.TemporaryDirectory(prefix="ramplight-bench-ingest-") as name:
        tmp = Path(name)
        ndjson = tmp / "events.ndjson"
        bodies = generate(n, ndjson)
        body_bytes = sum(len(b) for b in bodies)
        console.print(
            f"{len(bodies):,} request bodies, {body_bytes / n:.0f} bytes/event on average, "
            f"{connections} connections over 127.0.0.1, fsync on"
        )

        span_bodies = generate_spans(n_spans)
        served = run_http(tmp, bodies, connections, span_bodies=span_bodies)
        if served.acked != n or served.loaded_rows != n:
            raise RuntimeError(f"acknowledged {served.acked:,} and loaded {served.loaded_rows:,} of {n:,}")
        if served.span_rows != n_spans:
            raise RuntimeError(f"loaded {served.span_rows:,} of {n_spans:,} spans")
        floor_s, floor_rows = run_ndjson_floor(tmp, ndjson, "plain")
        loader_s, loader_rows = run_ndjson_floor(tmp, ndjson, "loader")
        keyed_s, keyed_rows = run_ndjson_floor(tmp, ndjson, "keyed")
        arrow_s, arrow_rows = run_naive_arrow(tmp, bodies)
        sample = bodies[: max(1, executemany_events // BATCH)]
        many_s, many_rows = run_naive_executemany(tmp, sample)
        for label, stored, expected in (
            ("NDJSON floor", floor_rows, n),
            ("Ramplight loader", loader_rows, n),
            ("NDJSON keyed OR IGNORE", keyed_rows, n),
            ("naive Arrow", arrow_rows, n),
            ("naive executemany", many_rows, len(sample) * BATCH),
        ):
            if stored != expected:
                raise RuntimeError(f"{label} stored {stored:,} rows, expected {expected:,}")

    many = len(sample) * BATCH
    timed = n - BATCH  # the first request is sent before the clock starts
    rows: list[tuple[str, int, float, str]] = [
        (
            "(a) Ramplight HTTP, acknowledged (durable)",
            timed,
            served.ack_seconds,
            f"request p50 {served.p50_ms:.0f} ms, p99 {served.p99_ms:.0f} ms; "
            f"{served.pushed_back:,} answered 503 (backpressure) and resent",
        ),
        (
            "(b) Ramplight HTTP, loaded in DuckDB",
            served.loaded_rows - BATCH,
            served.loaded_seconds,
            f"+{served.loaded_seconds - served.ack_seconds:.2f} s after the last ack "
            f"(incl. a {served.readout_seconds:.2f} s readout)",
        ),
        ("(c) DuckDB read_json → events (floor)", n, floor_s, "one file, one INSERT"),
        ("    Ramplight's de-duplicating load", n, loader_s, "store.load_segment: what the log loader runs"),
        ("    same, INSERT OR IGNORE + PRIMARY KEY", n, keyed_s, "de-duplication by an event_id index"),
        ("(d) naive: Arrow, 1 txn/request", n, arrow_s, "in process, no HTTP"),
        ("(d) naive: executemany, 1 txn/request", many, many_s, "in process, no HTTP; a sample"),
        *span_rows(served, n_spans),
    ]
    floor = n / floor_s
    table = Table(
        title=f"Ingestion of {n:,} ≈{body_bytes / n:.0f}-byte events (ratio vs DuckDB's NDJSON loader)"
    )
    table.add_column("path")
    for column in ("events", "seconds", "events/s", "vs floor"):
        table.add_column(column, justify="right")
    table.add_column("notes")
    for label, count, seconds, notes in rows:
        table.add_row(
            label, f"{count:,}", f"{seconds:.2f}", rate(count / seconds), ratio(count / seconds, floor), notes
        )
    console.print(table)
    console.print(
        f"Server process: peak RSS {served.server_rss_mb:.0f} MiB; {served.server_cpu_s:.1f} CPU-s from the "
        f"first timed request until loaded ({served.server_cpu_s / timed * 1e6:.1f} CPU-µs/event). "
        f"Load generator: {served.client_cpu_s:.2f} CPU-s while sending ({served.client_cpu_s / timed * 1e6:.1f} "
        f"CPU-µs/event, mostly loopback TCP in the kernel); peak RSS {peak_rss_mb():.0f} MiB "
        "(it holds every request body)."
    )
    console.print(f"At the end: {load_average()}.")
    report_events(served, n)
    acked_rate = timed / served.ack_seconds
    met = "[green]met[/]" if acked_rate >= TARGET_ACK_PER_S else "[red]missed[/]"
    console.print(
        f"Target: ≥ {TARGET_ACK_PER_S:,} events/s acknowledged and durable — {met} ({rate(acked_rate)})."
    )
    report_spans(served, n_spans)


def main() -> None:
    loopback_only()
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="50,000 events: a smoke run")
    parser.add_argument("--events", type=int, help="number of events (default 1,000,000)")
    parser.add_argument("--connections", type=int, default=8, help="concurrent HTTP connections")
    parser.add_argument("--spans", type=int, help="number of OTLP spans (default 512,000; quick 25,600)")
    parser.add_argument(
        "--otlp-workers",
        type=int,
        help="the server's ingestion workers (RAMPLIGHT_OTLP_WORKERS; default: the server's own)",
    )
    parser.add_argument(
        "--spans-only", action="store_true", help="only (e): OTLP spans, no events or anchors"
    )
    parser.add_argument(
        "--events-only", action="store_true", help="only (a) and (b): the server's path, no anchors or spans"
    )
    args = parser.parse_args()
    if args.otlp_workers is not None:
        os.environ["RAMPLIGHT_OTLP_WORKERS"] = str(args.otlp_workers)  # passed to the server (_common)
    n = args.events or (50_000 if args.quick else 1_000_000)
    n -= n % BATCH
    spans = max(args.spans or (25_600 if args.quick else 512_000), 2 * SPAN_BATCH)
    if args.spans_only:
        run_spans_only(args.connections, spans)
        return
    if args.events_only:
        run_events_only(n, args.connections)
        return
    run(n, args.connections, executemany_events=min(n, 1_000 if args.quick else 10_000), n_spans=spans)


if __name__ == "__main__":
    main()
