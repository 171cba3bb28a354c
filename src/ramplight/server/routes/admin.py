"""Admin routes (`/api/…`): flags, plans, decisions, metrics, segments, keys and operations.

The router's guard requires an admin key on every route of the group (handlers that name the
caller take `key: Admin`, the same dependency, resolved once a request). Handlers parse, call one
use case from `control`/`release`/`analysis`, and format.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, Depends, Header, Query
from fastapi.responses import FileResponse, Response
from pydantic import BaseModel, Field
from starlette.background import BackgroundTask

from ramplight import audit, control, release
from ramplight.analysis import service as analysis
from ramplight.analysis.options import ReadoutOptions
from ramplight.control import users
from ramplight.core.errors import ForbiddenError, NotFoundError, ValidationError
from ramplight.core.flags import Flag, Segment
from ramplight.core.gate import GateRequest, convert_gate_request
from ramplight.core.metrics import Metric
from ramplight.core.plan import Plan
from ramplight.core.prices import Price, convert_prices
from ramplight.core.sources import Source
from ramplight.server.auth import Admin, State, actor, admin_key
from ramplight.server.openapi import json_body
from ramplight.server.responses import encode, json_response
from ramplight.store.backup import take_backup

router = APIRouter(prefix="/api", tags=["admin"], dependencies=[Depends(admin_key)])


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
    sources: list[dict[str, Any]] = Field(
        default_factory=list, description="evidence sources over your own tables (docs/sources.md)"
    )
    prices: list[dict[str, Any]] | None = Field(
        default=None, description="the whole price table (docs/traces.md); absent: left as it is"
    )
    dry_run: bool = False
    reason: str | None = Field(default=None, max_length=1000)


class UserIn(BaseModel):
    name: str = Field(min_length=1, max_length=100)
    role: Literal["viewer", "editor", "approver", "admin"]
    password: str = Field(
        min_length=users.MIN_PASSWORD, max_length=1000, description="kept only as an argon2id hash"
    )


class UserChangeIn(BaseModel):
    role: Literal["viewer", "editor", "approver", "admin"] | None = None
    disabled: bool | None = Field(
        default=None, description="true: sign-in refused and every session ended at once; false: re-enabled"
    )


class ApiKeyIn(BaseModel):
    kind: Literal["admin", "sdk"]
    name: str = Field(min_length=1, max_length=200)
    environment: str | None = Field(default=None, max_length=100)
    can_force: bool = Field(
        default=False, description="may act against measurement plans; only such a key may grant it"
    )


# -- admin: environments --------------------------------------------------------------


@router.get("/environments")
def list_environments(st: State, key: Admin) -> list[dict[str, Any]]:
    return [
        {"key": e.key, "name": e.name, "created_at": e.created_at.isoformat()}
        for e in st.store.list_environments()
    ]


@router.post("/environments", status_code=201)
def create_environment(body: EnvironmentIn, st: State, key: Admin) -> dict[str, Any]:
    env = control.create_environment(st.store, body.key, body.name)
    st.invalidate()
    return {"key": env.key, "name": env.name, "created_at": env.created_at.isoformat()}


# -- admin: backup --------------------------------------------------------------------


@router.post(
    "/backup",
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

flag_body = json_body(Flag)


@router.get("/flags")
def list_flags(st: State, key: Admin, archived: bool = False) -> Response:
    return json_response(st.store.list_flags(include_archived=archived))


@router.post("/flags", status_code=201, openapi_extra=flag_body)
def create_flag(st: State, key: Admin, doc: Annotated[dict[str, Any], Body()]) -> Response:
    flag = control.create_flag(st.store, doc, actor(key))
    st.invalidate()
    return json_response(flag, 201)


@router.get("/flags/{flag_key}")
def get_flag(flag_key: str, st: State, key: Admin) -> Response:
    return json_response(control.get_flag(st.store, flag_key))


@router.put("/flags/{flag_key}", openapi_extra=flag_body)
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
    return json_response(flag)


@router.post("/flags/{flag_key}/ramp")
def ramp(flag_key: str, body: RampIn, st: State, key: Admin) -> Response:
    """Set a variation's share. Growing the candidate against the plan (a breached guardrail,
    a failed gate, a paused release, a stage not yet complete) is a 409 unless forced."""
    st.catch_up()
    flag, changed = release.ramp_flag(
        st.store, flag_key, body.environment, body.variation, body.percent, actor(key),
        donor=body.from_variation, reason=body.reason, expected_version=body.version,
        force=body.force, can_force=key.can_force,
    )  # fmt: skip
    st.invalidate()
    return _flag_answer(flag, changed)


def _flag_answer(flag: Flag, changed: bool) -> Response:
    """A ramp, kill or restore: the flag, or `{unchanged, flag}` when no version was written."""
    return json_response(flag if changed else {"unchanged": True, "flag": flag})


@router.post("/flags/{flag_key}/kill")
def kill(flag_key: str, body: EnvActionIn, st: State, key: Admin) -> Response:
    flag, changed = release.kill_flag(st.store, flag_key, body.environment, actor(key), body.reason)
    st.invalidate()
    return _flag_answer(flag, changed)


@router.post("/flags/{flag_key}/restore")
def restore(flag_key: str, body: EnvActionIn, st: State, key: Admin) -> Response:
    st.catch_up()
    flag, changed = release.restore_flag(
        st.store, flag_key, body.environment, actor(key), body.reason, body.force, key.can_force
    )
    st.invalidate()
    return _flag_answer(flag, changed)


@router.post("/flags/{flag_key}/archive")
def archive(flag_key: str, body: ReasonIn, st: State, key: Admin) -> Response:
    flag = control.archive(st.store, flag_key, actor(key), body.reason)
    st.invalidate()
    return json_response(flag)


@router.get("/flags/{flag_key}/changes")
def flag_changes(flag_key: str, st: State, key: Admin) -> Response:
    """The flag's changes, oldest first, each marked `verified`; they verify on their own by
    `flag_prev_hash` (see `ramplight.core.audit.verify_flag_history`)."""
    response = json_response(audit.flag_history(st.store, flag_key))
    response.headers["Ramplight-Audit-Head"] = encode(audit.head(st.store)).decode()
    return response


@router.get("/audit/verify")
def audit_verify(st: State, key: Admin) -> dict[str, Any]:
    """Verify both audit chains with the server secret and the head log kept outside the
    database; each names its first edited, deleted or reordered row."""
    return {**audit.verify(st.store), "head": audit.head(st.store)}


@router.get("/flags/{flag_key}/report")
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
    traces: Annotated[bool, Query(description="add the per-variation trace summary")] = False,
) -> dict[str, Any]:
    """The readout (docs/readout.md): the recommendation first, then data quality, phases and
    each metric vs control."""
    behind = st.catch_up()
    options = ReadoutOptions(segment=segment, phase=phase, served=served, bayes=bayes, traces=traces)
    result = release.report(st.store, flag_key, environment, metric, options)
    return {**result, "loading": behind} if behind else result


# -- admin: plans and decisions --------------------------------------------------------

plan_body = json_body(Plan, ("flag_key", "environment"))


@router.get("/flags/{flag_key}/plans/{environment}")
def get_plan(flag_key: str, environment: str, st: State, key: Admin) -> Response:
    """The flag's measurement plan in `environment` (404 when it has none: defaults apply)."""
    control.get_flag(st.store, flag_key)
    plan = st.store.get_plan(flag_key, environment)
    if plan is None:
        raise NotFoundError(f"flag {flag_key!r} has no plan in {environment!r}; the defaults apply")
    return json_response(plan)


