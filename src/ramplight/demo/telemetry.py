"""The demo assistant's OpenTelemetry: a trace per conversation and LLM-judge scores, exported
with the OpenTelemetry SDK's OTLP/HTTP exporters to the demo server's `/v1/traces` and `/v1/logs`.

Spans follow the GenAI semantic conventions. The root `invoke_agent support_assistant` names the
conversation (`feature_flag.context.id`), and the SDK records the flag evaluation on it; under it
run the retrieval, an order lookup tool in parallel for some conversations, and the model calls
— control answers with `gpt-5`; the candidate is a cascade that answers with `gpt-5-mini` and
escalates to `gpt-5` on hard queries. A user who hits stop ends the root (status error,
`error.type` cancelled) while the model call runs on: the cancellation tax. The demo simulates
time, so every span gets explicit start and end times (Unix ns) rather than sleeping.

Traces are head-sampled (`ParentBased(TraceIdRatioBased)`, one in ten by default), as a
production tracer is: a span costs the demo ≈ 0.2 ms of CPU (the SDK, its protobuf encoding, the
server's intake), and tracing every conversation makes it five times slower than untraced. The model calls' cost
(tokens × the price table) is computed for every conversation, traced or not, and tracked as an
event, so the cost metric covers every unit while per-trace figures come from the sample.

Judge scores are `gen_ai.evaluation.result` log records emitted in the context of the model call
they judge, carrying its `gen_ai.response.id` and the conversation id.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from typing import Any

from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import BatchLogRecordProcessor
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.sdk.trace.id_generator import IdGenerator
from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased
from opentelemetry.trace import Span, SpanKind, Status, StatusCode

AGENT = "support_assistant"
ROOT = f"invoke_agent {AGENT}"
PROVIDER = "openai"
MODELS = {"gpt-5": "gpt-5-2026-08-07", "gpt-5-mini": "gpt-5-mini-2026-08-07"}
"""Requested model → the dated model the provider answers with (priced by prefix)."""
RERANKER = "rerank-v3.5"
"""Citation-first retrieval reranks with a model priced per search, so the token price table
cannot price it: its spans show as unpriced in the readout."""
PRICES: list[dict[str, Any]] = [
    {"model": "gpt-5", "input_per_million": 1.25, "output_per_million": 10.0},
    {"model": "gpt-5-mini", "input_per_million": 0.25, "output_per_million": 2.0},
]
"""The demo's price table (`PUT /api/prices`): span cost is tokens × these prices."""
_PRICE = {p["model"]: (p["input_per_million"] / 1e6, p["output_per_million"] / 1e6) for p in PRICES}
TRACE_RATIO = 0.1
"""The share of conversations traced (head sampling by trace id)."""
QUEUE = 65_536
"""Spans (and log records) a processor holds: more than the demo makes between two flushes."""

_MS = 1_000_000

Judged = tuple[Span, str]
"""A model call and its `gen_ai.response.id`: what a judge scores."""


@dataclass(frozen=True, slots=True)
class Answered:
    judged: Judged
    """The model call that produced the answer."""
    cost_usd: float
    """The conversation's model calls: tokens × the price table."""


@dataclass(frozen=True, slots=True)
class Answer:
    """What the simulation decided about one conversation's answer; the trace shows how."""

    turns: int
    plan: str
    served: str
    timed_out_ms: float
    """Time lost to the candidate's retrieval timing out before control served (0: none)."""
    retrieval_extra_ms: float
    """The candidate's citation-first retrieval: slower, and saturated at 20 % for enterprise."""
    base_ms: float
    base_z: float
    """How far the answer's base latency is above its median (in log-sd): hard queries are slow."""

    @property
    def latency_ms(self) -> float:
        return self.base_ms + self.retrieval_extra_ms + self.timed_out_ms


class _SeededIds(IdGenerator):
    """Trace and span ids from the demo's seed, so which conversations are sampled repeats."""

    def __init__(self, seed: int) -> None:
        self._rng = random.Random(seed)

    def generate_span_id(self) -> int:
        return self._rng.getrandbits(64) or 1

    def generate_trace_id(self) -> int:
        return self._rng.getrandbits(128) or 1


