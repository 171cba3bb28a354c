"""OTLP/HTTP routes (`/v1/…`): any OpenTelemetry SDK or Collector exports here unchanged.

`POST /v1/traces` and `POST /v1/logs` take an Export…ServiceRequest as protobuf (`application/x-protobuf`) or
JSON (`application/json`), gzip-compressed or not, authenticated by an SDK key like the other
evidence routes (`Authorization: Bearer …`, e.g. `OTEL_EXPORTER_OTLP_HEADERS`). The spans go the
way of `/ingest/batch` — judged, given their identity, appended to the ingestion log and fsynced
before the answer — so acknowledged means durable and a re-export is stored once. The answer is
an ExportTraceServiceResponse in the request's encoding: empty when every span was taken, with
`partial_success` (rejected spans and why) when some were not; 400 for a request that is not
OTLP, 413 past the size limit, 503 with Retry-After while ingestion pushes back.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import msgspec
from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from ramplight.core import otlp
from ramplight.core.contract import validate_batch
from ramplight.core.errors import PayloadTooLarge
from ramplight.server.auth import InEnvironment, environment_scope
from ramplight.server.openapi import ErrorOut
from ramplight.server.routes.ingest import acknowledge, read_body, refuse_when_overloaded
from ramplight.server.state import ServerState
from ramplight.store.identity import Admitted, admit_batch

_encode = msgspec.json.Encoder().encode

router = APIRouter(prefix="/v1", tags=["otlp"], dependencies=[Depends(environment_scope)])

PROTOBUF = "application/x-protobuf"
JSON = "application/json"

_LOGS_DOC: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            PROTOBUF: {"schema": {"type": "string", "format": "binary"}},
            JSON: {"schema": {"type": "object", "description": "OTLP/JSON ExportLogsServiceRequest"}},
        },
    },
    "responses": {
        200: {
            "description": "ExportLogsServiceResponse: empty, or partial_success with rejected records",
            "content": {PROTOBUF: {}, JSON: {}},
        }
    },
}
_BODY_DOC: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            PROTOBUF: {"schema": {"type": "string", "format": "binary"}},
            JSON: {"schema": {"type": "object", "description": "OTLP/JSON ExportTraceServiceRequest"}},
        },
    },
    "responses": {
        200: {
            "description": "ExportTraceServiceResponse: empty, or partial_success with rejected spans",
            "content": {PROTOBUF: {}, JSON: {}},
        }
    },
}


def _inflate(body: bytes, limit: int) -> bytes:
    """A gzip body, refused past `limit` bytes decompressed (a small bomb stays small)."""
    inflater = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
    try:
        data = inflater.decompress(body, limit + 1)
    except zlib.error as exc:
        raise otlp.OtlpError.at("body", f"Content-Encoding is gzip but the body is not: {exc}") from None
    if len(data) > limit or inflater.unconsumed_tail:
        raise PayloadTooLarge(f"the decompressed body exceeds {limit} bytes (RAMPLIGHT_MAX_BATCH_BYTES)")
    return data


def _summary(reasons: list[str]) -> str:
    return "; ".join(reasons[:10]) + (f" (and {len(reasons) - 10} more)" if len(reasons) > 10 else "")


def _answer(rejected: list[str], warnings: list[str], encoding: str, what: str) -> Response:
    """The Export…ServiceResponse: `rejected` items counted in the partial success; `warnings`
    (taken, but not all of it counted as evidence) only in its message."""
    from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceResponse
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse

    message = _summary([*rejected, *warnings])
    if encoding == JSON:
        if not message:
            return Response(b"{}", media_type=JSON)
        body = {"partialSuccess": {f"rejected{what}": str(len(rejected)), "errorMessage": message}}
        return Response(_encode(body), media_type=JSON)
    response: Any = ExportTraceServiceResponse() if what == "Spans" else ExportLogsServiceResponse()
    if message:
        if what == "Spans":
            response.partial_success.rejected_spans = len(rejected)
        else:
            response.partial_success.rejected_log_records = len(rejected)
        response.partial_success.error_message = message
    return Response(response.SerializeToString(), media_type=PROTOBUF)


def _records(
    st: ServerState,
    environment: str,
    now: datetime,
    exposures: list[dict[str, Any]],
    evals: list[dict[str, Any]],
) -> tuple[Admitted, list[str]]:
    """Flag evaluations and evaluation results as exposures and evals, judged by the contract
    like any sent to /ingest/batch; each refusal as a reason."""
    batch = {"exposures": [_encode(d) for d in exposures], "evals": [_encode(d) for d in evals]}
    validated = validate_batch(batch, environment, st.facts(environment), now, st.settings.property_allowlist)
    admitted = admit_batch(st.identities, validated)
    st.conflicts += len(admitted.conflicts)
    reasons = [
        f"{p.kind} record {p.index}: {p.field}: {p.reason}"
        for p in (*validated.problems, *admitted.conflicts)
    ]
    return admitted, reasons


def _media(request: Request) -> str:
    media = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media not in (PROTOBUF, JSON):
        raise otlp.OtlpError.at(
            "content-type", f"{media or 'none'}: send {PROTOBUF} or {JSON} (OTLP/HTTP encodings)"
        )
    return media


async def _body(request: Request, st: ServerState) -> bytes:
    refuse_when_overloaded(st)
    limit = st.settings.max_batch_bytes
    body = await read_body(request, limit)
    encoding = request.headers.get("content-encoding", "").strip().lower()
    if encoding == "gzip":
        return _inflate(body, limit)
    if encoding not in ("", "identity"):
        raise otlp.OtlpError.at("content-encoding", f"{encoding}: send gzip or no encoding")
    return body


def _unit_of(st: ServerState, environment: str) -> Callable[[str], str | None]:
    facts = st.facts(environment)
    return lambda key: facts[key].assignment_unit if key in facts else None


@router.post(
    "/traces",
    openapi_extra=_BODY_DOC,
    responses={
        400: {"model": ErrorOut, "description": "not OTLP: a body that does not decode, a bad encoding"},
        503: {"model": ErrorOut, "description": "ingestion is pushing back or the log could not be written"},
    },
)
async def traces(request: Request, scope: InEnvironment) -> Response:
    """Spans from any OpenTelemetry exporter, joined to flags and units by their attributes; flag
    evaluations recorded as span events or spans of their own become exposures."""
    st: ServerState = request.app.state.ramplight
    media = _media(request)
    body = await _body(request, st)
    unit_of = _unit_of(st, scope.environment)
    workers = st.workers
    now = datetime.now(UTC)
    in_worker = None
    if workers is not None and len(body) >= st.settings.otlp_worker_min_bytes:
        # Decoded and judged in a worker process; the identity check and the log stay here.
        in_worker = await workers.judge_traces(body, media == JSON, scope.environment, now)
    if in_worker is not None:
        decoded, count, judged = in_worker
        for exposure in decoded.exposures:
            exposure["assignment_unit"] = unit_of(exposure["flag_key"]) or "unknown"
    else:
        decode = otlp.decode_json if media == JSON else otlp.decode_protobuf
        decoded = decode(body, st.span_policy, unit_of)
        count = len(decoded.spans)
        now = datetime.now(UTC)
        judged = otlp.accept_spans(decoded.spans, scope.environment, now, decoded.canonicals)
    if count + len(decoded.exposures) > st.settings.max_batch_items:
        raise PayloadTooLarge(
            f"request has {count} spans; the limit is {st.settings.max_batch_items}"
            " (RAMPLIGHT_MAX_BATCH_ITEMS)"
        )
    spans = admit_batch(st.identities, judged)
    records, refused = _records(st, scope.environment, now, decoded.exposures, [])
    await acknowledge(st, spans, records)
    st.conflicts += len(spans.conflicts)
    st.spans_rejected += len(decoded.rejected)
    st.span_attributes_dropped += decoded.dropped_attributes
    st.evaluations_not_exposures += len(decoded.not_exposures) + len(refused)
    rejected = [*decoded.rejected, *(f"span {c.field}: {c.reason}" for c in spans.conflicts)]
    return _answer(rejected, [*decoded.not_exposures, *refused], media, "Spans")


@router.post(
    "/logs",
    openapi_extra=_LOGS_DOC,
    responses={
        400: {"model": ErrorOut, "description": "not OTLP: a body that does not decode, a bad encoding"},
        503: {"model": ErrorOut, "description": "ingestion is pushing back or the log could not be written"},
    },
)
async def logs(request: Request, scope: InEnvironment) -> Response:
    """Log records: `feature_flag.evaluation` records become exposures and
    `gen_ai.evaluation.result` records eval scores (docs/traces.md); other records are taken and
    not kept (Ramplight is not a log store)."""
    st: ServerState = request.app.state.ramplight
    media = _media(request)
    body = await _body(request, st)
    unit_of = _unit_of(st, scope.environment)
    decode = otlp.decode_logs_json if media == JSON else otlp.decode_logs_protobuf
    decoded = decode(body, unit_of)
    if len(decoded.exposures) + len(decoded.evals) > st.settings.max_batch_items:
        raise PayloadTooLarge(
            f"request has more records than {st.settings.max_batch_items} (RAMPLIGHT_MAX_BATCH_ITEMS)"
        )
    records, refused = _records(st, scope.environment, datetime.now(UTC), decoded.exposures, decoded.evals)
    await acknowledge(st, records)
    st.evaluations_not_exposures += len(decoded.rejected) + len(refused)
    st.log_records_ignored += decoded.ignored
    return _answer([*decoded.rejected, *refused], [], media, "LogRecords")
