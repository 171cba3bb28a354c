"""Ramplight behind OpenFeature's own client: typed resolution with reasons and error codes, the
context's unit and attributes, exposures only when asked, `track` as events, and the span."""

from __future__ import annotations

import queue
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from openfeature import api
from openfeature.client import OpenFeatureClient
from openfeature.evaluation_context import EvaluationContext
from openfeature.event import EventDetails, ProviderEvent
from openfeature.exception import ErrorCode, ProviderNotReadyError
from openfeature.flag_evaluation import Reason
from openfeature.provider import ProviderStatus
from openfeature.track import TrackingEventDetails
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from ramplight import Client
from ramplight.sdk.openfeature import RECORD_EXPOSURE, RamplightProvider
from ramplight.sdk.testing import InMemory
from ramplight.server.run import ServerThread, free_port
from ramplight.settings import Settings
from tests.factories import RunningServer
from tests.sdk.test_client import stored

PROFILES = {"control": {"prompt_profile": "support_v3"}, "candidate": {"prompt_profile": "support_v4"}}


@pytest.fixture
def open_feature() -> Iterator[Callable[[Client], OpenFeatureClient]]:
    def use(client: Client) -> OpenFeatureClient:
        api.set_provider_and_wait(RamplightProvider(client))
        return api.get_client()

    yield use
    api.shutdown()


@pytest.fixture
def memory() -> InMemory:
    memory = InMemory()
    memory.flag("support_assistant_profile", PROFILES, serve="candidate", assignment_unit="conversation")
    memory.flag("new_checkout", serve="on")
    memory.flag("max_tokens", {"short": 256, "long": 1024.0, "odd": 2.5}, serve="long")
    memory.flag("greeting", {"formal": "Good day", "casual": "Hi"})
    return memory


def conversation(unit: str = "conv_1", **attributes: Any) -> EvaluationContext:
    return EvaluationContext(targeting_key="user_1", attributes={"conversation": unit, **attributes})


def test_each_type_resolves_with_its_variant_and_reason(memory: InMemory, open_feature) -> None:
    memory.pin("greeting", "casual", unit_id="user_1")
    memory.add(
        {
            "key": "legacy_search",
            "type": "boolean",
            "assignment_unit": "user",
            "variations": [{"key": "on", "value": True}, {"key": "off", "value": False}],
            "environments": {"test": {"default_variation": "on", "off_variation": "off", "enabled": False}},
        }
    )
    client = open_feature(memory.client())
    context = conversation()
    found = {
        "object": client.get_object_details("support_assistant_profile", {}, context),
        "boolean": client.get_boolean_details("new_checkout", False, context),
        "integer": client.get_integer_details("max_tokens", 0, context),
        "float": client.get_float_details("max_tokens", 0.0, context),
        "string": client.get_string_details("greeting", "", context),
        "off": client.get_boolean_details("legacy_search", True, context),
        "default": client.get_string_details("greeting", "", EvaluationContext("user_2")),
    }
    assert {k: (d.value, d.variant, d.reason, d.error_code) for k, d in found.items()} == {
        "object": (PROFILES["candidate"], "candidate", Reason.SPLIT, None),
        "boolean": (True, "on", Reason.SPLIT, None),
        "integer": (1024, "long", Reason.SPLIT, None),
        "float": (1024.0, "long", Reason.SPLIT, None),
        "string": ("Hi", "casual", Reason.TARGETING_MATCH, None),
        "off": (False, "off", Reason.DISABLED, None),
        "default": ("Good day", "formal", Reason.DEFAULT, None),
    }
    assert type(found["integer"].value) is int and type(found["float"].value) is float
    assert found["object"].flag_metadata == {
        "contextId": "conv_1",
        "version": "0",
        "assignment_unit": "conversation",
    }
    assert found["string"].flag_metadata["rule_id"] == "pinned-casual"


def test_a_value_of_another_type_serves_the_default_with_type_mismatch(
    memory: InMemory, open_feature
) -> None:
    client = open_feature(memory.client())
    context = conversation()
    assert client.get_string_value("new_checkout", "x", context) == "x"
    boolean = client.get_boolean_details("max_tokens", False, context)
    assert (boolean.value, boolean.reason, boolean.error_code) == (
        False,
        Reason.ERROR,
        ErrorCode.TYPE_MISMATCH,
    )
    assert boolean.error_message == "flag 'max_tokens' is a float, asked for boolean"
    memory.pin("max_tokens", "odd")
    integer = client.get_integer_details("max_tokens", 7, context)
    assert (integer.value, integer.error_code) == (7, ErrorCode.TYPE_MISMATCH)
    assert integer.error_message == "flag 'max_tokens' is the float 2.5, asked for integer"
    assert client.get_integer_details("new_checkout", 3, context).error_code == ErrorCode.TYPE_MISMATCH
    assert client.get_object_details("greeting", {"a": 1}, context).value == {"a": 1}