@router.put("/flags/{flag_key}/plans/{environment}", openapi_extra=plan_body)
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
    return json_response(plan)


@router.get("/flags/{flag_key}/recommendation")
def recommendation(
    flag_key: str,
    st: State,
    key: Admin,
    environment: Annotated[str, Query(max_length=100)] = "production",
) -> dict[str, Any]:
    """What to do next and why, from a fresh readout and the plan."""
    st.catch_up()
    return release.judge(st.store, flag_key, environment).recommendation.to_json()


@router.post("/flags/{flag_key}/decisions", status_code=201)
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


gate_body = json_body(GateRequest)


@router.post("/flags/{flag_key}/gates", status_code=201, openapi_extra=gate_body)
def run_gate(flag_key: str, st: State, key: Admin, doc: Annotated[dict[str, Any], Body()]) -> dict[str, Any]:
    """Run the eval gate (paired by item, non-inferiority per score) on the eval set's `items` or
    on the scores of an offline run in `evals` (`run_id`), and record the result with the flag:
    its next decision carries it (docs/decisions.md). The answer says whether it `passed`."""
    request = convert_gate_request(doc)
    if request.run_id is not None:
        st.catch_up()
    return release.run_eval_gate(st.store, flag_key, request, actor(key))


@router.get("/flags/{flag_key}/gates")
def list_gates(
    flag_key: str, st: State, key: Admin, environment: Annotated[str | None, Query(max_length=100)] = None
) -> list[dict[str, Any]]:
    """The flag's recorded eval gates, oldest first."""
    return release.eval_gates(st.store, flag_key, environment)


