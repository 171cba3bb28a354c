"""The FastAPI application: its lifespan (store, ingestion log, guardian), the error shape, and
the route groups by audience (`routes/`: admin, sdk, ingest, ops), each with its own guard, and
the MCP endpoint for agents (`mcp.py`, guarded as admin routes are).
"""

from __future__ import annotations

import gc
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Route

from ramplight import control
from ramplight.core.errors import RamplightError, ValidationError
from ramplight.server.errors import AdminBodyLimit, from_http_exception, from_request_validation
from ramplight.server.fastpath import IngestFastPath
from ramplight.server.guardian import GuardianThread, Webhooks
from ramplight.server.mcp import PATH as MCP_PATH
from ramplight.server.mcp import McpEndpoint
from ramplight.server.openapi import ERROR_RESPONSES, components
from ramplight.server.responses import error_response
from ramplight.server.routes import admin, ingest, ops, otlp, sdk, ui
from ramplight.server.state import ServerState
from ramplight.settings import Settings
from ramplight.store import open_store
from ramplight.store.log import IngestLog

log = logging.getLogger("ramplight.server")


def create_app(settings: Settings) -> FastAPI:
    """Build the app; the store and the ingestion log open in its lifespan."""
    mcp = McpEndpoint(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        store = open_store(settings)
        ingest_log = IngestLog(
            settings.log_dir,
            store,
            fsync=settings.fsync,
            max_backlog_bytes=int(settings.max_backlog_mb * 1024 * 1024),
            max_backlog_seconds=settings.max_backlog_seconds,
        )
        state = ServerState(settings, store, ingest_log)
        app.state.ramplight = state
        for stale in control.stored_problems(store):  # saved under older rules: say so at start
            log.warning(
                "stored %s %r no longer passes validation (%s); SDKs serve the default for the flags "
                "it affects until it is fixed: `ramplight flags check` lists them all",
                stale["kind"],
                stale["key"],
                "; ".join(f"{p['field']}: {p['reason']}" for p in stale["problems"][:3]),
            )
        guardian = GuardianThread(
            store, settings.guardian_interval, state.catch_up, Webhooks(settings.webhooks), state.invalidate
        )
        state.guardian = guardian
        if settings.guardian_interval > 0:
            guardian.start()
        # Everything built so far (the app, the libraries, the store) lives as long as the
        # process: out of the collector's sight, a full collection no longer walks it while
        # ingestion promotes its short-lived items (~2 µs an item saved; see operations.md).
        gc.collect()
        gc.freeze()
        try:
            async with mcp.run():
                yield
        finally:
            gc.unfreeze()  # an app stopped in a longer-lived process (tests, the demo) is garbage
            pages = getattr(state, "ui_readouts", None)
            if pages is not None:
                pages.close()  # the web UI's evidence worker: nothing queued runs on a closed store
            guardian.close()
            if state.workers is not None:
                state.workers.close()
            ingest_log.close()
            store.close()

    app = FastAPI(
        title="Ramplight",
        version="0.1.0",
        summary="Release decisions for AI features: flags, evidence and readouts in one model.",
        lifespan=lifespan,
        docs_url=None,  # /docs is served from packaged assets (routes/docs.py); no ReDoc
        redoc_url=None,
        openapi_url="/openapi.json",
        responses=ERROR_RESPONSES,
    )

    @app.exception_handler(RamplightError)
    async def ramplight_error(request: Request, exc: RamplightError) -> JSONResponse:
        return error_response(exc)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        return error_response(from_request_validation(exc.errors()))

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        error = from_http_exception(exc.status_code, exc.detail, request.url.path, request.method)
        response = error_response(error)
        response.headers.update(exc.headers or {})
        return response

    app.add_middleware(AdminBodyLimit, render=error_response)
    app.add_middleware(IngestFastPath)  # outermost of ours: the SDK's evidence skips routing

    @app.exception_handler(UnicodeEncodeError)
    async def invalid_unicode(request: Request, exc: UnicodeEncodeError) -> JSONResponse:
        # JSON may escape lone surrogates (\ud800) that no UTF-8 store can hold.
        return error_response(ValidationError("the request contains invalid Unicode (an unpaired surrogate)"))

    for group in (ops.router, admin.router, sdk.router, ingest.router, otlp.router):
        app.include_router(group)
    # Not in the OpenAPI document: MCP describes its own tools (tools/list).
    app.router.routes.append(Route(MCP_PATH, mcp, methods=["GET", "POST", "DELETE"], include_in_schema=False))
    ui.install(app)  # the web UI (session-guarded), its static files and the offline API docs

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(title=app.title, version=app.version, summary=app.summary, routes=app.routes)
            schema.setdefault("components", {}).setdefault("schemas", {}).update(components)
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    return app
