"""OTLP trace requests (protobuf or JSON) as rows of `spans`, joined to flags, variations and units
through the OpenTelemetry semantic conventions.

One decoder per encoding walks the request and hands each span's parts to `_span`, so both give
the same rows: ids in lowercase hex, times from Unix nanoseconds, the kind and status by name,
the service from the resource. The conventions' names are read as they are (docs/traces.md):

- flag and unit: `feature_flag.key`, `feature_flag.result.variant` (or the renamed
  `feature_flag.variant`), `feature_flag.context.id` (else `ramplight.unit_id`);
- GenAI: `gen_ai.response.model` (else `gen_ai.request.model`), `gen_ai.usage.input_tokens` and
  `gen_ai.usage.output_tokens` as they are — input already counts cache reads, output already
  counts reasoning tokens, so nothing is added to them (the deprecated `prompt_tokens` /
  `completion_tokens` are read when the new names are absent); a cost from `gen_ai.usage.cost`.

Prompt and completion text never reaches the store or the log: the content attributes
(`gen_ai.input.messages`, `gen_ai.output.messages`, `gen_ai.system_instructions`, tool call
arguments and results, the older `gen_ai.prompt` / `gen_ai.completion`) are dropped at intake
and counted, unless an operator allows a name (`RAMPLIGHT_SPAN_ATTRIBUTES_ALLOW`); names in
`RAMPLIGHT_SPAN_ATTRIBUTES_DENY` are dropped too. A span that cannot be stored (a bad id, an end
before its start, attributes past the size limit) is rejected on its own and counted in the
answer's partial success; the other spans of the request are kept.
"""

from __future__ import annotations

import base64
import math
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import msgspec

from ramplight.core.contract import AcceptedItems, Item, ValidatedBatch, log_lines
from ramplight.core.errors import ValidationError
from ramplight.core.identity import canonical_form, canonical_forms, identity_keys, payload_hashes

MAX_SPAN_ATTRIBUTES_BYTES = 16 * 1024
"""A span's stored attributes, encoded; a span past it is rejected (the others are kept)."""

CONTENT_ATTRIBUTES: tuple[str, ...] = (
    "gen_ai.input.messages",
    "gen_ai.output.messages",
    "gen_ai.system_instructions",
    "gen_ai.tool.call.arguments",
    "gen_ai.tool.call.result",
    "gen_ai.tool.definitions",
    "gen_ai.prompt",
    "gen_ai.completion",
)
"""Prompt and completion content: dropped at intake (with any `name.…` below it) unless allowed."""

_KINDS = ("unspecified", "internal", "server", "client", "producer", "consumer")
_STATUS = ("unset", "ok", "error")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_ZEROS = {16: bytes(16), 8: bytes(8)}
_FLOAT_EXACT_NANOS = 2**62
"""Below this (year 2116, under 2³³ s), whole microseconds as a float divided by 10⁶ are within
half an ulp (< 0.5 µs; 0.12 µs before 2038) of the exact time, which the conversion to a datetime
rounds back to the exact microsecond."""


class Span(msgspec.Struct, frozen=True, omit_defaults=True):
    """One row of `spans` as the client's request gave it (the server adds its fields)."""

    trace_id: str
    span_id: str
    name: str
    start_ts: datetime
    end_ts: datetime
    duration_ms: float
    parent_span_id: str | None = None
    kind: str | None = None
    status: str | None = None
    service: str | None = None
    unit_id: str | None = None
    flag_key: str | None = None
    variation: str | None = None
    gen_ai_model: str | None = None
    input_tokens: int | None = None
    output_tokens: int | None = None
    cost_usd: float | None = None
    attributes: dict[str, Any] | None = None
    cancelled: bool | None = None
    """The caller cancelled this operation (`cancelled_by`); None when it was not."""
    response_id: str | None = None
    """`gen_ai.response.id`: the provider's id of a generation (evals judging it name it too)."""
    # The server's fields (as on the other evidence kinds), unset on intake.
    event_id: str | None = None
    environment: str | None = None
    received_at: datetime | None = None
    identity: int | None = None
    payload_hash: int | None = None

    @property
    def ts(self) -> datetime:
        return self.start_ts


