"""What the trace analysis joins on beyond ids, sent by the real OpenTelemetry SDK to a real
server: a caller's cancellation (`error.type`, or a recorded `CancelledError`), the generation's
`gen_ai.response.id`, and a judge's `gen_ai.evaluation.result` that names only that response id.
The readout then shows the cancellation tax and the judge's scores per variation."""

from __future__ import annotations

import asyncio
import math
import time

from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import SimpleLogRecordProcessor
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.trace import Status, StatusCode

from ramplight.store.duckdb import DuckDBStore
from tests.factories import RunningServer

FLAG = "support_assistant_profile"
MS = 1_000_000


def test_cancelled_callers_response_ids_and_judges_scores_join_the_readout(server: RunningServer) -> None:
    server.create_flag()
    metric = {"type": "eval", "eval": "faithfulness", "evaluator": "llm_judge"}
    assert server.admin.put("/api/metrics/faithfulness", json=metric).status_code == 200
    key = server.sdk_key()
    time.sleep(0.01)  # evidence after the flag's first phase began
    resource = Resource.create({"service.name": "support-assistant"})
    provider = TracerProvider(resource=resource)
    provider.add_span_processor(
        SimpleSpanProcessor(
            OTLPSpanExporter(endpoint=f"{server.url}/v1/traces", headers={"Authorization": f"Bearer {key}"})
        )
    )
    tracer = provider.get_tracer("support")
    logs = LoggerProvider(resource=resource)
    logs.add_log_record_processor(
        SimpleLogRecordProcessor(
            OTLPLogExporter(endpoint=f"{server.url}/v1/logs", headers={"Authorization": f"Bearer {key}"})
        )
    )
    judge = logs.get_logger("judge")

    t0 = time.time_ns()
    for i in range(6):
        unit, variation = f"conv-{i}", ("candidate" if i % 2 else "control")
        root = tracer.start_span("invoke_agent support", start_time=t0)
        root.set_attribute("feature_flag.context.id", unit)
        root.add_event(
            "feature_flag.evaluation",
            {"feature_flag.key": FLAG, "feature_flag.result.variant": variation},
            timestamp=t0,
        )
        chat = tracer.start_span(
            "chat gpt-5", context=trace.set_span_in_context(root), start_time=t0 + 50 * MS
        )
        chat.set_attributes(
            {"gen_ai.operation.name": "chat", "gen_ai.response.model": "gpt-5", "gen_ai.response.id": f"resp-{i}",
             "gen_ai.usage.input_tokens": 100, "gen_ai.usage.output_tokens": 400, "gen_ai.usage.cost": 0.04}
        )  # fmt: skip
        if variation == "candidate":
            # The user pressed stop at 1 s (the caller's span says so); the generation ran on to 4 s.
            root.set_status(Status(StatusCode.ERROR, "stopped by the user"))
            root.set_attribute("error.type", "cancelled")
            root.end(end_time=t0 + 1000 * MS)
            chat.end(end_time=t0 + 4050 * MS)
        elif i == 0:
            # Cancelled the asyncio way: the SDK records the CancelledError; the generation stopped with it.
            root.record_exception(asyncio.CancelledError())
            chat.end(end_time=t0 + 900 * MS)
            root.end(end_time=t0 + 1000 * MS)
        else:
            chat.end(end_time=t0 + 900 * MS)
            root.end(end_time=t0 + 1000 * MS)
        # The judge knows only the response it scored (no trace context, no unit).
        judge.emit(
            event_name="gen_ai.evaluation.result",
            attributes={"gen_ai.evaluation.name": "faithfulness", "gen_ai.response.id": f"resp-{i}",
                        "gen_ai.evaluation.score.value": 0.5 + i / 10},
        )  # fmt: skip
    provider.shutdown()
    logs.shutdown()

    report = server.admin.get(
        f"/api/flags/{FLAG}/report", params={"metric": "faithfulness", "traces": "true"}
    ).json()
    scores = {v["variation"]: v for v in report["metrics"][0]["variations"]}
    assert scores["control"]["units"] == scores["candidate"]["units"] == 3
    assert math.isclose(scores["candidate"]["mean"], (0.6 + 0.8 + 1.0) / 3)
    control, candidate = (report["traces"][v]["cancellation"] for v in ("control", "candidate"))
    assert (control["cancelled_traces"], control["generations_ran_on"]) == (1, 0)
    assert (candidate["cancelled_traces"], candidate["generations_ran_on"]) == (3, 3)
    assert candidate["output_tokens"] == 1200
    assert math.isclose(candidate["output_tokens_after_cancel"], 3 * 400 * 3050 / 4000, rel_tol=1e-9)
    assert math.isclose(candidate["cost_usd"], 0.12) and math.isclose(candidate["cost_share"], 1.0)

    server.thread.stop()
    store = DuckDBStore(server.settings.db, read_only=True)
    try:
        _, spans = store.read("SELECT name, cancelled, response_id FROM spans ORDER BY response_id, name")
        _, evals = store.read("SELECT DISTINCT response_id IS NOT NULL, unit_id IS NULL FROM evals")
    finally:
        store.close()
    cancelled = [name for name, flag, _ in spans if flag]
    assert len(spans) == 12
    assert cancelled == ["invoke_agent support"] * 4  # the candidate's three roots and conv-0's
    assert sorted(r for n, _, r in spans if n.startswith("chat")) == [f"resp-{i}" for i in range(6)]
    assert evals == [(True, True)]
