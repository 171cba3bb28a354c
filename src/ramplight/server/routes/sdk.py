"""SDK routes (`/sdk/…`): the environment's config for local evaluation, polled
(`/sdk/config`, with ETags) or pushed (`/sdk/stream`, Server-Sent Events).

Guarded by the environment scope: an SDK key reads its own environment (naming another is 403);
an admin key names one with `?environment=`.
"""

from __future__ import annotations

import asyncio
import struct
import zlib
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import APIRouter, Depends, Header
from fastapi.responses import Response, StreamingResponse
from starlette.concurrency import run_in_threadpool

from ramplight.core.errors import RamplightError
from ramplight.server.auth import Authorization, InEnvironment, State, bearer, environment_scope
from ramplight.server.state import ServerState, deflated

router = APIRouter(prefix="/sdk", tags=["sdk"], dependencies=[Depends(environment_scope)])


def accepts_gzip(accept_encoding: str | None) -> bool:
    """Whether an Accept-Encoding header admits gzip (`gzip`, `x-gzip` or `*`, not at q=0)."""
    for item in (accept_encoding or "").split(","):
        coding, _, params = item.partition(";")
        if coding.strip().lower() not in ("gzip", "x-gzip", "*"):
            continue
        quality = params.strip().lower().removeprefix("q=").strip() if params else "1"
        try:
            return float(quality) > 0
        except ValueError:
            return False
    return False


@router.get("/config", responses={304: {"description": "unchanged since If-None-Match"}})
def sdk_config(
    st: State,
    scope: InEnvironment,
    if_none_match: Annotated[str | None, Header()] = None,
    accept_encoding: Annotated[str | None, Header()] = None,
) -> Response:
    """The environment's flags for local evaluation, gzipped when accepted; poll with
    If-None-Match (either representation's ETag answers 304)."""
    cached = st.config(scope.environment)
    gzipped = accepts_gzip(accept_encoding)
    headers = {
        "ETag": cached.gzip_etag if gzipped else cached.etag,
        "Cache-Control": "no-cache",
        "Vary": "Accept-Encoding",
    }
    if if_none_match is not None:
        tags = {t.strip().removeprefix("W/") for t in if_none_match.split(",")}
        if cached.etag in tags or cached.gzip_etag in tags:
            return Response(status_code=304, headers=headers)
    if gzipped:
        headers["Content-Encoding"] = "gzip"
        return Response(cached.gzipped, media_type="application/json", headers=headers)
    return Response(cached.body, media_type="application/json", headers=headers)


HEARTBEAT_SECONDS = 15.0
"""A comment line this often keeps proxies from closing an idle stream and lets the SDK tell a
silent stream from a dead one (it reconnects after three missed heartbeats)."""
RECONNECT_MS = 1000
"""The SSE `retry:` the server asks for: how soon an SDK reconnects after the stream ends."""


RETRY = f"retry: {RECONNECT_MS}\n\n".encode()
PING = b": ping\n\n"
GZIP_HEADER = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff"
"""A gzip member's header (RFC 1952): deflate, no name or extra fields, no time, OS unknown."""
GZIP_LAST_BLOCK = b"\x03\x00"
"""An empty final deflate block (fixed Huffman codes: the end-of-block code alone)."""
_DEFLATED = {RETRY: deflated(RETRY), PING: deflated(PING)}


class _GzipMember:
    """One stream's gzip member, made of pieces deflated once and shared by every stream (a
    config event is compressed once per version, not once per connection): each piece is a run
    of raw deflate blocks ending in a sync flush, so any can follow any. What each stream keeps
    is the CRC-32 and length of what it sent, for the trailer when the server ends the stream."""

    def __init__(self) -> None:
        self.crc = 0
        self.size = 0
        self.started = False

    def piece(self, plain: bytes, deflated_piece: bytes) -> bytes:
        self.crc = zlib.crc32(plain, self.crc)
        self.size += len(plain)
        if self.started:
            return deflated_piece
        self.started = True
        return GZIP_HEADER + deflated_piece

    def end(self) -> bytes:
        return GZIP_LAST_BLOCK + struct.pack("<II", self.crc, self.size & 0xFFFFFFFF)


@router.get(
    "/stream",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/event-stream": {}}, "description": "one `config` event per version"}},
)
async def sdk_stream(
    st: State,
    scope: InEnvironment,
    authorization: Authorization = None,
    last_event_id: Annotated[str | None, Header(max_length=200)] = None,
    accept_encoding: Annotated[str | None, Header()] = None,
) -> StreamingResponse:
    """The environment's config as a stream of Server-Sent Events: one `config` event (its `id`
    the config's ETag, its `data` the body of `/sdk/config`) now and at every change — a kill,
    a rollback or a guardian action reaches the SDK within a second. Reconnect with
    `Last-Event-ID` to skip a config you already have; `: ping` comments come every 15 s.
    Gzipped when accepted, each event flushed as it is sent."""
    gzip = _GzipMember() if accepts_gzip(accept_encoding) else None
    events = _config_events(st, scope.environment, bearer(authorization), last_event_id, gzip)
    headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no", "Vary": "Accept-Encoding"}
    if gzip is not None:
        headers["Content-Encoding"] = "gzip"
    return StreamingResponse(events, media_type="text/event-stream", headers=headers)


async def _config_events(
    st: ServerState, environment: str, plaintext: str | None, last_sent: str | None, gzip: _GzipMember | None
) -> AsyncIterator[bytes]:
    feed = st.feed
    feed.streams += 1
    try:
        yield RETRY if gzip is None else gzip.piece(RETRY, _DEFLATED[RETRY])
        while not feed.closed:
            change = feed.next_change()  # before reading: a change from now on wakes us
            try:
                st.authenticate(plaintext)  # a key revoked since the stream opened ends it
            except RamplightError:
                break
            cached = st.cached_config(environment)
            if cached is None:  # built off the event loop: it reads the store
                cached = await run_in_threadpool(st.config, environment)
            if last_sent not in (cached.etag, cached.gzip_etag):  # a poll's ETag names it too
                if gzip is None:
                    yield cached.event
                else:
                    deflated_event = cached.deflated_event
                    if deflated_event is None:  # the first gzip stream of this version: once, off the loop
                        deflated_event = await run_in_threadpool(cached.deflate_event)
                    yield gzip.piece(cached.event, deflated_event)
                last_sent = cached.etag
            done, _ = await asyncio.wait({change}, timeout=HEARTBEAT_SECONDS)
            if not done:
                yield PING if gzip is None else gzip.piece(PING, _DEFLATED[PING])
        if gzip is not None:
            yield gzip.end()  # the server ends the stream: a whole gzip member, its trailer checked
    finally:
        feed.streams -= 1
