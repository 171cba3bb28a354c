"""OTLP/HTTP intake: the real OpenTelemetry SDK and its OTLP exporters (protobuf, gzip) send spans
to a real server; they land in `spans` joined to the flag, variation and unit, with prompt and
completion text dropped, and a span metric reads them out per variation. OTLP/JSON with hex ids,
partial success, re-exports and malformed requests are checked against the same server."""

from __future__ import annotations

import gzip
import json
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from opentelemetry.exporter.otlp.proto.http import Compression
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.trace import Status, StatusCode

from ramplight.store.duckdb import DuckDBStore
from tests.factories import RunningServer

FLAG = "support_assistant_profile"


def _provider(server: RunningServer, key: str, compression: Compression) -> TracerProvider:
    exporter = OTLPSpanExporter(
        endpoint=f"{server.url}/v1/traces",
        headers={"Authorization": f"Bearer {key}"},
        compression=compression,
    )
    provider = TracerProvider(resource=Resource.create({"service.name": "support-assistant"}))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider


def _conversation(provider: TracerProvider, unit: str, variation: str, output_tokens: int) -> None:
    tracer = provider.get_tracer("support")
    with tracer.start_as_current_span("conversation") as root:
        root.set_attribute("feature_flag.key", FLAG)
        root.set_attribute("feature_flag.result.variant", variation)
        root.set_attribute("feature_flag.context.id", unit)
        with tracer.start_as_current_span("chat") as chat:
            chat.set_attributes(
                {
                    "feature_flag.context.id": unit,
                    "feature_flag.key": FLAG,
                    "feature_flag.variant": variation,  # the older name
                    "gen_ai.operation.name": "chat",
                    "gen_ai.provider.name": "openai",
                    "gen_ai.request.model": "gpt-5-mini",
                    "gen_ai.response.model": "gpt-5-mini-2026-08-07",
                    "gen_ai.usage.input_tokens": 1200,
                    "gen_ai.usage.output_tokens": output_tokens,
                    "gen_ai.input.messages": json.dumps([{"role": "user", "content": "my card number is …"}]),
                    "gen_ai.output.messages": json.dumps([{"role": "assistant", "content": "…"}]),
                }
            )
            if output_tokens > 500:
                chat.set_status(Status(StatusCode.ERROR, "upstream timeout"))


def _stored_spans(server: RunningServer) -> list[dict[str, Any]]:
    server.thread.stop()
    store = DuckDBStore(server.settings.db, read_only=True)
    try:
        names, rows = store.read("SELECT * FROM spans ORDER BY start_ts, name")
        return [dict(zip(names, row, strict=True)) for row in rows]
    finally:
        store.close()