class AttributePolicy:
    """Which attribute names are kept: content names are dropped unless allowed; denied names
    are always dropped. A name matches itself and every `name.…` below it. Decisions are
    remembered per name (a service sends the same few dozen names over and over)."""

    __slots__ = ("_decided", "_kept", "allow", "deny")

    def __init__(self, allow: Iterable[str] = (), deny: Iterable[str] = ()) -> None:
        self.allow = frozenset(allow)
        self.deny = frozenset(deny)
        self._decided: dict[str, bool] = {}
        self._kept: set[str] = set()
        """The names decided kept: a span whose names are all in it is taken as it is."""

    def keeps(self, name: str) -> bool:
        decided = self._decided.get(name)
        if decided is None:
            if len(self._decided) > 10_000:  # names from a misbehaving client: do not grow forever
                self._decided.clear()
                self._kept.clear()
            decided = self._decided[name] = not _matches(name, self.deny) and (
                not _matches(name, CONTENT_ATTRIBUTES) or _matches(name, self.allow)
            )
            if decided:
                self._kept.add(name)
        return decided

    def filter(self, attributes: dict[str, Any], prefix: str = "") -> tuple[dict[str, Any], int]:
        """The attributes kept (names under `prefix`), and how many were dropped; `attributes`
        itself when nothing is dropped or renamed."""
        if not prefix and self._kept.issuperset(attributes):  # the usual span: one set operation
            return attributes, 0
        kept = {prefix + k: v for k, v in attributes.items() if self.keeps(k)}
        return kept, len(attributes) - len(kept)


def _matches(name: str, names: Iterable[str]) -> bool:
    return any(name == n or name.startswith(n + ".") for n in names)


@dataclass(slots=True)
class DecodedTraces:
    spans: list[Span] = field(default_factory=list)
    canonicals: list[bytes] = field(default_factory=list)
    """Each span's canonical form, computed once: its payload hash and log line come from it."""
    rejected: list[str] = field(default_factory=list)
    """One reason per span rejected on its own."""
    dropped_attributes: int = 0
    exposures: list[dict[str, Any]] = field(default_factory=list)
    """Flag evaluations recorded as span events or as spans of their own (`flag_exposure`)."""
    not_exposures: list[str] = field(default_factory=list)
    """Why each other flag evaluation record did not count as an exposure."""

    def evaluation(
        self,
        attrs: Mapping[str, Any],
        time_ns: int,
        span: Span,
        assignment_unit: Callable[[str], str | None],
        what: str,
    ) -> None:
        found = flag_exposure(attrs, time_ns, span.trace_id, span.unit_id, assignment_unit)
        if found is None:
            return
        if isinstance(found, str):
            self.not_exposures.append(f"{what} in span {span.name[:80]!r}: {found}")
        else:
            self.exposures.append(found)


class OtlpError(ValidationError):
    """A request that is not OTLP: 400, as the protocol says (the other spans are not judged)."""

    status_code = 400
    code = "bad_otlp"


class _Rejected(Exception):
    """One span that cannot be stored: counted in the partial success, the others kept."""


def _hex_id(raw: bytes | str, size: int, what: str, required: bool = True) -> str | None:
    if raw.__class__ is bytes and len(raw) == size and raw != _ZEROS[size]:  # the usual protobuf id
        return raw.hex()
    if isinstance(raw, str):
        text = raw.lower()
        try:
            raw = bytes.fromhex(text)
        except ValueError:
            raise _Rejected(f"{what} {text[:40]!r} is not hex") from None
    if not raw:
        if required:
            raise _Rejected(f"{what} is missing")
        return None
    if len(raw) != size or not any(raw):
        raise _Rejected(f"{what} must be {size} bytes, not all zero")
    return raw.hex()