def test_missing_flags_units_and_configs_have_their_error_codes(memory: InMemory, open_feature) -> None:
    client = open_feature(memory.client())
    missing = client.get_boolean_details("no_such_flag", True, conversation())
    assert (missing.value, missing.error_code, missing.error_message) == (
        True,
        ErrorCode.FLAG_NOT_FOUND,
        "no flag 'no_such_flag'",
    )
    unknown = client.get_boolean_details("no_such_flag", True, EvaluationContext())
    assert unknown.error_code == ErrorCode.FLAG_NOT_FOUND  # the flag is missing before the unit
    no_unit = client.get_object_details("support_assistant_profile", {}, EvaluationContext())
    assert no_unit.error_code == ErrorCode.TARGETING_KEY_MISSING
    assert no_unit.error_message == (
        "flag 'support_assistant_profile' needs the unit: a 'conversation' attribute or a "
        "targeting_key in the evaluation context"
    )


def test_before_its_first_config_the_provider_serves_defaults_then_says_ready(
    tmp_path: Path, make_server
) -> None:
    port = free_port()
    first = make_server(db=tmp_path / "a.duckdb", port=port)
    first.create_flag()
    sdk_key = first.sdk_key()
    first.thread.stop()
    waiting = Client(sdk_key, url=first.url, init_timeout=0, poll_interval=3600)
    events: queue.Queue[str] = queue.Queue()  # handlers run on OpenFeature's executor thread

    def ready(details: EventDetails) -> None:
        events.put("ready")

    def changed(details: EventDetails) -> None:
        events.put(f"changed {details.flags_changed}")

    restarted = None
    try:
        with pytest.raises(ProviderNotReadyError, match="no Ramplight config within 0s"):
            api.set_provider_and_wait(RamplightProvider(waiting, init_timeout=0))
        api.add_handler(ProviderEvent.PROVIDER_READY, ready)
        api.add_handler(ProviderEvent.PROVIDER_CONFIGURATION_CHANGED, changed)
        client = api.get_client()
        before = client.get_object_details("support_assistant_profile", {"p": 1}, conversation())
        assert (before.value, before.error_code) == ({"p": 1}, ErrorCode.PROVIDER_NOT_READY)
        assert client.get_provider_status() == ProviderStatus.ERROR

        restarted = ServerThread(Settings(db=tmp_path / "a.duckdb", port=port)).start()
        waiting.refresh()  # or the stream, reconnecting, brings it first
        assert events.get(timeout=10) == "ready"
        assert client.get_provider_status() == ProviderStatus.READY
        assert client.get_object_details("support_assistant_profile", {}, conversation()).variant
        first.admin.post("/api/flags/support_assistant_profile/kill", json={"environment": "production"})
        waiting.refresh()  # the stream may have brought it already: one change event either way
        assert events.get(timeout=10) == "changed ['support_assistant_profile']"
        off = client.get_object_details("support_assistant_profile", {}, conversation())
        assert (off.variant, off.reason) == ("control", Reason.DISABLED)
    finally:
        api.remove_handler(ProviderEvent.PROVIDER_READY, ready)
        api.remove_handler(ProviderEvent.PROVIDER_CONFIGURATION_CHANGED, changed)
        api.shutdown()
        if restarted is not None:
            restarted.stop()


def test_the_unit_is_the_flags_own_unit_and_the_rest_are_targeting_attributes(
    memory: InMemory, open_feature
) -> None:
    rules = [
        {"id": "pro", "clauses": [{"attribute": "plan", "op": "in", "values": ["pro"]}], "variation": "on"}
    ]
    memory.add(
        {
            "key": "pro_feature",
            "type": "boolean",
            "assignment_unit": "account",
            "variations": [{"key": "on", "value": True}, {"key": "off", "value": False}],
            "environments": {"test": {"default_variation": "off", "off_variation": "off", "rules": rules}},
        }
    )
    client = open_feature(memory.client())
    pro = client.get_boolean_details("pro_feature", False, conversation(account="acme", plan="pro"))
    free = client.get_boolean_details("pro_feature", True, conversation(plan="free"))
    assert (pro.value, pro.reason, pro.flag_metadata["contextId"]) == (True, Reason.TARGETING_MATCH, "acme")
    assert (free.value, free.reason, free.flag_metadata["contextId"]) == (False, Reason.DEFAULT, "user_1")