def test_the_opentelemetry_sdk_exports_spans_that_join_the_readout(server: RunningServer) -> None:
    server.create_flag()
    metric = {"type": "span", "span_field": "output_tokens", "span_name": "chat", "aggregation": "sum"}
    assert server.admin.put("/api/metrics/output_tokens", json=metric).status_code == 200
    key = server.sdk_key()
    start = datetime.now(UTC)
    exposures = [
        {"ts": (start + timedelta(milliseconds=i)).isoformat(), "flag_key": FLAG, "assignment_unit": "conversation",
         "unit_id": f"conv-{i}", "assigned_variation": v, "served_variation": v}
        for i, v in enumerate(["control", "candidate"] * 5)
    ]  # fmt: skip
    sent = httpx.post(
        f"{server.url}/ingest/batch",
        json={"exposures": exposures},
        headers={"Authorization": f"Bearer {key}"},
    )
    assert sent.json()["accepted"]["exposures"] == 10
    time.sleep(0.01)  # spans start after the exposures
    protobuf = _provider(server, key, Compression.NoCompression)
    gzipped = _provider(server, key, Compression.Gzip)
    for i, exposure in enumerate(exposures):
        tokens = 300 + 10 * i + (400 if exposure["assigned_variation"] == "candidate" else 0)
        _conversation(
            protobuf if i % 2 else gzipped, exposure["unit_id"], exposure["assigned_variation"], tokens
        )
    protobuf.shutdown()
    gzipped.shutdown()

    report = server.admin.get(f"/api/flags/{FLAG}/report", params={"metric": "output_tokens"}).json()
    sums = {v["variation"]: v for v in report["metrics"][0]["variations"]}
    assert sums["control"]["units"] == sums["candidate"]["units"] == 5
    assert sums["control"]["mean"] == sum(300 + 10 * i for i in range(0, 10, 2)) / 5
    assert sums["candidate"]["mean"] == sum(700 + 10 * i for i in range(1, 10, 2)) / 5
    status = server.admin.get("/api/ingest/status").json()
    assert status["span_attributes_dropped"] == 20  # two content attributes on each chat span

    spans = _stored_spans(server)
    assert len(spans) == 20
    chat = next(s for s in spans if s["name"] == "chat" and s["unit_id"] == "conv-1")
    root = next(s for s in spans if s["name"] == "conversation" and s["unit_id"] == "conv-1")
    assert chat["parent_span_id"] == root["span_id"] and chat["trace_id"] == root["trace_id"]
    assert len(chat["trace_id"]) == 32 and len(chat["span_id"]) == 16
    assert (chat["flag_key"], chat["variation"], chat["environment"]) == (FLAG, "candidate", "production")
    assert (chat["gen_ai_model"], chat["input_tokens"], chat["output_tokens"]) == (
        "gpt-5-mini-2026-08-07",
        1200,
        710,
    )
    assert (chat["kind"], chat["status"], chat["service"]) == ("internal", "error", "support-assistant")
    assert root["status"] == "unset" and root["duration_ms"] >= chat["duration_ms"] > 0
    attributes = json.loads(chat["attributes"])
    assert "gen_ai.input.messages" not in attributes and "gen_ai.output.messages" not in attributes
    assert attributes["gen_ai.operation.name"] == "chat"
    assert attributes["resource.service.name"] == "support-assistant"
    assert all("card number" not in json.dumps(s, default=str) for s in spans)


def _json_span(name: str, trace: str, span: str, **extra: Any) -> dict[str, Any]:
    now = time.time_ns()
    return {
        "traceId": trace,
        "spanId": span,
        "name": name,
        "kind": 3,
        "startTimeUnixNano": str(now),
        "endTimeUnixNano": str(now + 25_000_000),
        "attributes": [
            {"key": "feature_flag.context.id", "value": {"stringValue": "conv-7"}},
            {"key": "gen_ai.usage.output_tokens", "value": {"intValue": "42"}},
            {"key": "gen_ai.usage.cost", "value": {"doubleValue": 0.0125}},
        ],
        "status": {"code": "STATUS_CODE_OK"},
        **extra,
    }


def _json_request(*spans: dict[str, Any]) -> dict[str, Any]:
    resource = {"attributes": [{"key": "service.name", "value": {"stringValue": "router"}}]}
    return {
        "resourceSpans": [
            {"resource": resource, "scopeSpans": [{"scope": {"name": "t"}, "spans": list(spans)}]}
        ]
    }


