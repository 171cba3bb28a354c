"""The web UI's session cookie and CSRF tokens.

The cookie holds a random session token (HttpOnly, SameSite=Lax, Secure over https); the store
keeps only its hash. Every form carries a CSRF token derived from the session token with HMAC,
so a page on another site — which can make the browser send the cookie but cannot read it —
cannot produce one. The sign-in form, before any session exists, is protected the same way by a
short-lived random cookie of its own.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

from fastapi import Request
from fastapi.responses import Response

from ramplight.control import users
from ramplight.control.users import Principal
from ramplight.server.state import ServerState

SESSION_COOKIE = "ramplight_session"
LOGIN_COOKIE = "ramplight_signin"


def state(request: Request) -> ServerState:
    value: ServerState = request.app.state.ramplight
    return value


def csrf_for(secret: str) -> str:
    return hmac.new(secret.encode(), b"ramplight csrf", hashlib.sha256).hexdigest()


def csrf_ok(secret: str | None, sent: str | None) -> bool:
    return bool(secret) and bool(sent) and hmac.compare_digest(csrf_for(secret or ""), sent or "")


def principal(request: Request) -> Principal | None:
    """Who is signed in on this request (None: nobody, or the session ended)."""
    return users.session_principal(state(request).store, request.cookies.get(SESSION_COOKIE))


def _set(response: Response, request: Request, name: str, value: str, max_age: int) -> None:
    response.set_cookie(
        name,
        value,
        max_age=max_age,
        httponly=True,
        samesite="lax",
        secure=request.url.scheme == "https",
        path="/",
    )


def set_session(response: Response, request: Request, token: str) -> None:
    _set(response, request, SESSION_COOKIE, token, int(users.SESSION_TTL.total_seconds()))
    response.delete_cookie(LOGIN_COOKIE, path="/")


def clear_session(response: Response) -> None:
    response.delete_cookie(SESSION_COOKIE, path="/")


def new_login_nonce() -> str:
    return secrets.token_urlsafe(24)


def set_login_nonce(response: Response, request: Request, nonce: str) -> None:
    """The sign-in form's CSRF secret: the form carries `csrf_for(nonce)`."""
    _set(response, request, LOGIN_COOKIE, nonce, 3600)