def test_evaluating_records_no_exposure_unless_asked(memory: InMemory, open_feature) -> None:
    client = open_feature(memory.client())
    client.get_object_value("support_assistant_profile", {}, conversation("conv_1", plan="pro"))
    assert memory.exposures == []
    client.get_object_value(
        "support_assistant_profile", {}, conversation("conv_2", plan="pro"), RECORD_EXPOSURE
    )
    client.get_boolean_value("no_such_flag", False, conversation("conv_3"), RECORD_EXPOSURE)
    client.get_string_value("new_checkout", "", conversation("conv_4"), RECORD_EXPOSURE)  # type mismatch
    (exposure,) = memory.exposures
    assert (exposure.flag_key, exposure.unit_id, exposure.assignment_unit) == (
        "support_assistant_profile",
        "conv_2",
        "conversation",
    )
    assert (exposure.assigned_variation, exposure.served_variation, exposure.attributes) == (
        "candidate",
        "candidate",
        {"plan": "pro"},
    )
    assert memory.rejected == []


def test_a_behavior_that_falls_back_is_recorded_as_served(memory: InMemory) -> None:
    provider = RamplightProvider(memory.client())
    with provider.exposure("support_assistant_profile", conversation("conv_1")) as x:
        assert x.value == PROFILES["candidate"]
        x.fallback("timeout")
    with provider.exposure("support_assistant_profile", EvaluationContext()) as x:
        assert x.value is None  # no unit: nothing assigned, nothing recorded
    (exposure,) = memory.exposures
    assert (exposure.assigned_variation, exposure.served_variation, exposure.fallback_reason) == (
        "candidate",
        "control",
        "timeout",
    )


def test_track_sends_ramplight_events_with_their_fields(memory: InMemory, open_feature) -> None:
    client = open_feature(memory.client(default_assignment_unit="user"))
    client.track(
        "resolved",
        conversation("conv_1"),
        TrackingEventDetails(
            value=1, attributes={"flag_key": "support_assistant_profile", "channel": "chat"}
        ),
    )
    client.track("checkout", EvaluationContext("user_7"), TrackingEventDetails(value=42.5))
    client.track("orphan", EvaluationContext())  # no unit id: counted, not raised
    assert [
        (e.name, e.unit_id, e.assignment_unit, e.value, e.flag_key, e.properties) for e in memory.events
    ] == [
        ("resolved", "conv_1", "conversation", 1.0, "support_assistant_profile", {"channel": "chat"}),
        ("checkout", "user_7", "user", 42.5, None, None),
    ]
    assert memory.stats.failed == 1


def test_evaluations_are_recorded_on_the_active_span_and_the_exposure_joins_it(
    memory: InMemory, open_feature
) -> None:
    seen = InMemorySpanExporter()
    tracing = TracerProvider()
    tracing.add_span_processor(SimpleSpanProcessor(seen))
    client = open_feature(memory.client())
    with tracing.get_tracer("app").start_as_current_span("conversation") as span:
        client.get_object_value("support_assistant_profile", {}, conversation(), RECORD_EXPOSURE)
        trace_id = format(span.get_span_context().trace_id, "032x")
    tracing.shutdown()
    (exported,) = seen.get_finished_spans()
    (event,) = exported.events
    assert (event.name, dict(event.attributes or {})) == (
        "feature_flag.evaluation",
        {
            "feature_flag.key": "support_assistant_profile",
            "feature_flag.context.id": "conv_1",
            "feature_flag.provider.name": "ramplight",
            "feature_flag.result.reason": "rollout",
            "feature_flag.result.variant": "candidate",
            "feature_flag.version": "0",
        },
    )
    assert [x.trace_id for x in memory.exposures] == [trace_id]


def test_exposures_and_events_through_openfeature_reach_the_server(
    server: RunningServer, open_feature
) -> None:
    server.create_flag(
        environments={
            "production": {
                "default_variation": "control",
                "off_variation": "control",
                "rollout": {"weights": {"candidate": 100}},
            }
        }
    )
    client = open_feature(Client(server.sdk_key(), url=server.url))
    details = client.get_object_details("support_assistant_profile", {}, conversation(), RECORD_EXPOSURE)
    assert (details.variant, details.flag_metadata["version"]) == ("candidate", "1")
    client.track(
        "resolved",
        conversation(),
        TrackingEventDetails(value=1, attributes={"assignment_unit": "conversation"}),
    )
    api.shutdown()  # closes the client: what is queued is sent
    assert stored(server, "SELECT unit_id, assigned_variation, flag_version FROM exposures") == [
        ("conv_1", "candidate", 1)
    ]
    assert stored(server, "SELECT name, unit_id, value FROM events") == [("resolved", "conv_1", 1.0)]


def test_the_sdk_and_its_testing_module_import_neither_openfeature_nor_the_server() -> None:
    code = (
        "import sys, ramplight, ramplight.sdk.testing; "
        "print(sorted(m for m in ('openfeature', 'duckdb', 'fastapi', 'sqlglot') if m in sys.modules))"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert run.stdout.strip() == "[]"