@router.get("/flags-check")
def flags_check(st: State, key: Admin) -> list[dict[str, Any]]:
    """Stored segments and flags that today's checks refuse (saved under older rules: a regex
    now refused, say); SDKs serve the default for such a flag until it is fixed. Empty: all pass."""
    return control.stored_problems(st.store)


@router.get("/flags-stale")
def stale_flags(
    st: State, key: Admin, days: Annotated[float, Query(ge=0, le=3650)] = 30
) -> list[dict[str, Any]]:
    """Flags to clean up: settled or unexposed for `days`, or decided with cleanup due."""
    st.catch_up()
    return release.stale_flags(st.store, days)


@router.get("/ingest/status")
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
        "spans_rejected": st.spans_rejected,
        "span_attributes_dropped": st.span_attributes_dropped,
        "flag_evaluations_not_exposures": st.evaluations_not_exposures,
        "log_records_ignored": st.log_records_ignored,
        "dead_letters": st.log.dead_letters(),
    }


@router.post("/ingest/dead-letters/{name}/reload")
def reload_dead_letter(name: str, st: State, key: Admin) -> dict[str, Any]:
    """Put a dead-lettered segment back in line to load (after fixing what made it fail)."""
    try:
        st.log.reload(name)
    except FileNotFoundError as exc:
        raise NotFoundError(str(exc)) from None
    st.catch_up()
    return {"reloaded": name, "dead_letters": st.log.dead_letters()}


@router.get("/guardian")
def guardian_status(st: State, key: Admin) -> dict[str, Any]:
    """The guardian in this server: its interval, whether it runs the checks here (of several
    servers sharing a PostgreSQL control plane, one leads), how many checks it ran and when last."""
    status: dict[str, Any] = st.guardian.status()
    return status


@router.post("/guardian/check")
def guardian_check(st: State, key: Admin) -> list[dict[str, Any]]:
    """Run the guardian's check of every plan now (it also runs on its interval)."""
    return [
        {"flag_key": o.flag_key, "environment": o.environment, "recommendation": o.recommendation,
         "acted": o.acted, "note": o.note}
        for o in st.guardian.check_now()
    ]  # fmt: skip


@router.get("/flags/{flag_key}/decisions")
def list_decisions(flag_key: str, st: State, key: Admin) -> list[dict[str, Any]]:
    return release.decisions(st.store, flag_key)


@router.post("/flags/{flag_key}/requests", status_code=201)
def propose_change(flag_key: str, body: RequestIn, st: State, key: Admin) -> dict[str, Any]:
    """Propose an expansion or promotion that the plan says needs other people's approval."""
    return release.propose(
        st.store, flag_key, body.environment, body.action, key.id, actor(key), body.reason, body.percent
    )


@router.get("/flags/{flag_key}/requests")
def list_requests(flag_key: str, st: State, key: Admin) -> list[dict[str, Any]]:
    return release.requests(st.store, flag_key)


@router.post("/requests/{request_id}/approve")
def approve_change(request_id: str, st: State, key: Admin) -> dict[str, Any]:
    """Approve (not as the proposer); the last required approval applies the action."""
    st.catch_up()
    result = release.approve(st.store, request_id, key.id, actor(key))
    st.invalidate()
    return result


@router.post("/requests/{request_id}/reject")
def reject_change(request_id: str, body: ReasonIn, st: State, key: Admin) -> dict[str, Any]:
    return release.reject(st.store, request_id, key.id, actor(key), body.reason)


@router.post("/decisions/{decision_id}/replay")
def replay_decision(decision_id: str, st: State, key: Admin) -> dict[str, Any]:
    """Re-run a decision's SQL on the data now; `matches` when its figures are unchanged."""
    return release.replay(st.store, decision_id)


@router.get("/flags/{flag_key}/sql")
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


