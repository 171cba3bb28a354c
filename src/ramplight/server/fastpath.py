"""The ingestion fast path: `POST /ingest/batch` answered before FastAPI's routing.

An SDK sending evidence is the one caller whose requests come by the thousand a second, and for
a 500-event batch the framework's own work — route matching across every route of the app,
dependency solving, the request and response objects — was about a fifth of the event loop's
time (py-spy, docs/operations.md item 17). This ASGI middleware answers the common form of
that request itself: the exact path, POST, no query string (so an SDK key names the
environment). It runs the same code the FastAPI route runs — `ServerState.authenticate`,
`environment_of`, `refuse_when_overloaded`, `body_within`, `take_batch` — and renders errors
with the same `error_response`, so both answer alike, byte for byte; the route stays in the
OpenAPI document and serves every other form (an admin key with `?environment=`).

It sits inside Starlette's ServerErrorMiddleware (added with `add_middleware`), so an
unexpected exception is answered 500 and logged exactly as on any other route.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Receive, Scope, Send

from ramplight.core.errors import RamplightError, ValidationError
from ramplight.server.auth import bearer, environment_of
from ramplight.server.responses import error_response
from ramplight.server.routes.ingest import body_within, refuse_when_overloaded, take_batch
from ramplight.server.state import ServerState

PATH = "/ingest/batch"
_JSON_HEADERS = (b"content-type", b"application/json")


def _header(scope: Scope, name: bytes) -> str | None:
    """The first value of header `name` (lower case, as ASGI gives names), as Starlette reads it."""
    for key, value in scope["headers"]:
        if key == name:
            return str(value.decode("latin-1"))
    return None


async def _chunks(receive: Receive) -> AsyncIterator[bytes]:
    """The request body's chunks as the server hands them over (Starlette's `Request.stream`)."""
    while True:
        message = await receive()
        if message["type"] == "http.request":
            body = message.get("body", b"")
            if body:
                yield body
            if not message.get("more_body", False):
                return
        elif message["type"] == "http.disconnect":
            raise ClientDisconnect()


class IngestFastPath:
    """ASGI middleware: the SDK's form of `POST /ingest/batch`, without the framework's routing."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] != "http"
            or scope["path"] != PATH
            or scope["method"] != "POST"
            or scope["query_string"]
        ):
            await self.app(scope, receive, send)
            return
        st: ServerState = scope["app"].state.ramplight
        try:
            key = st.authenticate(bearer(_header(scope, b"authorization")))
            environment = environment_of(key, None)
            refuse_when_overloaded(st)
            body = await body_within(
                _header(scope, b"content-length"), _chunks(receive), st.settings.max_batch_bytes
            )
            answer = await take_batch(st, environment, body)
        except RamplightError as exc:
            await error_response(exc)(scope, receive, send)
            return
        except UnicodeEncodeError:  # as the app's handler: a lone surrogate no store can hold
            error = ValidationError("the request contains invalid Unicode (an unpaired surrogate)")
            await error_response(error)(scope, receive, send)
            return
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [_JSON_HEADERS, (b"content-length", b"%d" % len(answer))],
            }
        )
        await send({"type": "http.response.body", "body": answer})