def _times(nanos: list[int]) -> list[datetime | None]:
    """Unix nanoseconds as UTC datetimes truncated to the microsecond, all in one conversion (one
    at a time, they were the costliest step of a span); None for a value that is not a time."""
    seconds = [n // 1000 / 1e6 if 0 < n < _FLOAT_EXACT_NANOS else 0.0 for n in nanos]
    # ~50 ns a time in one call, but the call costs ~1 µs: one span's times go one by one.
    times: list[datetime | None] = (
        msgspec.convert(seconds, list[datetime], strict=False)
        if len(seconds) > 8
        else [datetime.fromtimestamp(t, UTC) for t in seconds]
    )
    if nanos and not 0 < min(nanos) <= max(nanos) < _FLOAT_EXACT_NANOS:
        for i, n in enumerate(nanos):
            if not 0 < n < _FLOAT_EXACT_NANOS:
                times[i] = _EPOCH + timedelta(microseconds=n // 1000) if 0 < n < 2**63 else None
    return times


def _integer(value: Any) -> int | None:
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str):
        try:
            return int(value)
        except ValueError:
            return None
    return None


def _number(value: Any) -> float | None:
    """A finite number, or None: a cost of "nan" or "inf" (text or float) would poison every sum."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        number = float(value)
    elif isinstance(value, str):
        try:
            number = float(value)
        except ValueError:
            return None
    else:
        return None
    return number if math.isfinite(number) else None


def _text(value: Any) -> str | None:
    if value is None:  # most names are absent from most spans
        return None
    return (
        value
        if isinstance(value, str) and value
        else (str(value) if isinstance(value, int | float) else None)
    )


def cancelled_by(value: Any) -> bool:
    """An `error.type`, status message or exception type that names a cancellation: `cancelled`,
    `canceled`, `asyncio.CancelledError`, gRPC's `CANCELLED`, … (docs/traces.md)."""
    return isinstance(value, str) and "cancel" in value.lower()


def _cancelled(row: Span, status_message: Any, events: Iterable[tuple[Any, Mapping[str, Any]]]) -> bool:
    """A span's cancellation told by its error status's message or a recorded exception event
    (`error.type` already decided `row.cancelled`). Most spans have neither: nothing is read."""
    return (row.status == "error" and cancelled_by(status_message)) or any(
        name == "exception" and cancelled_by(attrs.get("exception.type")) for name, attrs in events
    )


def _first(attrs: Mapping[str, Any], name: str, fallback: str) -> Any:
    """The value of `name` if present (even null), else of `fallback`."""
    return attrs.get(name, attrs.get(fallback))


def _span(
    trace_id: str,
    span_id: str,
    parent: str | None,
    name: str,
    kind: int,
    start_ns: int,
    end_ns: int,
    times: tuple[datetime | None, datetime | None],
    status: int,
    attrs: dict[str, Any],
    resource: Mapping[str, Any],
    service: str | None,
    policy: AttributePolicy,
    out: DecodedTraces,
) -> tuple[Span, bytes]:
    """The span's row and its canonical form (core/identity.py), or `_Rejected`. `times` are
    the start and end as `_times` gives them; `service` is the resource's `service.name`."""
    if not name:
        raise _Rejected("name is missing")
    start, end = times
    if start is None:
        raise _Rejected(f"startTimeUnixNano {start_ns} is not a time in Unix nanoseconds")
    if end is None:
        raise _Rejected(f"endTimeUnixNano {end_ns} is not a time in Unix nanoseconds")
    if end_ns < start_ns:
        raise _Rejected("ends before it starts")
    kept, dropped = policy.filter(attrs)
    out.dropped_attributes += dropped
    if resource:
        kept = {**resource, **kept}  # the span's own attribute wins a name both have
    # The conventions' names, read inline: most are absent from most spans, and a call per
    # name (`_first`, `_text`) cost more than the rest of the row (the helpers decide the rest).
    get = attrs.get
    unit = get("feature_flag.context.id", get("ramplight.unit_id"))
    key = get("feature_flag.key")
    variant = get("feature_flag.result.variant", get("feature_flag.variant"))
    model = get("gen_ai.response.model", get("gen_ai.request.model"))
    inputs = get("gen_ai.usage.input_tokens", get("gen_ai.usage.prompt_tokens"))
    outputs = get("gen_ai.usage.output_tokens", get("gen_ai.usage.completion_tokens"))
    cost = get("gen_ai.usage.cost")
    error = get("error.type")
    response = get("gen_ai.response.id")
    row = Span(
        trace_id=trace_id,
        span_id=span_id,
        parent_span_id=parent,
        name=name[:500],
        kind=_KINDS[kind] if 0 < kind < len(_KINDS) else None,
        start_ts=start,
        end_ts=end,
        duration_ms=(end_ns - start_ns) / 1e6,
        status=_STATUS[status] if 0 <= status < len(_STATUS) else None,
        service=service,
        unit_id=unit if unit is None or (unit.__class__ is str and unit) else _text(unit),
        flag_key=key if key is None or (key.__class__ is str and key) else _text(key),
        variation=variant if variant is None or (variant.__class__ is str and variant) else _text(variant),
        gen_ai_model=model if model is None or (model.__class__ is str and model) else _text(model),
        input_tokens=inputs if inputs is None or inputs.__class__ is int else _integer(inputs),
        output_tokens=outputs if outputs is None or outputs.__class__ is int else _integer(outputs),
        cost_usd=None if cost is None else _number(cost),
        attributes=kept or None,
        cancelled=True if error is not None and cancelled_by(error) else None,
        response_id=response
        if response is None or (response.__class__ is str and response)
        else _text(response),
    )
    canonical = canonical_form(row)
    # The attributes are encoded inside the canonical form: only a long one needs them measured.
    if (
        len(canonical) > MAX_SPAN_ATTRIBUTES_BYTES
        and len(msgspec.json.encode(kept)) > MAX_SPAN_ATTRIBUTES_BYTES
    ):
        raise _Rejected(f"its attributes are over {MAX_SPAN_ATTRIBUTES_BYTES} bytes")
    return row, canonical


# -- protobuf ----------------------------------------------------------------------------------


def _pb_value(value: Any) -> Any:
    which = value.WhichOneof("value")
    if which is None:
        return None
    if which == "array_value":
        return [_pb_value(v) for v in value.array_value.values]
    if which == "kvlist_value":
        return {kv.key: _pb_value(kv.value) for kv in value.kvlist_value.values}
    if which == "bytes_value":
        return base64.b64encode(value.bytes_value).decode()
    return getattr(value, which)


def _pb_attributes(attributes: Iterable[Any]) -> dict[str, Any]:
    out = {}
    for kv in attributes:
        value = kv.value
        # A non-empty string or non-zero integer can only be the oneof's member that is set, and
        # two reads cost less than WhichOneof and getattr (most values are one or the other).
        scalar = value.string_value or value.int_value
        out[kv.key] = scalar if scalar else _pb_value(value)
    return out


def _no_flags(key: str) -> str | None:
    return None


def decode_protobuf(
    body: bytes, policy: AttributePolicy, assignment_unit: Callable[[str], str | None] = _no_flags
) -> DecodedTraces:
    from google.protobuf.message import DecodeError
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

    try:
        request = ExportTraceServiceRequest.FromString(body)
    except DecodeError as exc:
        raise OtlpError.at("body", f"not an OTLP ExportTraceServiceRequest (protobuf): {exc}") from None
    out = DecodedTraces()
    for resource_spans in request.resource_spans:
        resource, dropped = policy.filter(_pb_attributes(resource_spans.resource.attributes), "resource.")
        out.dropped_attributes += dropped
        service = _text(resource.get("resource.service.name"))
        for scope_spans in resource_spans.scope_spans:
            spans = scope_spans.spans
            nanos = [n for span in spans for n in (span.start_time_unix_nano, span.end_time_unix_nano)]
            times = _times(nanos)
            for i, span in enumerate(spans):
                name = span.name  # each read of a field builds a new object: read each once
                status = span.status
                try:
                    attrs = _pb_attributes(span.attributes)
                    trace_id, span_id, parent = span.trace_id, span.span_id, span.parent_span_id
                    row, canonical = _span(
                        trace_id.hex()  # the usual ids, as `_hex_id` takes them, without its call
                        if len(trace_id) == 16 and trace_id != _ZEROS[16]
                        else _hex_id(trace_id, 16, "traceId") or "",
                        span_id.hex()
                        if len(span_id) == 8 and span_id != _ZEROS[8]
                        else _hex_id(span_id, 8, "spanId") or "",
                        parent.hex()
                        if len(parent) == 8 and parent != _ZEROS[8]
                        else _hex_id(parent, 8, "parentSpanId", required=False),
                        name,
                        span.kind,
                        nanos[2 * i],
                        nanos[2 * i + 1],
                        (times[2 * i], times[2 * i + 1]),
                        status.code,
                        attrs,
                        resource,
                        service,
                        policy,
                        out,
                    )
                except _Rejected as exc:
                    out.rejected.append(f"span {name[:80]!r}: {exc}")
                    continue
                events = span.events
                if (
                    not row.cancelled
                    and (events or row.status == "error")
                    and _cancelled(
                        row,
                        status.message,
                        ((e.name, _pb_attributes(e.attributes)) for e in events if e.name == "exception"),
                    )
                ):
                    row = msgspec.structs.replace(row, cancelled=True)
                    canonical = canonical_form(row)  # the log line is the canonical form
                out.spans.append(row)
                out.canonicals.append(canonical)
                if name in FLAG_EVALUATION_NAMES:
                    out.evaluation(attrs, nanos[2 * i], row, assignment_unit, "the span")
                if events:
                    for event in events:
                        event_name = event.name
                        if event_name in FLAG_EVALUATION_NAMES:
                            out.evaluation(
                                _pb_attributes(event.attributes),
                                event.time_unix_nano,
                                row,
                                assignment_unit,
                                f"event {event_name!r}",
                            )
    return out


# -- JSON --------------------------------------------------------------------------------------


def _json_value(value: Any) -> Any:
    if not isinstance(value, dict) or len(value) != 1:
        raise _Rejected(f"an attribute value must be an AnyValue object, not {str(value)[:60]!r}")
    ((which, inner),) = value.items()
    if which == "stringValue" and isinstance(inner, str):
        return inner
    if which == "boolValue" and isinstance(inner, bool):
        return inner
    if which == "intValue":
        number = _integer(inner)
        if number is None or isinstance(inner, bool | float):
            raise _Rejected(f"intValue {inner!r} is not an integer")
        return number
    if which == "doubleValue" and isinstance(inner, int | float) and not isinstance(inner, bool):
        return float(inner)
    if which == "arrayValue" and isinstance(inner, dict):
        return [_json_value(v) for v in inner.get("values") or []]
    if which == "kvlistValue" and isinstance(inner, dict):
        return _json_attributes(inner.get("values") or [])
    if which == "bytesValue" and isinstance(inner, str):
        return inner
    raise _Rejected(f"{which} {str(inner)[:60]!r} is not a valid AnyValue")


def _json_attributes(attributes: Any) -> dict[str, Any]:
    if not isinstance(attributes, list):
        raise _Rejected("attributes must be a list of {key, value}")
    out = {}
    for kv in attributes:
        if not isinstance(kv, dict) or not isinstance(kv.get("key"), str):
            raise _Rejected("an attribute needs a string key")
        out[kv["key"]] = _json_value(kv["value"]) if kv.get("value") else None
    return out


def _nanos(value: Any, what: str) -> int:
    number = _integer(value) if not isinstance(value, bool | float) else None
    if number is None:
        raise _Rejected(f"{what} {value!r} is not an integer (JSON: a string or a number)")
    return number


def _enum(value: Any, names: tuple[str, ...], prefix: str) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and value.startswith(prefix):
        name = value.removeprefix(prefix).lower()
        return names.index(name) if name in names else -1
    return 0 if value is None else -1


def _objects(value: Any, what: str) -> Iterator[dict[str, Any]]:
    if value is None:
        return
    if not isinstance(value, list):
        raise OtlpError.at(what, "must be a list")
    for item in value:
        if not isinstance(item, dict):
            raise OtlpError.at(what, "must hold objects")
        yield item


def decode_json(
    body: bytes, policy: AttributePolicy, assignment_unit: Callable[[str], str | None] = _no_flags
) -> DecodedTraces:
    """OTLP/JSON: ids in hex (not base64), 64-bit integers as strings or numbers, enums as
    integers (their names too), camelCase field names."""
    try:
        request = msgspec.json.decode(body)
    except (msgspec.DecodeError, UnicodeDecodeError, RecursionError) as exc:
        raise OtlpError.at("body", f"not JSON: {exc}") from None
    if not isinstance(request, dict):
        raise OtlpError.at("body", "must be an ExportTraceServiceRequest object")
    out = DecodedTraces()
    for resource_spans in _objects(request.get("resourceSpans"), "resourceSpans"):
        try:
            raw = _json_attributes((resource_spans.get("resource") or {}).get("attributes") or [])
        except _Rejected as exc:
            raise OtlpError.at("resourceSpans.resource.attributes", str(exc)) from None
        resource, dropped = policy.filter(raw, "resource.")
        out.dropped_attributes += dropped
        service = _text(resource.get("resource.service.name"))
        for scope_spans in _objects(resource_spans.get("scopeSpans"), "resourceSpans.scopeSpans"):
            for span in _objects(scope_spans.get("spans"), "resourceSpans.scopeSpans.spans"):
                raw_name = span.get("name")
                name: str = raw_name if isinstance(raw_name, str) else ""
                raw_status = span.get("status")
                status: dict[str, Any] = raw_status if isinstance(raw_status, dict) else {}
                try:
                    attrs = _json_attributes(span.get("attributes") or [])
                    trace_id = _hex_id(_str(span.get("traceId")), 16, "traceId") or ""
                    span_id = _hex_id(_str(span.get("spanId")), 8, "spanId") or ""
                    parent = _hex_id(_str(span.get("parentSpanId")), 8, "parentSpanId", required=False)
                    start_ns = _nanos(span.get("startTimeUnixNano"), "startTimeUnixNano")
                    end_ns = _nanos(span.get("endTimeUnixNano"), "endTimeUnixNano")
                    start, end = _times([start_ns, end_ns])
                    row, canonical = _span(
                        trace_id,
                        span_id,
                        parent,
                        name,
                        _enum(span.get("kind"), _KINDS, "SPAN_KIND_"),
                        start_ns,
                        end_ns,
                        (start, end),
                        _enum(status.get("code"), _STATUS, "STATUS_CODE_"),
                        attrs,
                        resource,
                        service,
                        policy,
                        out,
                    )
                    events = [
                        (
                            e.get("name"),
                            _nanos(e.get("timeUnixNano") or 0, "event time"),
                            _json_attributes(e.get("attributes") or []),
                        )
                        for e in _span_events(span.get("events"))
                    ]
                except _Rejected as exc:
                    out.rejected.append(f"span {name[:80]!r}: {exc}")
                    continue
                if not row.cancelled and _cancelled(
                    row, status.get("message"), ((n, a) for n, _, a in events)
                ):
                    row = msgspec.structs.replace(row, cancelled=True)
                    canonical = canonical_form(row)  # the log line is the canonical form
                out.spans.append(row)
                out.canonicals.append(canonical)
                if name in FLAG_EVALUATION_NAMES:
                    out.evaluation(
                        attrs,
                        _nanos(span.get("startTimeUnixNano"), "start"),
                        row,
                        assignment_unit,
                        "the span",
                    )
                for event_name, event_ns, event_attrs in events:
                    if event_name in FLAG_EVALUATION_NAMES:
                        out.evaluation(event_attrs, event_ns, row, assignment_unit, f"event {event_name!r}")
    return out


def _span_events(value: Any) -> list[dict[str, Any]]:
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(e, dict) for e in value):
        raise _Rejected("events must be a list of objects")
    return value


