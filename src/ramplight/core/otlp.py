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
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import msgspec

from ramplight.core.contract import AcceptedItems, Item, ValidatedBatch, log_lines
from ramplight.core.errors import ValidationError
from ramplight.core.identity import canonical_forms, identity_keys, payload_hashes

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
    # The server's fields (as on the other evidence kinds), unset on intake.
    event_id: str | None = None
    environment: str | None = None
    received_at: datetime | None = None
    identity: int | None = None
    payload_hash: int | None = None

    @property
    def ts(self) -> datetime:
        return self.start_ts


@dataclass(frozen=True, slots=True)
class AttributePolicy:
    """Which attribute names are kept: content names are dropped unless allowed; denied names
    are always dropped. A name matches itself and every `name.…` below it."""

    allow: frozenset[str] = frozenset()
    deny: frozenset[str] = frozenset()

    def keeps(self, name: str) -> bool:
        if _matches(name, self.deny):
            return False
        return not _matches(name, CONTENT_ATTRIBUTES) or _matches(name, self.allow)


def _matches(name: str, names: Iterable[str]) -> bool:
    return any(name == n or name.startswith(n + ".") for n in names)


@dataclass(slots=True)
class DecodedTraces:
    spans: list[Span] = field(default_factory=list)
    rejected: list[str] = field(default_factory=list)
    """One reason per span rejected on its own."""
    dropped_attributes: int = 0


class OtlpError(ValidationError):
    """A request that is not OTLP: 400, as the protocol says (the other spans are not judged)."""

    status_code = 400
    code = "bad_otlp"


class _Rejected(Exception):
    """One span that cannot be stored: counted in the partial success, the others kept."""


def _hex_id(raw: bytes | str, size: int, what: str, required: bool = True) -> str | None:
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


