"""OTLP decoding: the protobuf decoder (the fast path a collector's exports take) gives exactly
the rows, canonical forms, rejections and exposures the OTLP/JSON decoder gives for the same
request, whatever the request holds; the shortcuts it takes agree with the plain definitions."""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec
import pytest
from google.protobuf.json_format import MessageToDict
from hypothesis import given, settings
from hypothesis import strategies as st
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, ArrayValue, KeyValue, KeyValueList
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span, Status

from ramplight.core import otlp
from ramplight.core.identity import canonical_forms

NAMES = (
    "feature_flag.key",
    "feature_flag.context.id",
    "feature_flag.result.variant",
    "feature_flag.variant",
    "feature_flag.provider.name",
    "feature_flag.result.reason",
    "ramplight.unit_id",
    "gen_ai.request.model",
    "gen_ai.response.model",
    "gen_ai.usage.input_tokens",
    "gen_ai.usage.output_tokens",
    "gen_ai.usage.prompt_tokens",
    "gen_ai.usage.cost",
    "gen_ai.input.messages",
    "gen_ai.prompt.0.content",
    "error.type",
    "service.name",
    "resource.service.name",
    "http.route",
)
"""Attribute names the decoders read, drop or rename, and a few they keep as they are."""

settings_ = settings(max_examples=80, deadline=None)


def _scalar(empty: bool = True) -> st.SearchStrategy[AnyValue]:
    values = st.one_of(
        st.text(max_size=12).map(lambda v: AnyValue(string_value=v)),
        st.sampled_from(["chat", "gpt-5-mini", "candidate", "control", "u-1", "flag_a", "error"]).map(
            lambda v: AnyValue(string_value=v)
        ),
        st.integers(-(2**63), 2**63 - 1).map(lambda v: AnyValue(int_value=v)),
        st.sampled_from([0, 1, 7, 4000]).map(lambda v: AnyValue(int_value=v)),
        st.booleans().map(lambda v: AnyValue(bool_value=v)),
        st.floats(allow_nan=False, allow_infinity=False).map(lambda v: AnyValue(double_value=v)),
        st.binary(max_size=6).map(lambda v: AnyValue(bytes_value=v)),
    )
    return st.one_of(values, st.just(AnyValue())) if empty else values


def _value() -> st.SearchStrategy[AnyValue]:
    return st.one_of(
        _scalar(),
        # (an empty AnyValue inside an array or list is null in protobuf, a rejection in JSON)
        st.lists(_scalar(empty=False), max_size=3).map(
            lambda vs: AnyValue(array_value=ArrayValue(values=vs))
        ),
        st.lists(st.tuples(st.sampled_from(NAMES), _scalar(empty=False)), max_size=2).map(
            lambda kvs: AnyValue(kvlist_value=KeyValueList(values=[KeyValue(key=k, value=v) for k, v in kvs]))
        ),
    )


def _attributes(max_size: int = 5) -> st.SearchStrategy[list[KeyValue]]:
    key = st.one_of(st.sampled_from(NAMES), st.text(min_size=1, max_size=10))  # OTLP/JSON drops an empty key
    return st.lists(st.builds(KeyValue, key=key, value=_value()), max_size=max_size)


def _id(size: int) -> st.SearchStrategy[bytes]:
    return st.one_of(
        st.binary(min_size=size, max_size=size),
        st.sampled_from([b"", bytes(size), b"\x01" * (size - 1), b"\x02" * (size + 1)]),
    )


_times = st.one_of(
    st.integers(1_600_000_000_000_000_000, 1_900_000_000_000_000_000),
    st.integers(1, 2**64 - 1),  # JSON omits a zero time, which the two decoders word differently
)


@st.composite
def _span(draw: st.DrawFn) -> Span:
    start = draw(_times)
    end = draw(st.one_of(_times, st.integers(0, 10**10).map(lambda d: min(start + d, 2**64 - 1))))
    attributes = draw(_attributes())
    if draw(st.booleans()):  # near the size limit, on either side of it
        size = draw(st.integers(otlp.MAX_SPAN_ATTRIBUTES_BYTES - 200, otlp.MAX_SPAN_ATTRIBUTES_BYTES + 50))
        attributes.append(KeyValue(key="long", value=AnyValue(string_value="x" * size)))
    events = draw(
        st.lists(
            st.builds(
                Span.Event,
                name=st.sampled_from(["feature_flag.evaluation", "feature_flag", "exception"]),
                time_unix_nano=st.integers(0, 2**63 - 1),
                attributes=_attributes(4),
            ),
            max_size=2,
        )
    )
    return Span(
        trace_id=draw(_id(16)),
        span_id=draw(_id(8)),
        parent_span_id=draw(st.one_of(st.just(b""), _id(8))),
        name=draw(st.sampled_from(["chat", "", "feature_flag.evaluation", "feature_flag", "é" * 600])),
        kind=draw(st.integers(0, 7)),
        start_time_unix_nano=start,
        end_time_unix_nano=end,
        status=Status(code=draw(st.integers(0, 3))),
        attributes=attributes,
        events=events,
    )


