"""Ingestion routes (`/ingest/…`): evidence batches, acknowledged only once durable.

Guarded by the environment scope, like the SDK routes. The handler runs on the event loop: the
body is read here and judged here or, when large, in an ingestion worker process
(server/workers.py); the identity check stays here, and the append to the ingestion log is
awaited (fsync included).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from ramplight.core.contract import KIND_TYPES, BatchRequest, judge_batch
from ramplight.core.errors import Overloaded, PayloadTooLarge, StoreError
from ramplight.server.auth import InEnvironment, environment_scope
from ramplight.server.openapi import schema_for
from ramplight.server.responses import encode
from ramplight.server.state import ServerState
from ramplight.store.identity import Admitted, admit_batch

router = APIRouter(prefix="/ingest", tags=["ingest"], dependencies=[Depends(environment_scope)])

_BATCH_DOC = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {
                "schema": {
                    "type": "object",
                    "additionalProperties": False,
                    "properties": {
                        kind: {"type": "array", "items": schema_for(tp)["schema"]}
                        for kind, tp in KIND_TYPES.items()
                    },
                }
            }
        },
    },
}


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, refused with 413 as soon as it passes `limit` (declared or streamed)."""
    return await body_within(request.headers.get("content-length"), request.stream(), limit)


async def body_within(declared: str | None, chunks: AsyncIterator[bytes], limit: int) -> bytes:
    """The body from its chunks, refused with 413 as soon as it passes `limit`: before reading
    anything when the declared Content-Length says so, else as the chunks arrive."""
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(
            f"request body is {declared} bytes; the limit is {limit} (RAMPLIGHT_MAX_BATCH_BYTES)"
        )
    parts = []
    size = 0
    async for chunk in chunks:
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(
                f"request body exceeds the limit of {limit} bytes (RAMPLIGHT_MAX_BATCH_BYTES)"
            )
        parts.append(chunk)
    return parts[0] if len(parts) == 1 else b"".join(parts)


def refuse_when_overloaded(st: ServerState) -> None:
    """503 with Retry-After, taking nothing, while loading is behind its bound."""
    pressure = st.log.pressure()
    if pressure.overloaded:
        raise Overloaded(
            f"ingestion is pushing back: {pressure.reason}; nothing was taken", pressure.retry_after
        )


async def acknowledge(st: ServerState, *admitted: Admitted) -> None:
    """Append what is new to the ingestion log — one write, fsynced — before the answer; if it
    cannot be made durable, the identities are forgotten again (nothing was acknowledged)."""
    if len(admitted) == 1:  # the usual request: no copy of its keys and chunks
        keys, chunks = admitted[0].keys, admitted[0].chunks()
    else:
        keys = tuple(k for a in admitted for k in a.keys)
        chunks = {kind: data for a in admitted for kind, data in a.chunks().items()}
    if keys:
        try:
            await asyncio.wrap_future(st.log.append(chunks, len(keys)))
        except OSError as exc:
            st.identities.forget(keys)
            raise StoreError(
                f"evidence could not be made durable ({exc.strerror}); nothing was acknowledged"
            ) from exc
        except BaseException:
            st.identities.forget(keys)
            raise
    st.duplicates += sum(n for a in admitted for n in a.duplicates.values())


async def take_batch(st: ServerState, environment: str, body: bytes) -> bytes:
    """Judge a batch body, admit what is new and acknowledge it durably: the answer's JSON
    (accepted and duplicates by kind, each rejected item by kind, index, field and reason).
    The one implementation behind the route below and the server's fast path (fastpath.py)."""
    settings = st.settings
    judging = BatchRequest(
        body,
        environment,
        st.facts(environment),
        datetime.now(UTC),
        settings.property_allowlist,
        settings.max_batch_items,
    )
    validated = None
    workers = st.workers
    if (
        workers is not None
        and len(body) >= settings.batch_worker_min_bytes
        and workers.worth_it(settings.batch_worker_spare_cores)
    ):
        validated = await workers.judge_batch(judging)
    if validated is None:
        validated = judge_batch(judging)
    admitted = admit_batch(st.identities, validated)
    await acknowledge(st, admitted)
    st.conflicts += len(admitted.conflicts)
    problems = sorted((*validated.problems, *admitted.conflicts), key=lambda p: (p.kind or "", p.index or 0))
    result: dict[str, Any] = {
        "accepted": admitted.accepted,
        "duplicates": admitted.duplicates,
        "rejected": [
            {"kind": p.kind, "index": p.index, "field": p.field, "reason": p.reason} for p in problems
        ],
    }
    return encode(result)


@router.post("/batch", openapi_extra=_BATCH_DOC)
async def ingest(request: Request, scope: InEnvironment) -> Response:
    """Store exposures, events and eval scores. Good items are kept and acknowledged
    durably (fsynced) before the answer; bad ones come back by kind, index, field, reason."""
    st: ServerState = request.app.state.ramplight
    refuse_when_overloaded(st)
    body = await read_body(request, st.settings.max_batch_bytes)
    return Response(await take_batch(st, scope.environment, body), media_type="application/json")
