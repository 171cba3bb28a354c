"""The FastAPI application: routes grouped by audience (admin, sdk, ingest).

Handlers parse, call one function from `control`/`analysis`, and format. Errors from the
`RamplightError` tree map to status codes in `_error_response`, here and nowhere else.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import shutil
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, Literal

import msgspec
from fastapi import Body, Depends, FastAPI, Header, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import FileResponse, JSONResponse, Response
from pydantic import BaseModel, Field
from starlette.background import BackgroundTask
from starlette.exceptions import HTTPException as StarletteHTTPException

from ramplight import audit, control, release
from ramplight.analysis import service as analysis
from ramplight.analysis.readout import ReadoutOptions
from ramplight.core.contract import KIND_TYPES, Batch, split_batch, validate_batch
from ramplight.core.errors import (
    AuthError,
    ForbiddenError,
    NotFoundError,
    Overloaded,
    PayloadTooLarge,
    RamplightError,
    StoreError,
    ValidationError,
)
from ramplight.core.flags import Flag, Segment
from ramplight.core.metrics import Metric
from ramplight.core.plan import Plan
from ramplight.server.errors import AdminBodyLimit, from_http_exception, from_request_validation
from ramplight.server.guardian import GuardianThread, Webhooks
from ramplight.server.state import ServerState
from ramplight.settings import Settings
from ramplight.store import open_store
from ramplight.store.backup import take_backup
from ramplight.store.base import ApiKey
from ramplight.store.identity import admit_batch
from ramplight.store.log import IngestLog

log = logging.getLogger("ramplight.server")

_batch_decoder = msgspec.json.Decoder(Batch)
_encoder = msgspec.json.Encoder()


_components: dict[str, Any] = {}


def _schema(tp: Any, from_url: tuple[str, ...] = ()) -> dict[str, Any]:
    """OpenAPI media-type object for a msgspec type; its definitions join the components.
    `from_url`: fields the route fills from its path, so the body may leave them out."""
    (schema,), components = msgspec.json.schema_components([tp], ref_template="#/components/schemas/{name}")
    _components.update(components)
    if not from_url:
        return {"schema": schema}
    name = tp.__name__
    body = dict(components[name])
    body["required"] = [f for f in body.get("required", []) if f not in from_url]
    _components[f"{name}Body"] = body
    return {"schema": {"$ref": f"#/components/schemas/{name}Body"}}


def _error_response(exc: RamplightError) -> JSONResponse:
    body: dict[str, Any] = {"error": exc.code, "message": exc.message}
    body["problems"] = [
        {
            k: v
            for k, v in (("kind", p.kind), ("index", p.index), ("field", p.field), ("reason", p.reason))
            if v is not None
        }
        for p in getattr(exc, "problems", ())
    ]
    headers = {"WWW-Authenticate": "Bearer"} if type(exc) is AuthError else None
    if isinstance(exc, Overloaded):
        headers = {"Retry-After": str(max(1, round(exc.retry_after)))}
    return JSONResponse(body, status_code=exc.status_code, headers=headers)


def _msgspec_response(value: Any, status_code: int = 200) -> Response:
    return Response(_encoder.encode(value), status_code=status_code, media_type="application/json")


class ProblemOut(BaseModel):
    kind: str | None = None
    index: int | None = None
    field: str
    reason: str


class ErrorOut(BaseModel):
    """Every error: a stable code, one readable message, and per-field problems if any."""

    error: str
    message: str
    problems: list[ProblemOut] = Field(description="one per field at fault; empty when none is")


_ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorOut, "description": description}
    for status, description in (
        (401, "missing, unknown or revoked API key"),
        (403, "the key may not do this (an SDK key on admin routes, or another environment)"),
        (404, "no such flag, environment or key"),
        (409, "a stale version (someone else changed it) or a duplicate"),
        (413, "a request body or batch past the size limits"),
        (422, "invalid input (bad JSON, a missing or wrong field): which field, why"),
    )
}


class EnvironmentIn(BaseModel):
    key: str = Field(min_length=1, max_length=100)
    name: str | None = Field(default=None, max_length=200)


class RampIn(BaseModel):
    environment: str = Field(min_length=1, max_length=100)
    variation: str = Field(min_length=1, max_length=100)
    percent: float = Field(ge=0, le=100)
    from_variation: str | None = Field(default=None, alias="from", max_length=100)
    reason: str | None = Field(default=None, max_length=1000)
    version: int | None = Field(
        default=None, ge=1, description="fail with 409 unless the flag is at this version"
    )
    force: bool = Field(
        default=False, description="act against the measurement plan (needs a key allowed to force)"
    )


class EnvActionIn(BaseModel):
    environment: str = Field(min_length=1, max_length=100)
    reason: str | None = Field(default=None, max_length=1000)
    force: bool = Field(
        default=False, description="act against the measurement plan (needs a key allowed to force)"
    )


class DecisionIn(BaseModel):
    environment: str = Field(default="production", min_length=1, max_length=100)
    action: Literal["expand", "rollback", "pause", "promote", "cleanup", "continue"]
    reason: str | None = Field(default=None, max_length=1000)
    force: bool = False
    percent: float | None = Field(
        default=None, gt=0, le=100, description="expand to this share instead of the next stage"
    )


class ReasonIn(BaseModel):
    reason: str | None = Field(default=None, max_length=1000)


class RequestIn(BaseModel):
    environment: str = Field(default="production", min_length=1, max_length=100)
    action: Literal["expand", "promote"]
    reason: str | None = Field(default=None, max_length=1000)
    percent: float | None = Field(default=None, gt=0, le=100)


class ApplyIn(BaseModel):
    flags: list[dict[str, Any]] = Field(default_factory=list)
    metrics: list[dict[str, Any]] = Field(default_factory=list)
    plans: list[dict[str, Any]] = Field(default_factory=list)
    dry_run: bool = False
    reason: str | None = Field(default=None, max_length=1000)


class ApiKeyIn(BaseModel):
    kind: Literal["admin", "sdk"]
    name: str = Field(min_length=1, max_length=200)
    environment: str | None = Field(default=None, max_length=100)
    can_force: bool = Field(
        default=False, description="may act against measurement plans; only such a key may grant it"
    )


def _state(request: Request) -> ServerState:
    value: ServerState = request.app.state.ramplight
    return value


State = Annotated[ServerState, Depends(_state)]
Authorization = Annotated[str | None, Header(description="Bearer <API key>")]


def bearer(header: str | None) -> str | None:
    if header and header.lower().startswith("bearer "):
        return header[7:].strip()
    return None


def _admin(st: State, authorization: Authorization = None) -> ApiKey:
    key = st.authenticate(bearer(authorization))
    if key.kind != "admin":
        raise ForbiddenError("this endpoint needs an admin key; SDK keys read config and send evidence")
    return key


Admin = Annotated[ApiKey, Depends(_admin)]


def actor(key: ApiKey) -> str:
    return f"key:{key.prefix}… ({key.name})"


def create_app(settings: Settings) -> FastAPI:
    """Build the app; the store and the ingestion log open in its lifespan."""

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
            yield
        finally:
            gc.unfreeze()  # an app stopped in a longer-lived process (tests, the demo) is garbage
            guardian.close()
            ingest_log.close()
            store.close()

    app = FastAPI(
        title="Ramplight",
        version="0.1.0",
        summary="Release decisions for AI features: flags, evidence and readouts in one model.",
        lifespan=lifespan,
        docs_url="/docs",
        openapi_url="/openapi.json",
        responses=_ERROR_RESPONSES,
    )

    @app.exception_handler(RamplightError)
    async def ramplight_error(request: Request, exc: RamplightError) -> JSONResponse:
        return _error_response(exc)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        return _error_response(from_request_validation(exc.errors()))

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        error = from_http_exception(exc.status_code, exc.detail, request.url.path, request.method)
        response = _error_response(error)
        response.headers.update(exc.headers or {})
        return response

    app.add_middleware(AdminBodyLimit, render=_error_response)

    @app.exception_handler(UnicodeEncodeError)
    async def invalid_unicode(request: Request, exc: UnicodeEncodeError) -> JSONResponse:
        # JSON may escape lone surrogates (\ud800) that no UTF-8 store can hold.
        return _error_response(
            ValidationError("the request contains invalid Unicode (an unpaired surrogate)")
        )

    # -- health ---------------------------------------------------------------------------

    @app.get("/healthz", tags=["ops"])
    def healthz(st: State) -> dict[str, Any]:
        return {"status": "ok", "db": st.settings.db.name}

    # -- admin: environments --------------------------------------------------------------

    @app.get("/api/environments", tags=["admin"])
    def list_environments(st: State, key: Admin) -> list[dict[str, Any]]:
        return [
            {"key": e.key, "name": e.name, "created_at": e.created_at.isoformat()}
            for e in st.store.list_environments()
        ]

    @app.post("/api/environments", tags=["admin"], status_code=201)
    def create_environment(body: EnvironmentIn, st: State, key: Admin) -> dict[str, Any]:
        env = control.create_environment(st.store, body.key, body.name)
        st.invalidate()
        return {"key": env.key, "name": env.name, "created_at": env.created_at.isoformat()}

    # -- admin: backup --------------------------------------------------------------------

    @app.post(
        "/api/backup",
        tags=["admin"],
        response_class=FileResponse,
        responses={200: {"content": {"application/x-tar": {}}, "description": "the backup archive"}},
    )
    def backup(st: State, key: Admin) -> FileResponse:
        """A consistent backup while ingestion goes on: the ingest log is flushed (every item
        acknowledged so far is in it), then the database and its audit head log are copied under the
        write lock. A tar with a manifest; the audit secret is never sent (the CLI adds its own)."""
        st.log.flush()
        staged = Path(tempfile.mkdtemp(prefix="backup-", dir=st.store.scratch_dir()))
        archive = staged / "ramplight-backup.tar"
        try:
            take_backup(st.store, archive, secret=None)
        except BaseException:
            shutil.rmtree(staged, ignore_errors=True)
            raise
        return FileResponse(
            archive,
            media_type="application/x-tar",
            filename=archive.name,
            background=BackgroundTask(shutil.rmtree, staged, ignore_errors=True),
        )

    # -- admin: flags ---------------------------------------------------------------------

    flag_body = {"requestBody": {"required": True, "content": {"application/json": _schema(Flag)}}}

    @app.get("/api/flags", tags=["admin"])
    def list_flags(st: State, key: Admin, archived: bool = False) -> Response:
        return _msgspec_response(st.store.list_flags(include_archived=archived))

    @app.post("/api/flags", tags=["admin"], status_code=201, openapi_extra=flag_body)
    def create_flag(st: State, key: Admin, doc: Annotated[dict[str, Any], Body()]) -> Response:
        flag = control.create_flag(st.store, doc, actor(key))
        st.invalidate()
        return _msgspec_response(flag, 201)

    @app.get("/api/flags/{flag_key}", tags=["admin"])
    def get_flag(flag_key: str, st: State, key: Admin) -> Response:
        return _msgspec_response(control.get_flag(st.store, flag_key))

    @app.put("/api/flags/{flag_key}", tags=["admin"], openapi_extra=flag_body)
    def update_flag(
        flag_key: str,
        st: State,
        key: Admin,
        doc: Annotated[dict[str, Any], Body()],
        if_match: Annotated[str | None, Header()] = None,
    ) -> Response:
        """Replace the flag. Send the `version` you read (in the body or If-Match); 409 if it moved."""
        expected = doc.get("version") if if_match is None else if_match.strip('"')
        try:
            expected_version = int(expected) if expected is not None else None
        except (TypeError, ValueError):
            raise ValidationError.at("version", "must be the integer version you read") from None
        if expected_version is None or expected_version < 1:
            raise ValidationError.at("version", "required: the version you read (optimistic concurrency)")
        flag = control.update_flag(st.store, flag_key, doc, expected_version, actor(key))
        st.invalidate()
        return _msgspec_response(flag)

    @app.post("/api/flags/{flag_key}/ramp", tags=["admin"])
    def ramp(flag_key: str, body: RampIn, st: State, key: Admin) -> Response:
        """Set a variation's share. Growing the candidate against the plan (a breached guardrail,
        a failed gate, a paused release, a stage not yet complete) is a 409 unless forced."""
        st.catch_up()
        forced = release.check_growth(
            st.store, flag_key, body.environment, body.variation, body.percent, body.force, key.can_force
        )
        if forced and not body.reason:
            raise ValidationError.at("reason", "a forced action needs a reason")
        before = control.get_flag(st.store, flag_key).version
        flag = control.ramp(
            st.store,
            flag_key,
            body.environment,
            body.variation,
            body.percent,
            actor(key),
            donor=body.from_variation,
            reason=("forced: " if forced else "") + body.reason if body.reason else body.reason,
            expected_version=body.version,
        )
        st.invalidate()
        if flag.version == before:
            return _msgspec_response({"unchanged": True, "flag": flag})
        return _msgspec_response(flag)

    @app.post("/api/flags/{flag_key}/kill", tags=["admin"])
    def kill(flag_key: str, body: EnvActionIn, st: State, key: Admin) -> Response:
        before = control.get_flag(st.store, flag_key).version
        flag = control.kill(st.store, flag_key, body.environment, actor(key), body.reason)
        st.invalidate()
        if flag.version == before:
            return _msgspec_response({"unchanged": True, "flag": flag})
        return _msgspec_response(flag)

    @app.post("/api/flags/{flag_key}/restore", tags=["admin"])
    def restore(flag_key: str, body: EnvActionIn, st: State, key: Admin) -> Response:
        st.catch_up()
        forced = release.check_restore(st.store, flag_key, body.environment, body.force, key.can_force)
        if forced and not body.reason:
            raise ValidationError.at("reason", "a forced action needs a reason")
        before = control.get_flag(st.store, flag_key).version
        reason = ("forced: " if forced else "") + body.reason if body.reason else body.reason
        flag = control.restore(st.store, flag_key, body.environment, actor(key), reason)
        st.invalidate()
        if flag.version == before:
            return _msgspec_response({"unchanged": True, "flag": flag})
        return _msgspec_response(flag)

    @app.post("/api/flags/{flag_key}/archive", tags=["admin"])
    def archive(flag_key: str, body: ReasonIn, st: State, key: Admin) -> Response:
        flag = control.archive(st.store, flag_key, actor(key), body.reason)
        st.invalidate()
        return _msgspec_response(flag)

    @app.get("/api/flags/{flag_key}/changes", tags=["admin"])
    def flag_changes(flag_key: str, st: State, key: Admin) -> Response:
        """The flag's changes, oldest first, each marked `verified`; they verify on their own by
        `flag_prev_hash` (see `ramplight.core.audit.verify_flag_history`)."""
        response = _msgspec_response(audit.flag_history(st.store, flag_key))
        response.headers["Ramplight-Audit-Head"] = _encoder.encode(audit.head(st.store)).decode()
        return response

    @app.get("/api/audit/verify", tags=["admin"])
    def audit_verify(st: State, key: Admin) -> dict[str, Any]:
        """Verify both audit chains with the server secret and the head log kept outside the
        database; each names its first edited, deleted or reordered row."""
        return {**audit.verify(st.store), "head": audit.head(st.store)}

    @app.get("/api/flags/{flag_key}/report", tags=["admin"])
    def report(
        flag_key: str,
        st: State,
        key: Admin,
        environment: Annotated[str, Query(max_length=100)] = "production",
        metric: Annotated[list[str] | None, Query(description="metric keys (default: all defined)")] = None,
        segment: Annotated[str | None, Query(max_length=100, pattern=r"^[A-Za-z0-9_\-]+$")] = None,
        phase: Annotated[int | None, Query(ge=0)] = None,
        served: bool = False,
        bayes: bool = False,
    ) -> dict[str, Any]:
        """The readout (docs/readout.md): the recommendation first, then data quality, phases and
        each metric vs control."""
        st.catch_up()
        options = ReadoutOptions(segment=segment, phase=phase, served=served, bayes=bayes)
        result = release.report(st.store, flag_key, environment, metric, options)
        behind = st.loading()
        return {**result, "loading": behind} if behind else result

    # -- admin: plans and decisions --------------------------------------------------------

    plan_body = {
        "requestBody": {
            "required": True,
            "content": {"application/json": _schema(Plan, ("flag_key", "environment"))},
        }
    }

    @app.get("/api/flags/{flag_key}/plans/{environment}", tags=["admin"])
    def get_plan(flag_key: str, environment: str, st: State, key: Admin) -> Response:
        """The flag's measurement plan in `environment` (404 when it has none: defaults apply)."""
        control.get_flag(st.store, flag_key)
        plan = st.store.get_plan(flag_key, environment)
        if plan is None:
            raise NotFoundError(f"flag {flag_key!r} has no plan in {environment!r}; the defaults apply")
        return _msgspec_response(plan)

    @app.put("/api/flags/{flag_key}/plans/{environment}", tags=["admin"], openapi_extra=plan_body)
    def put_plan(
        flag_key: str, environment: str, st: State, key: Admin, doc: Annotated[dict[str, Any], Body()]
    ) -> Response:
        """Create (no `version`) or replace (the `version` you read) a measurement plan."""
        for field, value in (("flag_key", flag_key), ("environment", environment)):
            if doc.get(field, value) != value:
                raise ValidationError.at(field, f"is {doc.get(field)!r}; the URL names {value!r}")
        version = doc.get("version")
        if version is not None and (isinstance(version, bool) or not isinstance(version, int)):
            raise ValidationError.at("version", "must be an integer")
        plan = release.save_plan(
            st.store,
            {**doc, "flag_key": flag_key, "environment": environment, "version": 0},
            version or None,
            actor(key),
        )
        return _msgspec_response(plan)

    @app.get("/api/flags/{flag_key}/recommendation", tags=["admin"])
    def recommendation(
        flag_key: str,
        st: State,
        key: Admin,
        environment: Annotated[str, Query(max_length=100)] = "production",
    ) -> dict[str, Any]:
        """What to do next and why, from a fresh readout and the plan."""
        st.catch_up()
        return release.judge(st.store, flag_key, environment).recommendation.to_json()

    @app.post("/api/flags/{flag_key}/decisions", tags=["admin"], status_code=201)
    def make_decision(flag_key: str, body: DecisionIn, st: State, key: Admin) -> dict[str, Any]:
        """Apply a decision and record it with its evidence; 409 when it goes against the plan
        unless forced by a key allowed to force."""
        st.catch_up()
        decision = release.decide_action(
            st.store, flag_key, body.environment, body.action, actor(key), body.reason,
            force=body.force, can_force=key.can_force, percent=body.percent,
        )  # fmt: skip
        st.invalidate()
        return release.decision_answer(st.store, decision)

    @app.get("/api/flags-stale", tags=["admin"])
    def stale_flags(
        st: State, key: Admin, days: Annotated[float, Query(ge=0, le=3650)] = 30
    ) -> list[dict[str, Any]]:
        """Flags to clean up: settled or unexposed for `days`, or decided with cleanup due."""
        st.catch_up()
        return release.stale_flags(st.store, days)

    @app.get("/api/ingest/status", tags=["admin"])
    def ingest_status(st: State, key: Admin) -> dict[str, Any]:
        """How far loading is behind, whether ingestion is pushing back, and dead-lettered segments."""
        pressure = st.log.pressure()
        return {
            "backlog_bytes": pressure.backlog_bytes,
            "backlog_items": pressure.backlog_items,
            "oldest_seconds": round(pressure.oldest_seconds, 1),
            "pushing_back": pressure.overloaded,
            "reason": pressure.reason or None,
            "duplicates": st.duplicates,
            "conflicts": st.conflicts,
            "dead_letters": st.log.dead_letters(),
        }

    @app.post("/api/ingest/dead-letters/{name}/reload", tags=["admin"])
    def reload_dead_letter(name: str, st: State, key: Admin) -> dict[str, Any]:
        """Put a dead-lettered segment back in line to load (after fixing what made it fail)."""
        try:
            st.log.reload(name)
        except FileNotFoundError as exc:
            raise NotFoundError(str(exc)) from None
        st.catch_up()
        return {"reloaded": name, "dead_letters": st.log.dead_letters()}

    @app.post("/api/guardian/check", tags=["admin"])
    def guardian_check(st: State, key: Admin) -> list[dict[str, Any]]:
        """Run the guardian's check of every plan now (it also runs on its interval)."""
        return [
            {"flag_key": o.flag_key, "environment": o.environment, "recommendation": o.recommendation,
             "acted": o.acted, "note": o.note}
            for o in st.guardian.check_now()
        ]  # fmt: skip

    @app.get("/api/flags/{flag_key}/decisions", tags=["admin"])
    def list_decisions(flag_key: str, st: State, key: Admin) -> list[dict[str, Any]]:
        return release.decisions(st.store, flag_key)

    @app.post("/api/flags/{flag_key}/requests", tags=["admin"], status_code=201)
    def propose_change(flag_key: str, body: RequestIn, st: State, key: Admin) -> dict[str, Any]:
        """Propose an expansion or promotion that the plan says needs other people's approval."""
        return release.propose(
            st.store, flag_key, body.environment, body.action, key.id, actor(key), body.reason, body.percent
        )

    @app.get("/api/flags/{flag_key}/requests", tags=["admin"])
    def list_requests(flag_key: str, st: State, key: Admin) -> list[dict[str, Any]]:
        return release.requests(st.store, flag_key)

    @app.post("/api/requests/{request_id}/approve", tags=["admin"])
    def approve_change(request_id: str, st: State, key: Admin) -> dict[str, Any]:
        """Approve (not as the proposer); the last required approval applies the action."""
        st.catch_up()
        result = release.approve(st.store, request_id, key.id, actor(key))
        st.invalidate()
        return result

    @app.post("/api/requests/{request_id}/reject", tags=["admin"])
    def reject_change(request_id: str, body: ReasonIn, st: State, key: Admin) -> dict[str, Any]:
        return release.reject(st.store, request_id, key.id, actor(key), body.reason)

    @app.post("/api/decisions/{decision_id}/replay", tags=["admin"])
    def replay_decision(decision_id: str, st: State, key: Admin) -> dict[str, Any]:
        """Re-run a decision's SQL on the data now; `matches` when its figures are unchanged."""
        return release.replay(st.store, decision_id)

    @app.get("/api/flags/{flag_key}/sql", tags=["admin"])
    def readout_sql(
        flag_key: str,
        st: State,
        key: Admin,
        environment: Annotated[str, Query(max_length=100)] = "production",
        metric: Annotated[list[str] | None, Query()] = None,
        dialect: Annotated[Literal["duckdb", "postgres", "clickhouse"], Query()] = "duckdb",
        segment: Annotated[str | None, Query(max_length=100, pattern=r"^[A-Za-z0-9_\-]+$")] = None,
    ) -> Response:
        """The exact SQL of the readout, for the chosen dialect."""
        sql = analysis.readout_sql(st.store, flag_key, environment, metric, dialect, segment)
        return Response(sql, media_type="text/plain")

    @app.get(
        "/api/flags/{flag_key}/units",
        tags=["admin"],
        response_class=Response,
        responses={200: {"content": {"application/octet-stream": {}, "text/csv": {}}}},
    )
    def export_units(
        flag_key: str,
        st: State,
        key: Admin,
        environment: Annotated[str, Query(max_length=100)] = "production",
        format: Annotated[Literal["parquet", "csv"], Query()] = "parquet",
        metric: Annotated[list[str] | None, Query()] = None,
        segment: Annotated[str | None, Query(max_length=100, pattern=r"^[A-Za-z0-9_\-]+$")] = None,
    ) -> Response:
        """The per-unit relation (one row per exposed unit, a column per metric) as a file."""
        st.catch_up()
        with tempfile.TemporaryDirectory(prefix="ramplight-export-") as tmp:
            path = f"{tmp}/units.{format}"
            analysis.export_units(st.store, flag_key, environment, path, format, metric, segment)
            data = open(path, "rb").read()  # noqa: SIM115
        media = "application/octet-stream" if format == "parquet" else "text/csv"
        return Response(data, media_type=media)

    # -- admin: metrics -------------------------------------------------------------------

    metric_body = {
        "requestBody": {"required": True, "content": {"application/json": _schema(Metric, ("key",))}}
    }

    @app.get("/api/metrics", tags=["admin"])
    def list_metrics(st: State, key: Admin) -> Response:
        return _msgspec_response(st.store.list_metrics())

    @app.put("/api/metrics/{metric_key}", tags=["admin"], openapi_extra=metric_body)
    def put_metric(
        metric_key: str, st: State, key: Admin, doc: Annotated[dict[str, Any], Body()]
    ) -> Response:
        """Create (no `version`) or replace (the `version` you read) a metric definition."""
        if doc.get("key", metric_key) != metric_key:
            raise ValidationError.at("key", f"is {doc.get('key')!r}; the URL names {metric_key!r}")
        version = doc.get("version")
        if version is not None and (isinstance(version, bool) or not isinstance(version, int)):
            raise ValidationError.at("version", "must be an integer")
        metric = control.save_metric(st.store, {**doc, "key": metric_key, "version": 0}, version or None)
        return _msgspec_response(metric)

    @app.post("/api/apply", tags=["admin"])
    def apply(body: ApplyIn, st: State, key: Admin) -> list[dict[str, Any]]:
        results = release.apply_documents(
            st.store,
            body.metrics,
            body.flags,
            body.plans,
            actor(key),
            dry_run=body.dry_run,
            reason=body.reason,
        )
        st.invalidate()
        return results

    # -- admin: segments ------------------------------------------------------------------

    segment_body = {
        "requestBody": {"required": True, "content": {"application/json": _schema(Segment, ("key",))}}
    }

    @app.get("/api/segments", tags=["admin"])
    def list_segments(st: State, key: Admin) -> Response:
        return _msgspec_response(st.store.list_segments())

    @app.put("/api/segments/{segment_key}", tags=["admin"], openapi_extra=segment_body)
    def put_segment(
        segment_key: str, st: State, key: Admin, doc: Annotated[dict[str, Any], Body()]
    ) -> Response:
        """Create (no `version`) or replace (the `version` you read) a segment."""
        if doc.get("key", segment_key) != segment_key:
            raise ValidationError.at("key", f"is {doc.get('key')!r}; the URL names {segment_key!r}")
        version = doc.get("version")
        if version is not None and (isinstance(version, bool) or not isinstance(version, int)):
            raise ValidationError.at("version", "must be an integer")
        segment = control.save_segment(st.store, {**doc, "key": segment_key, "version": 0}, version or None)
        st.invalidate()
        return _msgspec_response(segment)

    # -- admin: API keys ------------------------------------------------------------------

    @app.get("/api/keys", tags=["admin"])
    def list_keys(st: State, key: Admin) -> list[dict[str, Any]]:
        return [
            {
                "id": k.id,
                "kind": k.kind,
                "environment": k.environment,
                "name": k.name,
                "prefix": k.prefix,
                "created_at": k.created_at.isoformat(),
                "revoked_at": k.revoked_at.isoformat() if k.revoked_at else None,
            }
            for k in st.store.list_api_keys()
        ]

    @app.post("/api/keys", tags=["admin"], status_code=201)
    def create_key(body: ApiKeyIn, st: State, key: Admin) -> dict[str, Any]:
        """The plaintext key is in this response only; the server keeps its hash."""
        if body.can_force and not key.can_force:
            raise ForbiddenError("only a key allowed to force may create one")
        plaintext, created = control.create_api_key(
            st.store, body.kind, body.name, body.environment, can_force=body.can_force
        )
        return {
            "id": created.id,
            "kind": created.kind,
            "environment": created.environment,
            "name": created.name,
            "prefix": created.prefix,
            "key": plaintext,
        }

    @app.delete("/api/keys/{key_id}", tags=["admin"], status_code=204)
    def revoke_key(key_id: str, st: State, key: Admin) -> Response:
        control.revoke_api_key(st.store, key_id)
        st.invalidate()
        return Response(status_code=204)

    # -- SDK ------------------------------------------------------------------------------

    def environment_of(key: ApiKey, environment: str | None) -> str:
        if key.kind == "sdk":
            assert key.environment is not None
            if environment is not None and environment != key.environment:
                raise ForbiddenError(f"this SDK key belongs to {key.environment!r}, not {environment!r}")
            return key.environment
        if environment is None:
            raise ValidationError.at("environment", "admin keys must name the environment (?environment=)")
        return environment

    @app.get("/sdk/config", tags=["sdk"], responses={304: {"description": "unchanged since If-None-Match"}})
    def sdk_config(
        st: State,
        authorization: Authorization = None,
        if_none_match: Annotated[str | None, Header()] = None,
        environment: str | None = Query(None, max_length=100),
    ) -> Response:
        """The environment's flags for local evaluation; poll with If-None-Match."""
        key = st.authenticate(bearer(authorization))
        cached = st.config(environment_of(key, environment))
        headers = {"ETag": cached.etag, "Cache-Control": "no-cache"}
        if if_none_match is not None and cached.etag in {t.strip() for t in if_none_match.split(",")}:
            return Response(status_code=304, headers=headers)
        return Response(cached.body, media_type="application/json", headers=headers)

    # -- ingestion ------------------------------------------------------------------------

    batch_doc = {
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {
                    "schema": {
                        "type": "object",
                        "additionalProperties": False,
                        "properties": {
                            kind: {"type": "array", "items": _schema(tp)["schema"]}
                            for kind, tp in KIND_TYPES.items()
                        },
                    }
                }
            },
        },
    }

    async def read_body(request: Request, limit: int) -> bytes:
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            raise PayloadTooLarge(
                f"request body is {declared} bytes; the limit is {limit} (RAMPLIGHT_MAX_BATCH_BYTES)"
            )
        chunks = []
        size = 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise PayloadTooLarge(
                    f"request body exceeds the limit of {limit} bytes (RAMPLIGHT_MAX_BATCH_BYTES)"
                )
            chunks.append(chunk)
        return b"".join(chunks)

    @app.post("/ingest/batch", tags=["ingest"], openapi_extra=batch_doc)
    async def ingest(
        request: Request,
        authorization: Authorization = None,
        environment: str | None = Query(None, max_length=100),
    ) -> Response:
        """Store exposures, events and eval scores. Good items are kept and acknowledged
        durably (fsynced) before the answer; bad ones come back by kind, index, field, reason."""
        st: ServerState = request.app.state.ramplight
        key = st.authenticate(bearer(authorization))
        env = environment_of(key, environment)
        pressure = st.log.pressure()
        if pressure.overloaded:
            raise Overloaded(
                f"ingestion is pushing back: {pressure.reason}; nothing was taken", pressure.retry_after
            )
        body = await read_body(request, st.settings.max_batch_bytes)
        batch = split_batch(body)
        items = sum(len(v) for v in batch.values())
        limit = st.settings.max_batch_items
        if items > limit:
            raise PayloadTooLarge(
                f"batch has {items} items; the limit is {limit} (RAMPLIGHT_MAX_BATCH_ITEMS)"
            )
        facts = st.facts(env)
        validated = validate_batch(
            batch,
            env,
            facts,
            datetime.now(UTC),
            st.settings.property_allowlist,
        )
        admitted = admit_batch(st.identities, validated)
        count = len(admitted.keys)
        if count:
            try:
                await asyncio.wrap_future(st.log.append(admitted.chunks(), count))
            except OSError as exc:
                st.identities.forget(admitted.keys)
                raise StoreError(
                    f"evidence could not be made durable ({exc.strerror}); nothing was acknowledged"
                ) from exc
            except BaseException:
                st.identities.forget(admitted.keys)
                raise
        st.duplicates += sum(admitted.duplicates.values())
        st.conflicts += len(admitted.conflicts)
        problems = sorted(
            (*validated.problems, *admitted.conflicts), key=lambda p: (p.kind or "", p.index or 0)
        )
        result = {
            "accepted": admitted.accepted,
            "duplicates": admitted.duplicates,
            "rejected": [
                {"kind": p.kind, "index": p.index, "field": p.field, "reason": p.reason} for p in problems
            ],
        }
        return _msgspec_response(result)

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(title=app.title, version=app.version, summary=app.summary, routes=app.routes)
            schema.setdefault("components", {}).setdefault("schemas", {}).update(_components)
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    return app
