"""The web UI's editors: a new flag, a ramp, an environment's targeting and rollout, and the
measurement plan — with optimistic concurrency.

Roles: an editor creates flags and ramps them (the ramp runs the plan's checks); rewriting an
environment's targeting and rollout or its plan is for admins, as the admin API's PUTs are,
because those writes are not checked against the plan (approvals, stages, the forcing rule).

Every edit form carries the version it was read at and the text it started from. When someone
else changed the flag (or plan) meanwhile, the store refuses the write (409) and the page shows
the edit again, untouched, beside the other person's change: who, when, why, and a diff from the
text this form started from to what is stored now. Nothing is merged silently.

The functions called are the API's and the CLI's (`control.create_flag`, `control.update_flag`,
`release.ramp_flag`, `release.save_plan`), so validation, the plan's refusals, forcing and the
audit trail are the same. An editor (or above) may edit; the server checks it here.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Annotated, Any
from urllib.parse import quote, urlencode

import msgspec
from fastapi import APIRouter, Form, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response

from ramplight import control, release
from ramplight.control.users import Principal
from ramplight.core.errors import (
    ConflictError,
    NotFoundError,
    RamplightError,
    ValidationError,
)
from ramplight.server import editing
from ramplight.server.editing import Editor, Stale, editor
from ramplight.server.routes import ui
from ramplight.server.sessions import SESSION_COOKIE, csrf_ok, principal, state
from ramplight.store.base import Role

router = APIRouter(include_in_schema=False)

FLAG_TYPES = ("boolean", "string", "number", "json")
NOT_FROM_PAGE = "This form was not sent from a Ramplight page (no valid CSRF token)."


# -- routes ---------------------------------------------------------------------------------


def _guard(request: Request, csrf: str, role: Role = "editor") -> tuple[Principal | None, Response | None]:
    """The signed-in user with `role` or above, or the answer to send instead (sign in, CSRF
    refusal, role refusal)."""
    me = principal(request)
    if me is None:
        return None, ui._to_login(request)
    if not csrf_ok(request.cookies.get(SESSION_COOKIE), csrf):
        return me, ui._refused(request, me, NOT_FROM_PAGE, 403)
    if not me.may(role):
        message = (
            f"your role ({me.role}) may look but not edit: editing needs editor or above"
            if not me.may("editor")
            else f"your role ({me.role}) may ramp and act but not rewrite the targeting, rollout or plan: "
            "that needs an admin (as PUT /api/flags and the plans API need an admin key), since it changes "
            "what the plan's checks, approvals and forcing rule would otherwise refuse"
        )
        return me, ui._refused(request, me, message, 403)
    return me, None


def _version(text: str) -> int:
    """The version a form was read at (0: none yet)."""
    try:
        value = int(text.strip() or "0")
    except ValueError:
        raise ValidationError.at(
            "version", f"is {text!r}; the integer version the form was read at"
        ) from None
    if value < 0:
        raise ValidationError.at("version", f"is {value}; versions start at 1 (0: no plan yet)")
    return value


def _back(flag_key: str, environment: str, done: str) -> RedirectResponse:
    query = urlencode({"environment": environment, "done": done})
    return RedirectResponse(f"/flags/{quote(flag_key)}?{query}#edit", status_code=303)


@router.get("/new-flag")
def new_flag_form(request: Request) -> Response:
    me = principal(request)
    if me is None:
        return ui._to_login(request)
    return _new_flag_page(request, me, {}, None, 200)


def _new_flag_page(
    request: Request, me: Principal, form: dict[str, Any], error: str | None, status_code: int
) -> Response:
    environments = [e.key for e in state(request).store.list_environments()]
    defaults = {
        "key": "",
        "type": "boolean",
        "unit": "user_id",
        "description": "",
        "variations": "off: false\non: true\n",
        "environments": environments,
    }
    context = {
        "form": {**defaults, **form},
        "types": FLAG_TYPES,
        "all_environments": environments,
        "may_act": me.may("editor"),
        "error": error,
    }
    return ui._page(request, "new_flag.html", context, me, status_code)


@router.post("/new-flag")
def create_flag(
    request: Request,
    csrf: Annotated[str, Form()] = "",
    key: Annotated[str, Form(max_length=200)] = "",
    type: Annotated[str, Form(max_length=20)] = "boolean",
    unit: Annotated[str, Form(max_length=200)] = "user_id",
    description: Annotated[str, Form(max_length=5000)] = "",
    variations: Annotated[str, Form(max_length=100_000)] = "",
    environments: Annotated[list[str] | None, Form()] = None,
) -> Response:
    """Create a flag: its variations as `key: value` lines (YAML values), every chosen
    environment serving the first variation to everyone (ramp it from its page)."""
    me, refused = _guard(request, csrf)
    if refused is not None or me is None:
        return refused or ui._to_login(request)
    chosen = environments or []
    form = {
        "key": key,
        "type": type,
        "unit": unit,
        "description": description,
        "variations": variations,
        "environments": chosen,
    }
    st = state(request)
    try:
        parsed = editing.parse_variations(variations)
        first = parsed[0]["key"]
        doc = {
            "key": key.strip(),
            "type": type,
            "assignment_unit": unit.strip(),
            "description": description.strip(),
            "variations": parsed,
            "environments": {
                env: {
                    "default_variation": first,
                    "off_variation": first,
                    "rollout": {"weights": {first: 100}},
                }
                for env in chosen
            },
        }
        flag = control.create_flag(st.store, doc, me.actor)
    except RamplightError as exc:
        return _new_flag_page(request, me, form, ui._message(exc), exc.status_code)
    st.invalidate()
    environment = chosen[0] if chosen else ""
    return _back(flag.key, environment, "created")


def _edit_page(
    request: Request, me: Principal, flag_key: str, environment: str, edit: Editor, status_code: int
) -> Response:
    return ui._flag_page(request, me, flag_key, environment, status_code=status_code, edit=edit)


@router.post("/flags/{flag_key}/ramp")
def ramp(
    request: Request,
    flag_key: str,
    csrf: Annotated[str, Form()] = "",
    environment: Annotated[str, Form(max_length=100)] = "",
    variation: Annotated[str, Form(max_length=200)] = "",
    percent: Annotated[str, Form(max_length=20)] = "",
    version_text: Annotated[str, Form(alias="version", max_length=20)] = "0",
    reason: Annotated[str, Form(max_length=1000)] = "",
    force: Annotated[bool, Form()] = False,
) -> Response:
    """Set one variation's share (the others give way in proportion), as `POST /api/flags/{key}/ramp`."""
    me, refused = _guard(request, csrf)
    if refused is not None or me is None:
        return refused or ui._to_login(request)
    st = state(request)
    version = 0
    try:
        version = _version(version_text)
        try:
            share = float(percent)
        except ValueError:
            raise ValidationError.at("percent", f"is {percent!r}; a number from 0 to 100") from None
        st.catch_up()
        release.ramp_flag(
            st.store, flag_key, environment, variation, share, me.actor,
            reason=reason.strip() or None, expected_version=version or None,
            force=force, can_force=me.can_force,
        )  # fmt: skip
    except NotFoundError as exc:
        return ui._refused(request, me, exc.message, 404)
    except RamplightError as exc:
        flag = st.store.get_flag(flag_key)
        if flag is None:
            return ui._refused(request, me, f"There is no flag {flag_key!r}.", 404)
        message = ui._message(exc)
        if isinstance(exc, ConflictError) and version and flag.version != version:
            who, when, why, _ = editing.last_change(st.store, flag_key, environment, plan=False)
            message = (
                f"the flag moved from version {version} to {flag.version} since this page was read "
                f"(last change by {who}{f' at {ui._when(when)}' if when else ''}"
                f"{f': {why}' if why else ''}); the ramp below shows the current weights"
            )
        edit = replace(editor(st.store, flag, environment), error_ramp=message)
        return _edit_page(request, me, flag_key, environment, edit, exc.status_code)
    st.invalidate()
    return _back(flag_key, environment, "ramped")