def _str(value: Any) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise _Rejected(f"an id must be a hex string, not {value!r}")
    return value


def accept_spans(
    spans: list[Span], environment: str, now: datetime, canonicals: list[bytes] | None = None
) -> ValidatedBatch:
    """The decoded spans as a validated batch of kind `spans`: each with its identity
    (environment, `spans`, trace id + span id) — a span re-exported by a retrying exporter is
    stored once — its payload hash and its log line, as `validate_batch` gives the other kinds.
    `canonicals` are the spans' canonical forms when the decoder has them (`DecodedTraces`)."""
    accepted = AcceptedItems()
    if spans:
        accepted.items.extend(cast("list[Item]", spans))  # a kind of its own, stored like the others
        accepted.indexes.extend(range(len(spans)))
        if canonicals is None:
            canonicals = canonical_forms(spans)
        accepted.event_ids.extend(s.trace_id + s.span_id for s in spans)
        accepted.identities.extend(identity_keys(environment, "spans", accepted.event_ids))
        accepted.payload_hashes.extend(payload_hashes(canonicals))
        accepted.lines.extend(
            log_lines(
                canonicals, environment, accepted.event_ids, accepted.identities, accepted.payload_hashes, now
            )
        )
    return ValidatedBatch(kinds={"spans": accepted}, problems=(), environment=environment, received_at=now)