def _time(nanos: int, what: str) -> datetime:
    if not 0 < nanos < 2**63:
        raise _Rejected(f"{what} {nanos} is not a time in Unix nanoseconds")
    return _EPOCH + timedelta(microseconds=nanos // 1000)


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
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return None
    return None


def _text(value: Any) -> str | None:
    return (
        value
        if isinstance(value, str) and value
        else (str(value) if isinstance(value, int | float) else None)
    )


def _first(attrs: Mapping[str, Any], *names: str) -> Any:
    for name in names:
        if name in attrs:
            return attrs[name]
    return None


def _span(
    trace_id: str,
    span_id: str,
    parent: str | None,
    name: str,
    kind: int,
    start_ns: int,
    end_ns: int,
    status: int,
    attrs: dict[str, Any],
    resource: Mapping[str, Any],
    policy: AttributePolicy,
    out: DecodedTraces,
) -> Span:
    if not name:
        raise _Rejected("name is missing")
    start, end = _time(start_ns, "startTimeUnixNano"), _time(end_ns, "endTimeUnixNano")
    if end_ns < start_ns:
        raise _Rejected("ends before it starts")
    kept: dict[str, Any] = {}
    for key, value in attrs.items():
        if policy.keeps(key):
            kept[key] = value
        else:
            out.dropped_attributes += 1
    for key, value in resource.items():
        if policy.keeps(key):
            kept.setdefault(f"resource.{key}", value)
        else:
            out.dropped_attributes += 1
    if len(msgspec.json.encode(kept)) > MAX_SPAN_ATTRIBUTES_BYTES:
        raise _Rejected(f"its attributes are over {MAX_SPAN_ATTRIBUTES_BYTES} bytes")
    return Span(
        trace_id=trace_id,
        span_id=span_id,
        parent_span_id=parent,
        name=name[:500],
        kind=_KINDS[kind] if 0 < kind < len(_KINDS) else None,
        start_ts=start,
        end_ts=end,
        duration_ms=(end_ns - start_ns) / 1e6,
        status=_STATUS[status] if 0 <= status < len(_STATUS) else None,
        service=_text(resource.get("service.name")),
        unit_id=_text(_first(attrs, "feature_flag.context.id", "ramplight.unit_id")),
        flag_key=_text(attrs.get("feature_flag.key")),
        variation=_text(_first(attrs, "feature_flag.result.variant", "feature_flag.variant")),
        gen_ai_model=_text(_first(attrs, "gen_ai.response.model", "gen_ai.request.model")),
        input_tokens=_integer(_first(attrs, "gen_ai.usage.input_tokens", "gen_ai.usage.prompt_tokens")),
        output_tokens=_integer(_first(attrs, "gen_ai.usage.output_tokens", "gen_ai.usage.completion_tokens")),
        cost_usd=_number(attrs.get("gen_ai.usage.cost")),
        attributes=kept or None,
    )


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
    return {kv.key: _pb_value(kv.value) for kv in attributes}


def decode_protobuf(body: bytes, policy: AttributePolicy) -> DecodedTraces:
    from google.protobuf.message import DecodeError
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

    try:
        request = ExportTraceServiceRequest.FromString(body)
    except DecodeError as exc:
        raise OtlpError.at("body", f"not an OTLP ExportTraceServiceRequest (protobuf): {exc}") from None
    out = DecodedTraces()
    for resource_spans in request.resource_spans:
        resource = _pb_attributes(resource_spans.resource.attributes)
        for scope_spans in resource_spans.scope_spans:
            for span in scope_spans.spans:
                try:
                    out.spans.append(
                        _span(
                            _hex_id(span.trace_id, 16, "traceId") or "",
                            _hex_id(span.span_id, 8, "spanId") or "",
                            _hex_id(span.parent_span_id, 8, "parentSpanId", required=False),
                            span.name,
                            span.kind,
                            span.start_time_unix_nano,
                            span.end_time_unix_nano,
                            span.status.code,
                            _pb_attributes(span.attributes),
                            resource,
                            policy,
                            out,
                        )
                    )
                except _Rejected as exc:
                    out.rejected.append(f"span {span.name[:80]!r}: {exc}")
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


def decode_json(body: bytes, policy: AttributePolicy) -> DecodedTraces:
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
            resource = _json_attributes((resource_spans.get("resource") or {}).get("attributes") or [])
        except _Rejected as exc:
            raise OtlpError.at("resourceSpans.resource.attributes", str(exc)) from None
        for scope_spans in _objects(resource_spans.get("scopeSpans"), "resourceSpans.scopeSpans"):
            for span in _objects(scope_spans.get("spans"), "resourceSpans.scopeSpans.spans"):
                raw_name = span.get("name")
                name: str = raw_name if isinstance(raw_name, str) else ""
                raw_status = span.get("status")
                status: dict[str, Any] = raw_status if isinstance(raw_status, dict) else {}
                try:
                    out.spans.append(
                        _span(
                            _hex_id(_str(span.get("traceId")), 16, "traceId") or "",
                            _hex_id(_str(span.get("spanId")), 8, "spanId") or "",
                            _hex_id(_str(span.get("parentSpanId")), 8, "parentSpanId", required=False),
                            name,
                            _enum(span.get("kind"), _KINDS, "SPAN_KIND_"),
                            _nanos(span.get("startTimeUnixNano"), "startTimeUnixNano"),
                            _nanos(span.get("endTimeUnixNano"), "endTimeUnixNano"),
                            _enum(status.get("code"), _STATUS, "STATUS_CODE_"),
                            _json_attributes(span.get("attributes") or []),
                            resource,
                            policy,
                            out,
                        )
                    )
                except _Rejected as exc:
                    out.rejected.append(f"span {name[:80]!r}: {exc}")
    return out


def _str(value: Any) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise _Rejected(f"an id must be a hex string, not {value!r}")
    return value


def accept_spans(spans: list[Span], environment: str, now: datetime) -> ValidatedBatch:
    """The decoded spans as a validated batch of kind `spans`: each with its identity
    (environment, `spans`, trace id + span id) — a span re-exported by a retrying exporter is
    stored once — its payload hash and its log line, as `validate_batch` gives the other kinds."""
    accepted = AcceptedItems()
    if spans:
        accepted.items.extend(cast("list[Item]", spans))  # a kind of its own, stored like the others
        accepted.indexes.extend(range(len(spans)))
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
