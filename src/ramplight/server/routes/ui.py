"""The web UI: sign-in, the flags page and a page per flag, rendered on the server (Jinja2).

Every page needs a session (`server/sessions.py`); every POST carries the session's CSRF token;
the role is checked here, on the server, before anything acts. Actions call the same functions
as the admin API (`release.decide_action`, `control.kill`, `control.restore`), so the plan's
refusals (409), the forcing rule and the audit trail are the same. None of these routes is in
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
from ramplight.server import room
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
    return "–" if value is None else f"{value * 100:+.2g}\u00a0%"


templates.env.filters.update(percent=_percent, reason=_reason, when=_when, num=_num, pct=_pct)
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}
ACTIONS = ("expand", "pause", "rollback", "kill", "restore")
SERIES_WAIT_S = 5.0
"""How long a flag page waits for its difference series (one readout per checkpoint) before it
shows the previous one, or says it is being computed (docs/ui.md: ~25 s at a million units)."""
DONE = {
    "expand": "Expanded: the decision is recorded.",
    "pause": "Paused: the ramp keeps its weights and may not grow.",
    "rollback": "Rolled back: everyone is served the control again.",
    "kill": "Killed: everyone is served the off variation.",
    "restore": "Restored: the flag serves its rollout again.",
}


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
        return _refused(
            request, me, "This form was not sent from a Ramplight page (no valid CSRF token).", 403
        )
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
    }
    shown = _room(st.store, flag.key, environment, row.judged)
    context |= shown | _evidence(cache, st.store, flag, environment, row, shown, segment)
    return _page(request, "flag.html", context, me, status_code)


def _room(store: Any, flag_key: str, environment: str, judged: Any) -> dict[str, Any]:
    """The metric table, the timeline and the SQL from the cached judgement (no new scan), and
    the flag's audit entries with the chains' verification (`audit.verify`, as /api/audit/verify)."""
    metrics = (
        room.metric_rows(judged.readout, judged.recommendation, judged.candidate) if judged.readout else []
    )
    history = [c for c in audit.flag_history(store, flag_key) if c.get("environment") in (None, environment)]
    return {
        "metrics": metrics,
        "timeline": room.timeline_view(judged.timeline),
        "sql": judged.sql,
        "audit_entries": history[-10:][::-1],
        "audit_check": audit.verify(store),
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
    chosen = segment.strip() if segment else (names[0] if names else None)
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
    """Act on the flag from its page; a refusal is shown on the page with its reason."""
    me = principal(request)
    if me is None:
        return _to_login(request)
    if not csrf_ok(request.cookies.get(SESSION_COOKIE), csrf):
        return _refused(
            request, me, "This form was not sent from a Ramplight page (no valid CSRF token).", 403
        )
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


def install(app: FastAPI) -> None:
    """The web UI, its static files, and the API docs from packaged assets (no CDN)."""
    app.include_router(docs.router)
    app.include_router(router)
    app.mount("/static", StaticFiles(packages=[("ramplight.server", "static")]), name="static")
    app.mount(docs.ASSETS_URL, StaticFiles(directory=str(docs.ASSETS)), name="docs-static")