def test_otlp_json_with_partial_success_re_exports_and_bad_requests(server: RunningServer) -> None:
    key = server.sdk_key()
    url = f"{server.url}/v1/traces"
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    good = _json_span("route", "5b8efff798038103d269b633813fc60c", "eee19b7ec3c1b174")
    bad_id = _json_span("broken", "not-hex", "eee19b7ec3c1b175")
    backwards = _json_span("backwards", "5b8efff798038103d269b633813fc60c", "eee19b7ec3c1b176")
    backwards["endTimeUnixNano"] = "1"
    body = json.dumps(_json_request(good, bad_id, backwards)).encode()
    answer = httpx.post(url, content=gzip.compress(body), headers={**headers, "Content-Encoding": "gzip"})
    assert answer.status_code == 200 and answer.headers["content-type"] == "application/json"
    partial = answer.json()["partialSuccess"]
    assert partial["rejectedSpans"] == "2"
    assert "'broken': traceId 'not-hex' is not hex" in partial["errorMessage"]
    assert "'backwards'" in partial["errorMessage"]
    # The same span exported again (a retrying exporter) is taken and stored once.
    again = httpx.post(url, content=json.dumps(_json_request(good)).encode(), headers=headers)
    assert again.status_code == 200 and again.json() == {}
    assert server.admin.get("/api/ingest/status").json()["spans_rejected"] == 2

    for content, extra, reason in (
        (
            b"\x0a\xff\xff\xff",
            {"Content-Type": "application/x-protobuf"},
            "not an OTLP ExportTraceServiceRequest",
        ),
        (b"{not json", {}, "not JSON"),
        (b'{"resourceSpans": {}}', {}, "resourceSpans: must be a list"),
        (body, {"Content-Encoding": "gzip"}, "the body is not"),
        (body, {"Content-Type": "text/plain"}, "send application/x-protobuf or application/json"),
        (body, {"Content-Encoding": "br"}, "send gzip or no encoding"),
    ):
        refused = httpx.post(url, content=content, headers={**headers, **extra})
        assert refused.status_code == 400, (content[:20], refused.text)
        assert reason in refused.json()["message"], refused.text
    bomb = gzip.compress(b"{" + b" " * (server.settings.max_batch_bytes + 10) + b"}")
    too_big = httpx.post(url, content=bomb, headers={**headers, "Content-Encoding": "gzip"})
    assert too_big.status_code == 413
    assert httpx.post(url, content=body, headers={"Content-Type": "application/json"}).status_code == 401

    spans = _stored_spans(server)
    assert [(s["name"], s["kind"], s["status"], s["service"]) for s in spans] == [
        ("route", "client", "ok", "router")
    ]
    (span,) = spans
    assert (span["unit_id"], span["output_tokens"], span["cost_usd"]) == ("conv-7", 42, 0.0125)
    assert span["duration_ms"] == 25.0


def test_flag_evaluations_and_evaluation_results_from_opentelemetry_become_evidence(
    server: RunningServer,
) -> None:
    from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
    from opentelemetry.sdk._logs import LoggerProvider
    from opentelemetry.sdk._logs.export import SimpleLogRecordProcessor

    server.create_flag()
    metric = {"type": "eval", "eval": "faithfulness", "evaluator": "llm_judge"}
    assert server.admin.put("/api/metrics/faithfulness", json=metric).status_code == 200
    key = server.sdk_key()
    time.sleep(0.01)  # records after the flag's first phase began
    logs = LoggerProvider(resource=Resource.create({"service.name": "support-assistant"}))
    exporter = OTLPLogExporter(endpoint=f"{server.url}/v1/logs", headers={"Authorization": f"Bearer {key}"})
    logs.add_log_record_processor(SimpleLogRecordProcessor(exporter))
    logger = logs.get_logger("openfeature")

    def evaluation(unit: str, variant: str | None, **extra: Any) -> None:
        attributes = {"feature_flag.key": FLAG, "feature_flag.context.id": unit,
                      "feature_flag.provider.name": "ramplight-test", **extra}  # fmt: skip
        if variant is not None:
            attributes["feature_flag.result.variant"] = variant
        logger.emit(event_name="feature_flag.evaluation", attributes=attributes)

    for i in range(6):
        evaluation(
            f"conv-{i}", "candidate" if i % 2 else "control", **{"feature_flag.result.reason": "split"}
        )
    evaluation("conv-90", "candidate", **{"error.type": "flag_not_found"})  # failed: not an exposure
    evaluation("conv-91", None)  # no variant: which variation ran is unknown
    evaluation("conv-92", "no-such-variation")  # the contract refuses it
    for i in range(6):
        logger.emit(
            event_name="gen_ai.evaluation.result",
            attributes={"gen_ai.evaluation.name": "faithfulness", "gen_ai.evaluation.score.value": 0.5 + i / 20,
                        "gen_ai.evaluation.score.label": "pass", "feature_flag.context.id": f"conv-{i}"},
        )  # fmt: skip
    logger.emit(event_name="gen_ai.evaluation.result", attributes={"gen_ai.evaluation.name": "faithfulness"})
    logger.emit(body="an ordinary application log line")
    logs.shutdown()

    # The span-event shape (current and older names) and a span of its own.
    provider = _provider(server, key, Compression.NoCompression)
    tracer = provider.get_tracer("support")
    with tracer.start_as_current_span("conversation") as root:
        root.set_attribute("feature_flag.context.id", "conv-10")
        root.add_event(
            "feature_flag.evaluation", {"feature_flag.key": FLAG, "feature_flag.result.variant": "candidate"}
        )
    with tracer.start_as_current_span("conversation") as root:
        root.set_attribute("feature_flag.context.id", "conv-11")
        root.add_event("feature_flag", {"feature_flag.key": FLAG, "feature_flag.variant": "control",
                                        "feature_flag.provider_name": "old-hook"})  # fmt: skip
    with tracer.start_as_current_span("feature_flag") as own:
        own.set_attributes({"feature_flag.key": FLAG, "feature_flag.result.variant": "control",
                            "feature_flag.context.id": "conv-12"})  # fmt: skip
    provider.shutdown()

    status = server.admin.get("/api/ingest/status").json()
    assert status["flag_evaluations_not_exposures"] == 4  # three evaluations and the scoreless result
    assert status["log_records_ignored"] == 1
    report = server.admin.get(f"/api/flags/{FLAG}/report", params={"metric": "faithfulness"}).json()
    assert report["data_quality"]["exposed_units"] == 9
    scores = {v["variation"]: v for v in report["metrics"][0]["variations"]}
    assert scores["control"]["units"] == scores["candidate"]["units"] == 3
    assert abs(scores["candidate"]["mean"] - (0.55 + 0.65 + 0.75) / 3) < 1e-12

    server.thread.stop()
    store = DuckDBStore(server.settings.db, read_only=True)
    try:
        _, rows = store.read(
            "SELECT unit_id, assigned_variation, served_variation, sdk, trace_id FROM exposures"
        )
        _, evals = store.read("SELECT count(*), min(label), min(evaluator) FROM evals")
    finally:
        store.close()
    by_unit = {r[0]: r for r in rows}
    assert by_unit["conv-1"][1:4] == ("candidate", "candidate", "otel:ramplight-test")
    assert by_unit["conv-11"][1:4] == ("control", "control", "otel:old-hook")
    assert by_unit["conv-10"][4] is not None and len(by_unit["conv-10"][4]) == 32  # joins its trace
    assert {"conv-90", "conv-91", "conv-92"}.isdisjoint(by_unit)
    assert evals == [(6, "pass", "llm_judge")]