@router.get(
    "/flags/{flag_key}/units",
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

metric_body = json_body(Metric, ("key",))


@router.get("/metrics")
def list_metrics(st: State, key: Admin) -> Response:
    return json_response(st.store.list_metrics())


@router.put("/metrics/{metric_key}", openapi_extra=metric_body)
def put_metric(metric_key: str, st: State, key: Admin, doc: Annotated[dict[str, Any], Body()]) -> Response:
    """Create (no `version`) or replace (the `version` you read) a metric definition."""
    if doc.get("key", metric_key) != metric_key:
        raise ValidationError.at("key", f"is {doc.get('key')!r}; the URL names {metric_key!r}")
    version = doc.get("version")
    if version is not None and (isinstance(version, bool) or not isinstance(version, int)):
        raise ValidationError.at("version", "must be an integer")
    metric = control.save_metric(st.store, {**doc, "key": metric_key, "version": 0}, version or None)
    return json_response(metric)


@router.post("/apply")
def apply(body: ApplyIn, st: State, key: Admin) -> list[dict[str, Any]]:
    results = release.apply_documents(
        st.store,
        body.metrics,
        body.flags,
        body.plans,
        actor(key),
        dry_run=body.dry_run,
        reason=body.reason,
        sources=body.sources,
        prices=body.prices,
    )
    st.invalidate()
    return results


# -- admin: the price table -----------------------------------------------------------


@router.get("/prices")
def list_prices(st: State) -> Response:
    """USD per million input and output tokens, per model: a span's cost when it sends none."""
    return json_response(st.store.list_prices())


@router.put("/prices", openapi_extra=json_body(list[Price]))
def put_prices(st: State, docs: Annotated[list[dict[str, Any]], Body()]) -> Response:
    """Replace the whole price table (every entry checked first; 422 names each bad one)."""
    prices = convert_prices(docs)
    st.store.replace_prices(prices)
    return json_response(prices)


# -- admin: evidence sources ----------------------------------------------------------

source_body = json_body(Source, ("key",))


@router.get("/sources")
def list_sources(st: State) -> Response:
    """Evidence sources: exposures and events read from your own tables (docs/sources.md)."""
    return json_response(st.store.list_sources())


@router.put("/sources/{source_key}", openapi_extra=source_body)
def put_source(source_key: str, st: State, doc: Annotated[dict[str, Any], Body()]) -> Response:
    """Create (no `version`) or replace (the `version` you read) a source; its mapping, its SQL's
    tables and its columns are checked on the store first (422 naming each problem)."""
    if doc.get("key", source_key) != source_key:
        raise ValidationError.at("key", f"is {doc.get('key')!r}; the URL names {source_key!r}")
    version = doc.get("version")
    if version is not None and (isinstance(version, bool) or not isinstance(version, int)):
        raise ValidationError.at("version", "must be an integer")
    source = control.save_source(st.store, {**doc, "key": source_key, "version": 0}, version or None)
    return json_response(source)


@router.delete("/sources/{source_key}", status_code=204)
def delete_source(source_key: str, st: State) -> Response:
    """Stop reading a source (404 when there is none); its tables are left as they are."""
    control.delete_source(st.store, source_key)
    return Response(status_code=204)


# -- admin: segments ------------------------------------------------------------------

segment_body = json_body(Segment, ("key",))


@router.get("/segments")
def list_segments(st: State, key: Admin) -> Response:
    return json_response(st.store.list_segments())


@router.put("/segments/{segment_key}", openapi_extra=segment_body)
def put_segment(segment_key: str, st: State, key: Admin, doc: Annotated[dict[str, Any], Body()]) -> Response:
    """Create (no `version`) or replace (the `version` you read) a segment."""
    if doc.get("key", segment_key) != segment_key:
        raise ValidationError.at("key", f"is {doc.get('key')!r}; the URL names {segment_key!r}")
    version = doc.get("version")
    if version is not None and (isinstance(version, bool) or not isinstance(version, int)):
        raise ValidationError.at("version", "must be an integer")
    segment = control.save_segment(st.store, {**doc, "key": segment_key, "version": 0}, version or None)
    st.invalidate()
    return json_response(segment)


# -- admin: API keys ------------------------------------------------------------------


@router.get("/keys")
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


@router.post("/keys", status_code=201)
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


@router.delete("/keys/{key_id}", status_code=204)
def revoke_key(key_id: str, st: State, key: Admin) -> Response:
    control.revoke_api_key(st.store, key_id)
    st.invalidate()
    return Response(status_code=204)


# -- admin: people who sign in to the web UI -------------------------------------------


@router.get("/users")
def list_users(st: State, key: Admin) -> list[dict[str, Any]]:
    return [users.user_json(u) for u in st.store.list_users()]


@router.post("/users", status_code=201)
def create_user(body: UserIn, st: State, key: Admin) -> dict[str, Any]:
    """A person who signs in to the web UI with this password and role (viewer, editor,
    approver, admin; docs/ui.md). The password is kept only as an argon2id hash."""
    return users.user_json(users.create_user(st.store, body.name, body.role, body.password))


@router.patch("/users/{name}")
def change_user(name: str, body: UserChangeIn, st: State, key: Admin) -> dict[str, Any]:
    """Change a user's role, or disable / re-enable them (disabling ends their sessions)."""
    user = st.store.find_user(name)
    if user is None:
        raise NotFoundError(f"no user {name!r}")
    return users.user_json(users.change_user(st.store, user.id, role=body.role, disabled=body.disabled))
