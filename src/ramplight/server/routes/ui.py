"""The web UI: sign-in, the flags page, a page per flag, the change requests and (for admins)
the users, rendered on the server (Jinja2).

Every page needs a session (`server/sessions.py`); every POST carries the session's CSRF token;
the role is checked here, on the server, before anything acts. Actions call the same functions
as the admin API (`release.decide_action`, `control.kill`, `control.restore`, `release.propose`,
`release.approve`, `release.reject`, `users.create_user`), so the plan's refusals (409), the
forcing rule and the audit trail are the same. None of these routes is in
the OpenAPI schema.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any
from urllib.parse import quote, urlencode

from fastapi import APIRouter, FastAPI, Form, Query, Request
from fastapi.responses import RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from jinja2 import Environment, PackageLoader

from ramplight import audit, control, release
from ramplight.analysis.overview import STATUSES
from ramplight.control import users
from ramplight.control.users import Principal
from ramplight.core.errors import AuthError, ForbiddenError, NotFoundError, RamplightError, ValidationError
from ramplight.server import editing, room
from ramplight.server.readouts import ReadoutCache
from ramplight.server.routes import docs
from ramplight.server.sessions import (
    LOGIN_COOKIE,
    SESSION_COOKIE,
    clear_session,
    csrf_for,
    csrf_ok,
    new_login_nonce,
    principal,
    set_login_nonce,
    set_session,
    state,
)
from ramplight.store.base import ROLES

router = APIRouter(include_in_schema=False)
templates = Jinja2Templates(
    env=Environment(loader=PackageLoader("ramplight.server", "templates"), autoescape=True)
)


def _percent(value: float) -> str:
    return f"{value:g}\u00a0%"  # a no-break space: "5 %" never wraps apart


def _reason(sentence: str) -> str:
    """A recommendation's sentence without its leading verdict ("rollback: latency…")."""
    head, _, rest = sentence.partition(": ")
    return rest if rest and head in release.ACTIONS else sentence


def _when(value: datetime | str) -> str:
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


def _num(value: float | None, signed: bool = False) -> str:
    if value is None:
        return "–"
    return f"{value:+,.4g}" if signed else f"{value:,.4g}"


def _pct(value: float | None) -> str:
    return "–" if value is None else room.percent_text(value, signed=True, digits=2)


def _age(value: datetime) -> str:
    """How long ago, coarsely: "5 min", "3 h", "2 d"."""
    seconds = max(0, int((datetime.now(UTC) - value).total_seconds()))
    if seconds < 3600:
        return f"{seconds // 60}\u00a0min"
    if seconds < 86400:
        return f"{seconds // 3600}\u00a0h"
    return f"{seconds // 86400}\u00a0d"


templates.env.filters.update(percent=_percent, reason=_reason, when=_when, num=_num, pct=_pct, age=_age)
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}
ACTIONS = ("expand", "pause", "rollback", "promote", "cleanup", "kill", "restore")
PROPOSABLE = ("expand", "promote")
"""The actions a plan with `approvers` sends through a change request (`release.refusal`)."""
SERIES_WAIT_S = 5.0
"""How long a flag page waits for its difference series (one readout per checkpoint) before it
shows the previous one, or says it is being computed (docs/ui.md: ~25 s at a million units)."""
DONE = {
    "expand": "Expanded: the decision is recorded.",
    "pause": "Paused: the ramp keeps its weights and may not grow.",
    "rollback": "Rolled back: everyone is served the control again.",
    "promote": "Promoted: the candidate is the default and serves everyone.",
    "cleanup": "Cleaned up: the flag is archived (the losing branch is named in the audit log).",
    "kill": "Killed: everyone is served the off variation.",
    "restore": "Restored: the flag serves its rollout again.",
    "created": "Created: the flag serves its first variation to everyone; ramp it below.",
    "ramped": "Ramped: the new weights are served now.",
    "saved_config": "Saved: the targeting and rollout are served now.",
    "saved_plan": "Saved: the measurement plan applies from the next readout.",
    "proposed": "Proposed: the change request waits for approval on the Requests page.",
}
FORGED = "This form was not sent from a Ramplight page (no valid CSRF token)."


