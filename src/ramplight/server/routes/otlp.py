"""OTLP/HTTP routes (`/v1/…`): any OpenTelemetry SDK or Collector exports here unchanged.

`POST /v1/traces` takes an ExportTraceServiceRequest as protobuf (`application/x-protobuf`) or
JSON (`application/json`), gzip-compressed or not, authenticated by an SDK key like the other
evidence routes (`Authorization: Bearer …`, e.g. `OTEL_EXPORTER_OTLP_HEADERS`). The spans go the
way of `/ingest/batch` — judged, given their identity, appended to the ingestion log and fsynced
before the answer — so acknowledged means durable and a re-export is stored once. The answer is
an ExportTraceServiceResponse in the request's encoding: empty when every span was taken, with
`partial_success` (rejected spans and why) when some were not; 400 for a request that is not
OTLP, 413 past the size limit, 503 with Retry-After while ingestion pushes back.
"""

from __future__ import annotations

import asyncio
import zlib
from datetime import UTC, datetime

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from ramplight.core import otlp
from ramplight.core.errors import Overloaded, PayloadTooLarge, StoreError
from ramplight.server.auth import InEnvironment, environment_scope
from ramplight.server.openapi import ErrorOut
from ramplight.server.routes.ingest import read_body
from ramplight.server.state import ServerState
from ramplight.store.identity import admit_batch

router = APIRouter(prefix="/v1", tags=["otlp"], dependencies=[Depends(environment_scope)])

PROTOBUF = "application/x-protobuf"
JSON = "application/json"

_BODY_DOC = {
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


def _answer(rejected: list[str], encoding: str) -> Response:
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse

    if encoding == JSON:
        if not rejected:
            return Response(b"{}", media_type=JSON)
        import msgspec

        message = "; ".join(rejected[:10]) + (
            f" (and {len(rejected) - 10} more)" if len(rejected) > 10 else ""
        )
        body = {"partialSuccess": {"rejectedSpans": str(len(rejected)), "errorMessage": message}}
        return Response(msgspec.json.encode(body), media_type=JSON)
    response = ExportTraceServiceResponse()
    if rejected:
        response.partial_success.rejected_spans = len(rejected)
        response.partial_success.error_message = "; ".join(rejected[:10])
    return Response(response.SerializeToString(), media_type=PROTOBUF)


@router.post(
    "/traces",
    openapi_extra=_BODY_DOC,
    responses={
        400: {"model": ErrorOut, "description": "not OTLP: a body that does not decode, a bad encoding"},
        503: {"model": ErrorOut, "description": "ingestion is pushing back or the log could not be written"},
    },
)
async def traces(request: Request, scope: InEnvironment) -> Response:
    """Spans from any OpenTelemetry exporter, joined to flags and units by their attributes."""
    st: ServerState = request.app.state.ramplight
    media = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media not in (PROTOBUF, JSON):
        raise otlp.OtlpError.at(
            "content-type", f"{media or 'none'}: send {PROTOBUF} or {JSON} (OTLP/HTTP encodings)"
        )
    pressure = st.log.pressure()
    if pressure.overloaded:
        raise Overloaded(
            f"ingestion is pushing back: {pressure.reason}; nothing was taken", pressure.retry_after
        )
    limit = st.settings.max_batch_bytes
    body = await read_body(request, limit)
    encoding = request.headers.get("content-encoding", "").strip().lower()
    if encoding == "gzip":
        body = _inflate(body, limit)
    elif encoding not in ("", "identity"):
        raise otlp.OtlpError.at("content-encoding", f"{encoding}: send gzip or no encoding")
    policy = otlp.AttributePolicy(st.settings.span_attributes_allow, st.settings.span_attributes_deny)
    decoded = otlp.decode_json(body, policy) if media == JSON else otlp.decode_protobuf(body, policy)
    if len(decoded.spans) > st.settings.max_batch_items:
        raise PayloadTooLarge(
            f"request has {len(decoded.spans)} spans; the limit is {st.settings.max_batch_items}"
            " (RAMPLIGHT_MAX_BATCH_ITEMS)"
        )
    validated = otlp.accept_spans(decoded.spans, scope.environment, datetime.now(UTC))
    admitted = admit_batch(st.identities, validated)
    if admitted.keys:
        try:
            await asyncio.wrap_future(st.log.append(admitted.chunks(), len(admitted.keys)))
        except OSError as exc:
            st.identities.forget(admitted.keys)
            raise StoreError(
                f"spans could not be made durable ({exc.strerror}); nothing was acknowledged"
            ) from exc
        except BaseException:
            st.identities.forget(admitted.keys)
            raise
    st.duplicates += sum(admitted.duplicates.values())
    st.spans_rejected += len(decoded.rejected)
    st.span_attributes_dropped += decoded.dropped_attributes
    rejected = list(decoded.rejected)
    rejected += [f"span {c.field}: {c.reason}" for c in admitted.conflicts]
    return _answer(rejected, media)