class Telemetry:
    """The assistant's tracer and logger, on providers of its own (never the global ones), with
    batching processors that export to the server as an SDK key of the environment."""

    def __init__(self, url: str, sdk_key: str, seed: int, ratio: float = TRACE_RATIO) -> None:
        headers = {"Authorization": f"Bearer {sdk_key}"}
        resource = Resource.create({"service.name": "support-assistant"})
        self.tracer_provider = TracerProvider(
            resource=resource, sampler=ParentBased(TraceIdRatioBased(ratio)), id_generator=_SeededIds(seed)
        )
        self.tracer_provider.add_span_processor(
            BatchSpanProcessor(
                OTLPSpanExporter(endpoint=f"{url}/v1/traces", headers=headers),
                max_queue_size=QUEUE,
                max_export_batch_size=2048,
                schedule_delay_millis=500,
            )
        )
        self.logger_provider = LoggerProvider(resource=resource)
        self.logger_provider.add_log_record_processor(
            BatchLogRecordProcessor(
                OTLPLogExporter(endpoint=f"{url}/v1/logs", headers=headers),
                max_queue_size=QUEUE,
                max_export_batch_size=2048,
                schedule_delay_millis=500,
            )
        )
        self.tracer = self.tracer_provider.get_tracer("ramplight.demo.support_assistant")
        self.judge = self.logger_provider.get_logger("ramplight.demo.judge")
        # The traces' own random draws: the outcomes' stream (and so the story) stays as it was.
        self.rng = random.Random(seed + 1)
        self.spans = 0
        """Spans recorded (sampled) and so exported."""
        self.scores = 0
        self._cost = 0.0

    def flush(self, timeout_s: float = 60.0) -> None:
        """Export everything emitted so far (the readout must see it)."""
        if not self.tracer_provider.force_flush(int(timeout_s * 1000)):
            raise TimeoutError("the demo's spans were not exported in time")
        if not self.logger_provider.force_flush(int(timeout_s * 1000)):
            raise TimeoutError("the demo's judge scores were not exported in time")

    def shutdown(self) -> None:
        self.tracer_provider.shutdown()
        self.logger_provider.shutdown()

    def conversation(self, conversation_id: str, start_ns: int) -> Span:
        """The root span; run the flag's exposure inside it (`trace.use_span`)."""
        root = self.tracer.start_span(
            ROOT,
            kind=SpanKind.INTERNAL,
            start_time=start_ns,
            attributes={
                "gen_ai.operation.name": "invoke_agent",
                "gen_ai.agent.name": AGENT,
                "feature_flag.context.id": conversation_id,
            },
        )
        self.spans += root.is_recording()
        return root

    def answer(self, root: Span, start_ns: int, answer: Answer) -> Answered:
        """The root's children from the simulated timings; ends the root."""
        rng = self.rng
        self._cost = 0.0
        context = trace.set_span_in_context(root)
        t = 5.0  # ms after the root began
        if answer.timed_out_ms:
            self._span(context, "retrieval kb_citations", start_ns, t, t + answer.timed_out_ms,
                       {"gen_ai.operation.name": "retrieval", "gen_ai.data_source.id": "kb_citations"},
                       error="timeout")  # fmt: skip
            t += answer.timed_out_ms
        citations = answer.served == "candidate"
        retrieval_ms = rng.lognormvariate(5.1, 0.3) + answer.retrieval_extra_ms  # ≈ 165 ms, + the candidate's
        tool_ms = (
            rng.lognormvariate(5.3, 0.5) if rng.random() < (0.45 if answer.plan != "free" else 0.25) else 0.0
        )
        room = answer.latency_ms - t - 10.0 - 200.0  # the model needs at least 200 ms
        squeeze = min(1.0, room / max(retrieval_ms, tool_ms)) if room > 0 else 0.0
        retrieval_ms, tool_ms = retrieval_ms * squeeze, tool_ms * squeeze
        source = "kb_citations" if citations else "kb"
        attributes: dict[str, Any] = {"gen_ai.operation.name": "retrieval", "gen_ai.data_source.id": source}
        if citations:
            attributes |= {"gen_ai.request.model": RERANKER, "gen_ai.usage.input_tokens": 8 * 350}
        self._span(context, f"retrieval {source}", start_ns, t, t + retrieval_ms, attributes)
        if tool_ms:
            self._span(context, "execute_tool lookup_order", start_ns, t, t + tool_ms,
                       {"gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": "lookup_order"})  # fmt: skip
        t += max(retrieval_ms, tool_ms) + 3.0
        end = max(answer.latency_ms, t + 1.0)
        prompt = 900 + 320 * answer.turns + (8 if citations else 4) * 350
        final_start, model_end = t, end - 5.0
        if citations:
            # The cascade: gpt-5-mini answers; a hard query (slow, long, enterprise) escalates to gpt-5.
            hard = (
                answer.base_z
                + 0.35 * (answer.plan == "enterprise")
                + 0.25 * (answer.turns >= 8)
                + rng.gauss(0, 0.4)
                > 0.6
            )
            if hard:
                mini_end = t + min(0.35 * (model_end - t), rng.lognormvariate(5.9, 0.3))
                self._chat(context, "gpt-5-mini", start_ns, t, mini_end, prompt)
                final_start = mini_end + 2.0
            final = self._chat(
                context, "gpt-5" if hard else "gpt-5-mini", start_ns, final_start, model_end, prompt
            )
        else:
            final = self._chat(context, "gpt-5", start_ns, t, model_end, prompt)
        # Users hit stop more often the longer they wait; the provider finishes the answer anyway.
        if rng.random() < 0.01 + 0.4 / (1 + math.exp((3500 - answer.latency_ms) / 400)):
            stop_ms = final_start + rng.uniform(0.15, 0.7) * (model_end - final_start)
            root.set_attribute("error.type", "cancelled")
            root.set_status(Status(StatusCode.ERROR, "the user stopped the answer"))
            root.end(end_time=start_ns + int(stop_ms * _MS))
        else:
            root.end(end_time=start_ns + int(end * _MS))
        return Answered(final, self._cost)

    def score(self, judged: Judged, conversation_id: str, at_ns: int, faithfulness: float) -> None:
        """The LLM judge's score of one answer, in the context of the model call it judges."""
        self.scores += 1
        span, response_id = judged
        self.judge.emit(
            timestamp=at_ns,
            context=trace.set_span_in_context(span),
            event_name="gen_ai.evaluation.result",
            attributes={
                "gen_ai.evaluation.name": "faithfulness",
                "gen_ai.evaluation.score.value": faithfulness,
                "gen_ai.evaluation.score.label": "pass" if faithfulness >= 0.7 else "fail",
                "gen_ai.response.id": response_id,
                "feature_flag.context.id": conversation_id,
            },
        )

    def _chat(
        self, context: Any, model: str, start_ns: int, start_ms: float, end_ms: float, prompt: int
    ) -> Judged:
        rng = self.rng
        response_id = f"chatcmpl-{rng.getrandbits(96):024x}"
        tokens_in, tokens_out = int(prompt * rng.uniform(0.9, 1.1)), int(rng.lognormvariate(5.4, 0.35))
        per_in, per_out = _PRICE[model]
        self._cost += tokens_in * per_in + tokens_out * per_out
        span = self._span(
            context, f"chat {model}", start_ns, start_ms, end_ms,
            {"gen_ai.operation.name": "chat", "gen_ai.provider.name": PROVIDER, "gen_ai.request.model": model,
             "gen_ai.response.model": MODELS[model], "gen_ai.response.id": response_id,
             "gen_ai.usage.input_tokens": tokens_in, "gen_ai.usage.output_tokens": tokens_out},
            kind=SpanKind.CLIENT,
        )  # fmt: skip
        return span, response_id

    def _span(
        self,
        context: Any,
        name: str,
        start_ns: int,
        start_ms: float,
        end_ms: float,
        attributes: dict[str, Any],
        kind: SpanKind = SpanKind.INTERNAL,
        error: str | None = None,
    ) -> Span:
        parent = trace.get_current_span(context)
        if not parent.is_recording():
            # An unsampled trace: its children would be dropped too, so none is made (the
            # OpenTelemetry idiom of checking `is_recording()` before the work of recording).
            return parent
        span = self.tracer.start_span(
            name, context=context, kind=kind, start_time=start_ns + int(start_ms * _MS), attributes=attributes
        )
        self.spans += span.is_recording()
        if error is not None:
            span.set_attribute("error.type", error)
            span.set_status(Status(StatusCode.ERROR, error))
        span.end(end_time=start_ns + int(end_ms * _MS))
        return span