@router.post("/flags/{flag_key}/edit")
def edit(
    request: Request,
    flag_key: str,
    csrf: Annotated[str, Form()] = "",
    what: Annotated[str, Form(max_length=20)] = "",
    environment: Annotated[str, Form(max_length=100)] = "",
    text: Annotated[str, Form(max_length=1_000_000)] = "",
    base: Annotated[str, Form(max_length=1_000_000)] = "",
    version_text: Annotated[str, Form(alias="version", max_length=20)] = "0",
    reason: Annotated[str, Form(max_length=1000)] = "",
) -> Response:
    """Save the environment's targeting and rollout (`what=config`) or its plan (`what=plan`):
    admins only. These write the flag or the plan directly, past the plan's ramp checks, its
    approvals and the forcing rule, exactly as the admin API does; an editor ramps with Ramp."""
    me, refused = _guard(request, csrf, "admin")
    if refused is not None or me is None:
        return refused or ui._to_login(request)
    if what not in ("config", "plan"):
        return ui._refused(request, me, "what: must be config or plan", 422)
    st = state(request)
    flag = st.store.get_flag(flag_key)
    if flag is None:
        return ui._refused(request, me, f"There is no flag {flag_key!r}.", 404)
    if environment not in flag.environments and what == "config":
        return ui._refused(request, me, f"Flag {flag_key!r} is not configured in {environment!r}.", 404)
    why = reason.strip() or None
    version = 0
    try:
        version = _version(version_text)
        doc = editing.parse_yaml(text, what)
        if what == "config":
            current = msgspec.to_builtins(flag)
            current["environments"][environment] = doc
            current.pop("version", None)
            control.update_flag(st.store, flag_key, current, version, me.actor, why)
        else:
            release.save_plan(
                st.store,
                {**doc, "flag_key": flag_key, "environment": environment, "version": 0},
                version or None,
                me.actor,
                why,
            )
    except RamplightError as exc:
        flag = st.store.get_flag(flag_key) or flag
        fresh = editor(st.store, flag, environment)
        message = ui._message(exc)
        stale: Stale | None = None
        if isinstance(exc, ConflictError):
            now = fresh.config if what == "config" else fresh.plan
            now_version = fresh.flag_version if what == "config" else fresh.plan_version
            who, when, changed_why, _ = editing.last_change(
                st.store, flag_key, environment, plan=what == "plan"
            )
            label = "targeting and rollout" if what == "config" else "plan"
            stale = Stale(who, when, changed_why, now_version, editing.diff(base, now, label))
            message = (
                f"the {label} changed since this form was read (version {version} → {now_version}); "
                "your text is kept below: compare it with their change, then save again"
            )
        # The person's text stays in the editor. After a collision the form holds the stored
        # version (and text as its base): the diff above was shown, so saving again is deliberate.
        # After any other refusal it keeps the version it was read at.
        if what == "config":
            kept = replace(fresh, config=text, stale_config=stale, error_config=message)
            if stale is None:
                kept = replace(kept, config_base=base, flag_version=version)
        else:
            kept = replace(fresh, plan=text, stale_plan=stale, error_plan=message)
            if stale is None:
                kept = replace(kept, plan_base=base, plan_version=version)
        return _edit_page(request, me, flag_key, environment, kept, exc.status_code)
    st.invalidate()
    return _back(flag_key, environment, "saved_config" if what == "config" else "saved_plan")


@router.get("/flags/{flag_key}/stamp")
def stamp(request: Request, flag_key: str, environment: str = "") -> Response:
    """What the flag page was drawn from: `release` (the flag's and plan's versions and the
    decisions) and `evidence` (segments loaded). The page's script polls this and reloads when
    the release changed, or the evidence did and the page is older than 30 s (docs/ui.md)."""
    me = principal(request)
    if me is None:
        return JSONResponse({"error": "unauthorized", "message": "sign in"}, status_code=401)
    st = state(request)
    flag = st.store.get_flag(flag_key)
    if flag is None:
        return JSONResponse({"error": "not_found", "message": f"no flag {flag_key!r}"}, status_code=404)
    response = JSONResponse(editing.page_stamp(st.store, flag, environment))
    response.headers.update(ui.SECURITY_HEADERS)
    return response