def judge_traces(
    body: bytes, json: bool, policy: AttributePolicy, environment: str, now: datetime
) -> tuple[DecodedTraces, int, ValidatedBatch]:
    """A whole trace request decoded and judged as far as it can be without the server's state:
    (what was decoded, without the rows, which would cost more to send than they saved;
    how many spans; the spans' identities, payload hashes and log lines). What a span-decoding
    worker process does (server/workers.py); the identity check and the log stay in the
    server. Exposures say `assignment_unit` "unknown": the server sets it from its flags."""
    decoded = (decode_json if json else decode_protobuf)(body, policy)
    validated = accept_spans(decoded.spans, environment, now, decoded.canonicals)
    count = len(decoded.spans)
    decoded.spans = []
    decoded.canonicals = []
    validated.kinds["spans"].items.clear()
    return decoded, count, validated


# -- flag evaluations and evaluation results: exposures and evals ---------------------------------

FLAG_EVALUATION_NAMES = ("feature_flag.evaluation", "feature_flag")
"""Event, log-record and span names of an OpenTelemetry flag evaluation record (current, older)."""
EVALUATION_RESULT = "gen_ai.evaluation.result"
RAMPLIGHT_PROVIDER = "ramplight"
"""`feature_flag.provider.name` of the events Ramplight's own SDK records (not exposures here)."""
DEFAULT_EVALUATOR = "llm_judge"
"""Who scored a `gen_ai.evaluation.result` that does not say (`ramplight.evaluator`)."""