def _cache(request: Request) -> ReadoutCache:
    st = state(request)
    cache: ReadoutCache | None = getattr(st, "ui_readouts", None)
    if cache is None:
        cache = ReadoutCache()
        st.ui_readouts = cache  # type: ignore[attr-defined]  # one per server, beside its store
    return cache


def _page(
    request: Request, name: str, context: dict[str, Any], me: Principal | None, status_code: int = 200
) -> Response:
    csrf = csrf_for(request.cookies.get(SESSION_COOKIE, "")) if me else ""
    response = templates.TemplateResponse(
        request, name, {"me": me, "csrf": csrf, **context}, status_code=status_code
    )
    response.headers.update(SECURITY_HEADERS)
    return response


def _refused(request: Request, me: Principal | None, message: str, status_code: int) -> Response:
    return _page(request, "refused.html", {"message": message}, me, status_code)


def _forged(request: Request, me: Principal, csrf: str) -> Response | None:
    """The 403 page when the form does not carry this session's CSRF token (None: it does)."""
    if csrf_ok(request.cookies.get(SESSION_COOKIE), csrf):
        return None
    return _refused(request, me, FORGED, 403)


def _safe_next(target: str | None) -> str:
    """Only a path on this site: never another origin (`//host`, `https://…`)."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    return target


def _to_login(request: Request) -> RedirectResponse:
    here = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return RedirectResponse(f"/login?next={quote(here)}", status_code=303)


def _message(exc: RamplightError) -> str:
    if isinstance(exc, ValidationError) and exc.problems:
        return "; ".join(p.render() for p in exc.problems)
    return exc.message


# -- signing in ---------------------------------------------------------------------------


@router.get("/login")
def login_form(request: Request, next: str = "/") -> Response:
    if principal(request) is not None:
        return RedirectResponse(_safe_next(next), status_code=303)
    return _login_page(request, next, None, 200)


def _login_page(request: Request, next: str, error: str | None, status_code: int) -> Response:
    nonce = request.cookies.get(LOGIN_COOKIE) or new_login_nonce()
    response = _page(
        request,
        "login.html",
        {"next": _safe_next(next), "error": error, "csrf": csrf_for(nonce)},
        None,
        status_code,
    )
    if nonce != request.cookies.get(LOGIN_COOKIE):
        set_login_nonce(response, request, nonce)
    return response


@router.post("/login")
def login(
    request: Request,
    csrf: Annotated[str, Form()] = "",
    name: Annotated[str, Form(max_length=100)] = "",
    password: Annotated[str, Form(max_length=1000)] = "",
    key: Annotated[str, Form(max_length=200)] = "",
    next: Annotated[str, Form(max_length=2000)] = "/",
) -> Response:
    """Sign in with a name and password, or with an admin API key."""
    if not csrf_ok(request.cookies.get(LOGIN_COOKIE), csrf):
        return _login_page(request, next, "The sign-in form expired; please try again.", 403)
    store = state(request).store
    try:
        if key:
            from ramplight.server.auth import authenticate

            token = users.start_session(store, key=authenticate(store, key.strip()))
        else:
            token = users.start_session(store, user=users.check_password(store, name, password))
    except AuthError as exc:
        return _login_page(request, next, exc.message, exc.status_code)
    response = RedirectResponse(_safe_next(next), status_code=303)
    set_session(response, request, token)
    return response


@router.post("/logout")
def logout(request: Request, csrf: Annotated[str, Form()] = "") -> Response:
    me = principal(request)
    token = request.cookies.get(SESSION_COOKIE)
    if me is not None and not csrf_ok(token, csrf):
        return _refused(request, me, FORGED, 403)
    users.end_session(state(request).store, token)
    response = RedirectResponse("/login", status_code=303)
    clear_session(response)
    return response


# -- the flags page -----------------------------------------------------------------------


@router.get("/")
def flags_page(request: Request, q: str = "", environment: str = "", status: str = "") -> Response:
    """Every flag in every environment: status, ramp, recommendation, data quality; filtered by
    the query string (`q` searches keys and descriptions), so it works without JavaScript."""
    me = principal(request)
    if me is None:
        return _to_login(request)
    st = state(request)
    rows = _cache(request).rows(st.store)
    environments = sorted({r.environment for r in rows})
    needle = q.strip().lower()
    shown = [
        r
        for r in rows
        if (not environment or r.environment == environment)
        and (not status or r.status == status)
        and (not needle or needle in r.flag.key.lower() or needle in r.flag.description.lower())
    ]
    context = {
        "rows": shown,
        "total": len(rows),
        "environments": environments,
        "statuses": STATUSES,
        "filters": {"q": q, "environment": environment, "status": status},
        "archived": [
            f
            for f in st.store.list_flags(include_archived=True)
            if f.archived and (not needle or needle in f.key.lower() or needle in f.description.lower())
        ],
    }
    return _page(request, "flags.html", context, me)


# -- one flag -----------------------------------------------------------------------------


def _flag_page(
    request: Request,
    me: Principal,
    flag_key: str,
    environment: str | None,
    done: str | None = None,
    error: str | None = None,
    status_code: int = 200,
    edit: editing.Editor | None = None,
    segment: str | None = None,
) -> Response:
    st = state(request)
    flag = st.store.get_flag(flag_key)
    if flag is None:
        return _refused(request, me, f"There is no flag {flag_key!r}.", 404)
    if not flag.environments:
        return _refused(request, me, f"Flag {flag_key!r} is not configured in any environment.", 404)
    if environment not in flag.environments:
        environment = "production" if "production" in flag.environments else next(iter(flag.environments))
    cache = _cache(request)
    stale = (flag.key, environment) in cache.stale(st.store, st.store.list_flags())
    row = cache.row(st.store, flag, environment, st.store.decisions(flag.key), stale)
    context = {
        "row": row,
        "flag": flag,
        "environment": environment,
        "done": DONE.get(done or ""),
        "error": error,
        "decisions": [d for d in st.store.decisions(flag.key) if d.environment == environment][-10:][::-1],
        "may_act": me.may("editor"),
        "edit": edit or editing.editor(st.store, flag, environment),
        "stamp": editing.page_stamp(st.store, flag, environment),
        "approvals_needed": release.plan_for(st.store, flag, environment)[0].approvers,
        "pending": [
            r
            for r in st.store.list_requests(flag.key)
            if r.environment == environment and r.state == "proposed"
        ],
        "audit_check": cache.audit_check(
            st.store, flag.key, (flag.version, len(st.store.decisions(flag.key)))
        ),
    }
    shown = _room(st.store, flag.key, environment, row.judged)
    context |= shown | _evidence(cache, st.store, flag, environment, row, shown, segment)
    return _page(request, "flag.html", context, me, status_code)


def _room(store: Any, flag_key: str, environment: str, judged: Any) -> dict[str, Any]:
    """The metric table, the timeline and the SQL from the cached judgement (no new scan), and
    the flag's audit entries (the chains' verification is cached: `ReadoutCache.audit_check`)."""
    metrics = (
        room.metric_rows(judged.readout, judged.recommendation, judged.candidate) if judged.readout else []
    )
    history = [c for c in audit.flag_history(store, flag_key) if c.get("environment") in (None, environment)]
    return {
        "metrics": metrics,
        "timeline": room.timeline_view(judged.timeline),
        "sql": judged.sql,
        "audit_entries": history[-10:][::-1],
    }


def _evidence(
    cache: ReadoutCache,
    store: Any,
    flag: Any,
    environment: str,
    row: Any,
    shown: dict[str, Any],
    segment: str | None,
) -> dict[str, Any]:
    """The evidence beyond the latest readout, each cached under the judgement's stamp: the
    difference over time of each goal and guardrail (one readout per checkpoint), the segment
    review (one readout split by the chosen attribute; the first candidate by default) and the
    eval scores and traces per variation. `shown`: the metric rows and timeline of `_room`."""
    judged = row.judged
    decisions = [d for d in store.decisions(flag.key) if d.environment == environment]
    if judged.readout is None:
        return {"differences": [], "series": None, "segments": None, "llm": room.evidence_views(None, None)}
    series = cache.evidence(
        "difference_series",
        store,
        flag,
        environment,
        decisions,
        lambda: release.difference_series(store, flag.key, environment, latest=judged.readout),
        wait_s=SERIES_WAIT_S,
    )
    plan, _ = release.plan_for(store, flag, environment)
    rows = shown["metrics"]
    entries = shown["timeline"]["entries"][::-1]  # oldest first
    differences = room.difference_views(series.value, rows, judged.recommendation, entries, plan.alpha)

    def memo(name: Any, compute: Any) -> Any:
        return cache.evidence(name, store, flag, environment, decisions, compute)

    attributes = memo("segment_attributes", lambda: release.segment_attributes(store, flag.key, environment))
    names = [a["attribute"] for a in attributes.value or []]
    named = [a for a in plan.segments if a in names]  # the plan's, in its order, when exposures carry them
    chosen = segment.strip() if segment else (named[0] if named else names[0] if names else None)
    refused = None
    if chosen is not None and chosen not in names:
        # Refused before anything is computed or kept: the cache holds one entry per attribute.
        listed = ", ".join(names) or "none"
        refused = f"no attribute {chosen!r} among the flag's exposures (attributes: {listed})"
    review = (
        memo(("segments", chosen), lambda: release.segment_review(store, flag.key, environment, chosen))
        if chosen and refused is None
        else None
    )
    segments = {
        "attributes": attributes.value or [],
        "chosen": chosen,
        "error": refused or (review.error if review else None),
        "views": room.segment_views(review.value, rows, judged.candidate) if review else [],
        "computed": review,
    }
    llm = memo("evals_and_traces", lambda: release.evals_and_traces(store, flag.key, environment))
    return {
        "differences": differences,
        "series": series,
        "segments": segments,
        "llm": room.evidence_views(llm.value, judged.candidate),
        "llm_computed": llm if llm.value else None,
        "llm_alpha": plan.alpha,
        "llm_control": (llm.value or {}).get("control", "the control"),
    }


@router.get("/flags/{flag_key}")
def flag_page(
    request: Request,
    flag_key: str,
    environment: str | None = None,
    done: str | None = None,
    segment: Annotated[str | None, Query(max_length=64)] = None,
) -> Response:
    me = principal(request)
    if me is None:
        return _to_login(request)
    return _flag_page(request, me, flag_key, environment, done=done, segment=segment)


@router.post("/flags/{flag_key}/actions")
def act(
    request: Request,
    flag_key: str,
    action: Annotated[str, Form(max_length=20)] = "",
    environment: Annotated[str, Form(max_length=100)] = "",
    reason: Annotated[str, Form(max_length=1000)] = "",
    force: Annotated[bool, Form()] = False,
    csrf: Annotated[str, Form()] = "",
) -> Response:
    """Act on the flag from its page (as `POST /api/flags/{key}/decisions` and `ramplight decide`
    do: expand, pause, roll back, promote, clean up; or kill, restore); a refusal is shown on the
    page with its reason."""
    me = principal(request)
    if me is None:
        return _to_login(request)
    if forged := _forged(request, me, csrf):
        return forged
    st = state(request)
    try:
        if not me.may("editor"):
            raise ForbiddenError(f"your role ({me.role}) may look but not act: acting needs editor or above")
        if action not in ACTIONS:
            raise ValidationError.at("action", f"one of {', '.join(ACTIONS)}")
        text = reason.strip() or None
        st.catch_up()
        if action == "kill":
            control.kill(st.store, flag_key, environment, me.actor, text)
        elif action == "restore":
            forced = release.check_restore(st.store, flag_key, environment, force, me.can_force)
            if forced and not text:
                raise ValidationError.at("reason", "a forced action needs a reason")
            control.restore(st.store, flag_key, environment, me.actor, f"forced: {text}" if forced else text)
        else:
            release.decide_action(
                st.store, flag_key, environment, action, me.actor, text, force=force, can_force=me.can_force
            )
    except NotFoundError as exc:
        return _refused(request, me, exc.message, 404)
    except RamplightError as exc:
        return _flag_page(
            request, me, flag_key, environment, error=_message(exc), status_code=exc.status_code
        )
    st.invalidate()
    query = urlencode({"environment": environment, "done": action})
    return RedirectResponse(f"/flags/{quote(flag_key)}?{query}", status_code=303)


@router.post("/flags/{flag_key}/requests")
def propose(
    request: Request,
    flag_key: str,
    action: Annotated[str, Form(max_length=20)] = "",
    environment: Annotated[str, Form(max_length=100)] = "",
    reason: Annotated[str, Form(max_length=1000)] = "",
    csrf: Annotated[str, Form()] = "",
) -> Response:
    """Open a change request for an expansion or promotion the plan sends to approvers
    (`release.propose`, as `POST /api/flags/{key}/requests`)."""
    me = principal(request)
    if me is None:
        return _to_login(request)
    if forged := _forged(request, me, csrf):
        return forged
    st = state(request)
    try:
        if not me.may("editor"):
            raise ForbiddenError(
                f"your role ({me.role}) may look but not propose: that needs editor or above"
            )
        if action not in PROPOSABLE:
            raise ValidationError.at("action", "expand or promote")
        release.propose(st.store, flag_key, environment, action, me.id, me.actor, reason.strip() or None)
    except NotFoundError as exc:
        return _refused(request, me, exc.message, 404)
    except RamplightError as exc:
        return _flag_page(
            request, me, flag_key, environment, error=_message(exc), status_code=exc.status_code
        )
    query = urlencode({"environment": environment, "done": "proposed"})
    return RedirectResponse(f"/flags/{quote(flag_key)}?{query}", status_code=303)


# -- change requests ----------------------------------------------------------------------

REQUEST_DONE = {
    "applied": "Approved and applied: the decision is recorded on the flag.",
    "approved": "Approved: the request waits for more approvals.",
    "rejected": "Rejected: nothing changes on the flag.",
}


def _requests_page(
    request: Request,
    me: Principal,
    done: str | None = None,
    error: str | None = None,
    status_code: int = 200,
) -> Response:
    everything = state(request).store.list_requests()
    pending = sorted((r for r in everything if r.state == "proposed"), key=lambda r: r.proposed_at)
    decided = sorted(
        (r for r in everything if r.state != "proposed" and r.decided_at is not None),
        key=lambda r: r.decided_at or r.proposed_at,
        reverse=True,
    )
    context = {
        "pending": pending,
        "decided": decided[:20],
        "may_approve": me.may("approver"),
        "done": REQUEST_DONE.get(done or ""),
        "error": error,
    }
    return _page(request, "requests.html", context, me, status_code)


@router.get("/requests")
def requests_page(request: Request, done: str | None = None) -> Response:
    """Pending change requests, with Approve and Reject for approvers; then the decided ones."""
    me = principal(request)
    if me is None:
        return _to_login(request)
    return _requests_page(request, me, done)


@router.post("/requests/{request_id}/{verdict}")
def decide_request(
    request: Request,
    request_id: str,
    verdict: str,
    reason: Annotated[str, Form(max_length=1000)] = "",
    csrf: Annotated[str, Form()] = "",
) -> Response:
    """Approve (`release.approve`: the last required approval applies the action, checked
    against the plan again) or reject (`release.reject`) a change request."""
    me = principal(request)
    if me is None:
        return _to_login(request)
    if forged := _forged(request, me, csrf):
        return forged
    if verdict not in ("approve", "reject"):
        return _refused(request, me, "Approve or reject: nothing else is done to a request.", 404)
    if not me.may("approver"):
        return _refused(
            request,
            me,
            f"Your role ({me.role}) may not approve or reject change requests: that needs approver or admin.",
            403,
        )
    st = state(request)
    try:
        if verdict == "approve":
            st.catch_up()
            answer = release.approve(st.store, request_id, me.id, me.actor)
            st.invalidate()
            done = "applied" if answer["state"] == "applied" else "approved"
        else:
            release.reject(st.store, request_id, me.id, me.actor, reason.strip() or None)
            done = "rejected"
    except RamplightError as exc:
        return _requests_page(request, me, error=_message(exc), status_code=exc.status_code)
    return RedirectResponse(f"/requests?done={done}", status_code=303)


# -- users (admins only) ------------------------------------------------------------------

USERS_DONE = {
    "added": "Added: they can sign in now.",
    "role": "Role changed: it applies to their next request, in every open session.",
    "disabled": "Disabled: their sessions have ended and they can no longer sign in.",
    "enabled": "Enabled: they can sign in again.",
}
ADMINS_ONLY = "Only admins manage users: your role ({role}) may not."


def _users_page(
    request: Request,
    me: Principal,
    done: str | None = None,
    error: str | None = None,
    status_code: int = 200,
    entered: dict[str, str] | None = None,
) -> Response:
    context = {
        "users": state(request).store.list_users(),
        "roles": ROLES,
        "min_password": users.MIN_PASSWORD,
        "done": USERS_DONE.get(done or ""),
        "error": error,
        "entered": entered or {"name": "", "role": "viewer"},
    }
    return _page(request, "users.html", context, me, status_code)


@router.get("/users")
def users_page(request: Request, done: str | None = None) -> Response:
    """Every user with their role, when they were added and last signed in; add, change, disable."""
    me = principal(request)
    if me is None:
        return _to_login(request)
    if not me.may("admin"):
        return _refused(request, me, ADMINS_ONLY.format(role=me.role), 403)
    return _users_page(request, me, done)


@router.post("/users")
def add_user(
    request: Request,
    name: Annotated[str, Form(max_length=100)] = "",
    role: Annotated[str, Form(max_length=20)] = "",
    password: Annotated[str, Form(max_length=1000)] = "",
    password_again: Annotated[str, Form(max_length=1000)] = "",
    csrf: Annotated[str, Form()] = "",
) -> Response:
    """Add a user (`users.create_user`, as `POST /api/users` and `ramplight users add`)."""
    me = principal(request)
    if me is None:
        return _to_login(request)
    if forged := _forged(request, me, csrf):
        return forged
    if not me.may("admin"):
        return _refused(request, me, ADMINS_ONLY.format(role=me.role), 403)
    try:
        if password != password_again:
            raise ValidationError.at("password", "the two passwords differ")
        users.create_user(state(request).store, name.strip(), role, password)
    except RamplightError as exc:
        entered = {"name": name, "role": role}
        return _users_page(request, me, error=_message(exc), status_code=exc.status_code, entered=entered)
    return RedirectResponse("/users?done=added", status_code=303)


@router.post("/users/{user_id}")
def change_user(
    request: Request,
    user_id: str,
    change: Annotated[str, Form(max_length=20)] = "",
    role: Annotated[str, Form(max_length=20)] = "",
    csrf: Annotated[str, Form()] = "",
) -> Response:
    """Change a user's role, or disable or enable them (`users.change_user`); disabling ends
    their sessions at once. Admins may not demote or disable themselves."""
    me = principal(request)
    if me is None:
        return _to_login(request)
    if forged := _forged(request, me, csrf):
        return forged
    if not me.may("admin"):
        return _refused(request, me, ADMINS_ONLY.format(role=me.role), 403)
    store = state(request).store
    try:
        if change == "role":
            users.change_user(store, user_id, role=role, by_id=me.id)
        elif change in ("disabled", "enabled"):
            users.change_user(store, user_id, disabled=change == "disabled", by_id=me.id)
        else:
            raise ValidationError.at("change", "role, disabled or enabled")
    except NotFoundError as exc:
        return _refused(request, me, exc.message, 404)
    except RamplightError as exc:
        return _users_page(request, me, error=_message(exc), status_code=exc.status_code)
    return RedirectResponse(f"/users?done={change}", status_code=303)


def install(app: FastAPI) -> None:
    """The web UI, its static files, and the API docs from packaged assets (no CDN)."""
    app.include_router(docs.router)
    from ramplight.server.routes import ui_decisions, ui_edit

    app.include_router(ui_decisions.router)
    app.include_router(ui_edit.router)
    app.include_router(router)
    app.mount("/static", StaticFiles(packages=[("ramplight.server", "static")]), name="static")
    app.mount(docs.ASSETS_URL, StaticFiles(directory=str(docs.ASSETS)), name="docs-static")
