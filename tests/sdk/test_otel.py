"""The SDK inside an OpenTelemetry span: the evaluation is recorded on the span as the
conventions' event, the exposure carries the span's trace id, and the span exported to the
server joins the exposure — without the event counting as a second exposure."""

from __future__ import annotations

from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from ramplight import Client
from tests.factories import RunningServer
from tests.sdk.test_client import stored


def test_an_exposure_inside_a_span_is_recorded_on_it_and_joins_it(server: RunningServer) -> None:
    server.create_flag(
        environments={
            "production": {
                "default_variation": "control",
                "off_variation": "control",
                "rollout": {"weights": {"candidate": 100}},
            }
        }
    )
    key = server.sdk_key()
    seen = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(seen))
    exporter = OTLPSpanExporter(
        endpoint=f"{server.url}/v1/traces", headers={"Authorization": f"Bearer {key}"}
    )
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("app")
    with Client(key, url=server.url) as client:
        with tracer.start_as_current_span("conversation") as span:
            span.set_attribute("feature_flag.context.id", "conv_1")
            with client.exposure("support_assistant_profile", "conv_1") as x:
                assert x.value == {"prompt_profile": "support_v4"}
            trace_id = format(span.get_span_context().trace_id, "032x")
        with client.exposure("support_assistant_profile", "conv_2"):
            pass  # no active span: no event, no trace id
        assert client.flush()
    provider.shutdown()

    (exported,) = seen.get_finished_spans()
    (event,) = exported.events
    assert event.name == "feature_flag.evaluation"
    assert dict(event.attributes or {}) == {
        "feature_flag.key": "support_assistant_profile",
        "feature_flag.context.id": "conv_1",
        "feature_flag.provider.name": "ramplight",
        "feature_flag.result.reason": "rollout",
        "feature_flag.result.variant": "candidate",
        "feature_flag.version": "1",
    }
    rows = stored(server, "SELECT unit_id, trace_id, sdk FROM exposures ORDER BY unit_id")
    assert rows == [
        ("conv_1", trace_id, "ramplight-python/0.1.0"),
        ("conv_2", None, "ramplight-python/0.1.0"),
    ]
    joined = stored(
        server, "SELECT s.name, x.unit_id FROM spans s JOIN exposures x ON s.trace_id = x.trace_id"
    )
    assert joined == [("conversation", "conv_1")]