def test_otlp_json_log_records_answer_with_partial_success(server: RunningServer) -> None:
    server.create_flag()
    key = server.sdk_key()
    now = str(time.time_ns())
    record = {
        "timeUnixNano": now,
        "eventName": "feature_flag.evaluation",
        "attributes": [
            {"key": "feature_flag.key", "value": {"stringValue": FLAG}},
            {"key": "feature_flag.result.variant", "value": {"stringValue": "candidate"}},
            {"key": "feature_flag.context.id", "value": {"stringValue": "conv-1"}},
        ],
        "traceId": "5b8efff798038103d269b633813fc60c",
        "spanId": "eee19b7ec3c1b174",
    }
    failed = {
        **record,
        "attributes": [*record["attributes"], {"key": "error.type", "value": {"stringValue": "x"}}],
    }
    body = {"resourceLogs": [{"scopeLogs": [{"logRecords": [record, failed, record]}]}]}
    answer = httpx.post(
        f"{server.url}/v1/logs", json=body, headers={"Authorization": f"Bearer {key}"}
    )  # the same record twice: stored once
    assert answer.status_code == 200, answer.text
    partial = answer.json()["partialSuccess"]
    assert partial["rejectedLogRecords"] == "1" and "failed evaluation" in partial["errorMessage"]
    refused = httpx.post(
        f"{server.url}/v1/logs",
        content=b"\xff\x00",
        headers={"Authorization": f"Bearer {key}", "Content-Type": "application/x-protobuf"},
    )
    assert refused.status_code == 400 and "ExportLogsServiceRequest" in refused.json()["message"]
    report = server.admin.get(f"/api/flags/{FLAG}/report").json()
    assert report["data_quality"]["exposed_units"] == 1