def _iso(nanos: int) -> str:
    return (_EPOCH + timedelta(microseconds=nanos // 1000)).isoformat()


def flag_exposure(
    attrs: Mapping[str, Any],
    time_ns: int,
    trace_id: str | None,
    unit_fallback: str | None,
    assignment_unit: Callable[[str], str | None],
) -> dict[str, Any] | str | None:
    """An OpenTelemetry flag evaluation record as an exposure document, or why it is not one
    (None: a record of Ramplight's own SDK, whose exposure arrives on its own).

    The record says which variant the provider returned for which context: Ramplight counts it as
    the unit's exposure, assigned and served alike (a record cannot tell a fallback apart: an SDK
    that serves other than it assigned sends its own exposures). It does not count without a
    flag key, a variant (`feature_flag.result.variant` or `feature_flag.variant`: a value alone
    does not say which variation ran) or a unit (`feature_flag.context.id`, or the span's unit),
    nor when the evaluation failed (`error.type`, or reason `error`): the default a failed
    evaluation returns was not assigned to anyone."""
    key = _text(attrs.get("feature_flag.key"))
    variant = _text(_first(attrs, "feature_flag.result.variant", "feature_flag.variant"))
    unit = _text(attrs.get("feature_flag.context.id")) or unit_fallback
    provider = _text(_first(attrs, "feature_flag.provider.name", "feature_flag.provider_name"))
    if provider == RAMPLIGHT_PROVIDER:
        return None  # Ramplight's SDK sends the exposure itself, with the served variation
    reason = str(_first(attrs, "feature_flag.result.reason", "feature_flag.reason") or "").lower()
    if "error.type" in attrs or reason == "error":
        return "a failed evaluation (error.type or reason error) is not an exposure"
    if key is None:
        return "no feature_flag.key"
    if variant is None:
        return "no variant (feature_flag.result.variant): which variation ran is unknown"
    if unit is None:
        return "no unit (feature_flag.context.id)"
    if time_ns <= 0:
        return "no time"
    doc: dict[str, Any] = {
        "ts": _iso(time_ns),
        "flag_key": key,
        "assignment_unit": assignment_unit(key) or "unknown",
        "unit_id": unit,
        "assigned_variation": variant,
        "served_variation": variant,
        "sdk": f"otel:{provider}"[:100] if provider else "otel",
    }
    if trace_id:
        doc["trace_id"] = trace_id
    return doc


def evaluation_result(
    attrs: Mapping[str, Any], time_ns: int, trace_id: str | None, span_id: str | None
) -> dict[str, Any] | str:
    """A `gen_ai.evaluation.result` record as an eval score document, or why it is not one."""
    name = _text(attrs.get("gen_ai.evaluation.name"))
    score = _number(attrs.get("gen_ai.evaluation.score.value"))
    if name is None:
        return "no gen_ai.evaluation.name"
    if score is None:
        return "no numeric gen_ai.evaluation.score.value (a label alone cannot be averaged)"
    if time_ns <= 0:
        return "no time"
    doc: dict[str, Any] = {
        "ts": _iso(time_ns),
        "name": name,
        "score": score,
        "evaluator": _text(attrs.get("ramplight.evaluator")) or DEFAULT_EVALUATOR,
    }
    optional = {
        "label": _text(attrs.get("gen_ai.evaluation.score.label")),
        "comment": _text(attrs.get("gen_ai.evaluation.explanation")),
        "unit_id": _text(_first(attrs, "feature_flag.context.id", "ramplight.unit_id")),
        "flag_key": _text(attrs.get("feature_flag.key")),
        "variation": _text(_first(attrs, "feature_flag.result.variant", "feature_flag.variant")),
        "trace_id": trace_id,
        "span_id": span_id,
        "response_id": _text(attrs.get("gen_ai.response.id")),
    }
    doc.update({k: v[:1000] if k == "comment" else v for k, v in optional.items() if v is not None})
    return doc


@dataclass(slots=True)
class DecodedLogs:
    exposures: list[dict[str, Any]] = field(default_factory=list)
    evals: list[dict[str, Any]] = field(default_factory=list)
    rejected: list[str] = field(default_factory=list)
    """One reason per flag evaluation or evaluation result that could not be taken."""
    ignored: int = 0
    """Other log records: Ramplight is not a log store."""


def _log_record(
    event_name: str,
    attrs: dict[str, Any],
    time_ns: int,
    trace_id: str | None,
    span_id: str | None,
    assignment_unit: Callable[[str], str | None],
    out: DecodedLogs,
) -> None:
    name = event_name or _text(attrs.get("event.name")) or ""
    found: dict[str, Any] | str | None
    if name in FLAG_EVALUATION_NAMES:
        found = flag_exposure(attrs, time_ns, trace_id, None, assignment_unit)
        target = out.exposures
    elif name == EVALUATION_RESULT:
        found = evaluation_result(attrs, time_ns, trace_id, span_id)
        target = out.evals
    else:
        out.ignored += 1
        return
    if isinstance(found, str):
        out.rejected.append(f"{name} record: {found}")
    elif found is not None:
        target.append(found)


def decode_logs_protobuf(body: bytes, assignment_unit: Callable[[str], str | None]) -> DecodedLogs:
    from google.protobuf.message import DecodeError
    from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest

    try:
        request = ExportLogsServiceRequest.FromString(body)
    except DecodeError as exc:
        raise OtlpError.at("body", f"not an OTLP ExportLogsServiceRequest (protobuf): {exc}") from None
    out = DecodedLogs()
    for resource_logs in request.resource_logs:
        for scope_logs in resource_logs.scope_logs:
            for record in scope_logs.log_records:
                try:
                    trace_id = _hex_id(record.trace_id, 16, "traceId", required=False)
                    span_id = _hex_id(record.span_id, 8, "spanId", required=False)
                except _Rejected as exc:
                    out.rejected.append(f"log record: {exc}")
                    continue
                time_ns = record.time_unix_nano or record.observed_time_unix_nano
                attrs = _pb_attributes(record.attributes)
                _log_record(record.event_name, attrs, time_ns, trace_id, span_id, assignment_unit, out)
    return out


def decode_logs_json(body: bytes, assignment_unit: Callable[[str], str | None]) -> DecodedLogs:
    try:
        request = msgspec.json.decode(body)
    except (msgspec.DecodeError, UnicodeDecodeError, RecursionError) as exc:
        raise OtlpError.at("body", f"not JSON: {exc}") from None
    if not isinstance(request, dict):
        raise OtlpError.at("body", "must be an ExportLogsServiceRequest object")
    out = DecodedLogs()
    for resource_logs in _objects(request.get("resourceLogs"), "resourceLogs"):
        for scope_logs in _objects(resource_logs.get("scopeLogs"), "resourceLogs.scopeLogs"):
            for record in _objects(scope_logs.get("logRecords"), "resourceLogs.scopeLogs.logRecords"):
                try:
                    trace_id = _hex_id(_str(record.get("traceId")), 16, "traceId", required=False)
                    span_id = _hex_id(_str(record.get("spanId")), 8, "spanId", required=False)
                    time_ns = _nanos(
                        record.get("timeUnixNano") or record.get("observedTimeUnixNano") or 0, "time"
                    )
                    attrs = _json_attributes(record.get("attributes") or [])
                except _Rejected as exc:
                    out.rejected.append(f"log record: {exc}")
                    continue
                event_name = record.get("eventName") if isinstance(record.get("eventName"), str) else ""
                _log_record(event_name or "", attrs, time_ns, trace_id, span_id, assignment_unit, out)
    return out