requests = st.lists(
    st.builds(
        lambda resource, spans: ResourceSpans(
            resource={"attributes": resource}, scope_spans=[ScopeSpans(spans=spans)]
        ),
        _attributes(3),
        st.lists(_span(), max_size=6),
    ),
    min_size=1,
    max_size=2,
).map(lambda rs: ExportTraceServiceRequest(resource_spans=rs))

policies = st.builds(
    lambda allow, deny: otlp.AttributePolicy(allow, deny),
    st.sets(st.sampled_from(NAMES), max_size=2),
    st.sets(st.sampled_from(NAMES), max_size=2),
)


def _as_otlp_json(request: ExportTraceServiceRequest) -> bytes:
    """The same request in OTLP/JSON: protobuf's JSON mapping with the ids in hex."""
    doc = MessageToDict(request, use_integers_for_enums=True)
    for resource_spans in doc.get("resourceSpans", []):
        for scope_spans in resource_spans.get("scopeSpans", []):
            for span in scope_spans.get("spans", []):
                for name in ("traceId", "spanId", "parentSpanId"):
                    if name in span:
                        span[name] = base64.b64decode(span[name]).hex()
    return msgspec.json.encode(doc)


def _unit_of(key: str) -> str | None:
    return "user" if key == "flag_a" else None


def _outcome(decoded: otlp.DecodedTraces) -> tuple[Any, ...]:
    return (
        decoded.spans,
        decoded.canonicals,
        decoded.rejected,
        decoded.dropped_attributes,
        decoded.exposures,
        decoded.not_exposures,
    )


@settings_
@given(request=requests, policy=policies)
def test_protobuf_and_json_requests_decode_to_the_same_rows(
    request: ExportTraceServiceRequest, policy: otlp.AttributePolicy
) -> None:
    from_protobuf = otlp.decode_protobuf(request.SerializeToString(), policy, _unit_of)
    from_json = otlp.decode_json(_as_otlp_json(request), policy, _unit_of)
    assert _outcome(from_protobuf) == _outcome(from_json)
    assert from_protobuf.canonicals == canonical_forms(from_protobuf.spans)
    assert len(from_protobuf.spans) + len(from_protobuf.rejected) == sum(
        len(s.spans) for rs in request.resource_spans for s in rs.scope_spans
    )


@settings(max_examples=300, deadline=None)
@given(
    nanos=st.lists(
        st.one_of(
            st.integers(1, 2**63 - 1),
            st.integers(2**62 - 10**9, 2**62 + 10**9),
            st.integers(1_600_000_000_000_000_000, 1_900_000_000_000_000_000),
            st.sampled_from([0, 2**63, 2**64 - 1]),
        ),
        max_size=40,
    )
)
def test_span_times_are_unix_nanoseconds_truncated_to_the_microsecond(nanos: list[int]) -> None:
    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    expected = [epoch + timedelta(microseconds=n // 1000) if 0 < n < 2**63 else None for n in nanos]
    times = otlp._times(nanos)
    assert times == expected
    assert all(t.tzinfo is UTC for t in times if t is not None)


@settings_
@given(attributes=_attributes(8))
def test_protobuf_attribute_values_are_read_as_their_oneof_member(attributes: list[KeyValue]) -> None:
    expected = {kv.key: otlp._pb_value(kv.value) for kv in attributes}
    assert otlp._pb_attributes(attributes) == expected


CONVENTION_NAMES = (
    "feature_flag.context.id",
    "ramplight.unit_id",
    "feature_flag.key",
    "feature_flag.result.variant",
    "feature_flag.variant",
    "gen_ai.response.model",
    "gen_ai.request.model",
    "gen_ai.usage.input_tokens",
    "gen_ai.usage.prompt_tokens",
    "gen_ai.usage.output_tokens",
    "gen_ai.usage.completion_tokens",
    "gen_ai.usage.cost",
    "error.type",
    "gen_ai.response.id",
)
_attribute_values = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**63), 2**63 - 1),
    st.floats(allow_nan=False),
    st.sampled_from(["", "0", "12", "1.5", "x", "cancelled", "gpt-5"]),
    st.text(max_size=6),
    st.lists(st.integers(), max_size=2),
)


@pytest.mark.parametrize(
    ("cost", "stored"),
    [("nan", None), ("inf", None), (float("inf"), None), ("-Infinity", None), ("0.25", 0.25), (3, 3.0)],
)
def test_a_cost_that_is_not_a_finite_number_is_not_stored(cost: Any, stored: float | None) -> None:
    """Hypothesis found text "nan" stored as a NaN cost, which would make every sum NaN."""
    row, _ = otlp._span(
        "01" * 16, "02" * 8, None, "chat", 1, 10**18, 10**18 + 1000,
        (datetime(2001, 9, 9, tzinfo=UTC), datetime(2001, 9, 9, tzinfo=UTC)),
        0, {"gen_ai.usage.cost": cost}, {}, None, otlp.AttributePolicy(), otlp.DecodedTraces(),
    )  # fmt: skip
    assert row.cost_usd == stored


@settings(max_examples=300, deadline=None)
@given(attrs=st.dictionaries(st.sampled_from(CONVENTION_NAMES), _attribute_values, max_size=8))
def test_a_rows_convention_fields_are_their_plain_definitions(attrs: dict[str, Any]) -> None:
    row, _ = otlp._span(
        "01" * 16, "02" * 8, None, "chat", 1, 10**18, 10**18 + 1000,
        (datetime(2001, 9, 9, tzinfo=UTC), datetime(2001, 9, 9, tzinfo=UTC)),
        0, attrs, {}, None, otlp.AttributePolicy(), otlp.DecodedTraces(),
    )  # fmt: skip
    first = otlp._first
    assert (
        row.unit_id,
        row.flag_key,
        row.variation,
        row.gen_ai_model,
        row.input_tokens,
        row.output_tokens,
        row.cost_usd,
        row.cancelled,
        row.response_id,
    ) == (
        otlp._text(first(attrs, "feature_flag.context.id", "ramplight.unit_id")),
        otlp._text(attrs.get("feature_flag.key")),
        otlp._text(first(attrs, "feature_flag.result.variant", "feature_flag.variant")),
        otlp._text(first(attrs, "gen_ai.response.model", "gen_ai.request.model")),
        otlp._integer(first(attrs, "gen_ai.usage.input_tokens", "gen_ai.usage.prompt_tokens")),
        otlp._integer(first(attrs, "gen_ai.usage.output_tokens", "gen_ai.usage.completion_tokens")),
        otlp._number(attrs.get("gen_ai.usage.cost")),
        True if otlp.cancelled_by(attrs.get("error.type")) else None,
        otlp._text(attrs.get("gen_ai.response.id")),
    )


@settings_
@given(
    names=st.lists(st.sampled_from(NAMES), max_size=6),
    allow=st.sets(st.sampled_from(NAMES), max_size=2),
    deny=st.sets(st.sampled_from(NAMES), max_size=2),
)
def test_a_policy_that_already_knows_every_name_filters_as_it_did_the_first_time(
    names: list[str], allow: set[str], deny: set[str]
) -> None:
    policy = otlp.AttributePolicy(allow, deny)
    attributes = {name: i for i, name in enumerate(names)}
    first = policy.filter(dict(attributes))
    assert policy.filter(dict(attributes)) == first
    assert first[0] == {k: v for k, v in attributes.items() if policy.keeps(k)}


def test_a_span_just_past_the_attribute_limit_is_rejected_alone() -> None:
    def span(i: int, size: int) -> Span:
        value = AnyValue(string_value="x" * size)
        return Span(
            trace_id=b"\x01" * 16,
            span_id=bytes([i + 1]) * 8,
            name="chat",
            start_time_unix_nano=1_700_000_000_000_000_000,
            end_time_unix_nano=1_700_000_001_000_000_000,
            attributes=[KeyValue(key="a", value=value)],
        )

    limit = otlp.MAX_SPAN_ATTRIBUTES_BYTES
    fits = limit - len('{"a":""}')
    request = ExportTraceServiceRequest(
        resource_spans=[ResourceSpans(scope_spans=[ScopeSpans(spans=[span(0, fits), span(1, fits + 1)])])]
    )
    decoded = otlp.decode_protobuf(request.SerializeToString(), otlp.AttributePolicy())
    assert [s.span_id for s in decoded.spans] == ["0101010101010101"]
    assert decoded.rejected == [f"span 'chat': its attributes are over {limit} bytes"]
