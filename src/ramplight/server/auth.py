"""Authentication of API requests: a bearer key, looked up by its hash, and the dependencies that
attach it to each audience's router.

Every route group declares its guard once, on its router (`routes/…`), so a route added to a
group cannot forget it: admin routes need an admin key; SDK and ingestion routes take an SDK key
(bound to its environment) or an admin key naming the environment. `tests/server/test_route_auth.py`
walks the route table and checks each route refuses a missing, unknown or wrong-scope key.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Header, Query, Request
from starlette.concurrency import run_in_threadpool

from ramplight.core.errors import AuthError, ForbiddenError, NotFoundError, ValidationError
from ramplight.core.keys import hash_key
from ramplight.server.state import ServerState
from ramplight.store.base import ApiKey, ControlStore


def authenticate(store: ControlStore, plaintext: str | None) -> ApiKey:
    if not plaintext:
        raise AuthError("missing API key: send 'Authorization: Bearer <key>'")
    key = store.find_api_key(hash_key(plaintext))
    if key is None or key.revoked_at is not None:
        raise AuthError("unknown or revoked API key")
    return key


def _state(request: Request) -> ServerState:
    value: ServerState = request.app.state.ramplight
    return value


State = Annotated[ServerState, Depends(_state)]
Authorization = Annotated[str | None, Header(description="Bearer <API key>")]


def bearer(header: str | None) -> str | None:
    if header and header.lower().startswith("bearer "):
        return header[7:].strip()
    return None


def admin_key(st: State, authorization: Authorization = None) -> ApiKey:
    """The guard of `/api/…`: an admin key."""
    key = st.authenticate(bearer(authorization))
    if key.kind != "admin":
        raise ForbiddenError("this endpoint needs an admin key; SDK keys read config and send evidence")
    return key


Admin = Annotated[ApiKey, Depends(admin_key)]


def actor(key: ApiKey) -> str:
    """How a key is named in the audit log: its prefix and name, never the key."""
    return f"key:{key.prefix}… ({key.name})"


def environment_of(key: ApiKey, environment: str | None) -> str:
    """The environment a request acts on: an SDK key's own (naming another is 403); an admin key
    must name one."""
    if key.kind == "sdk":
        assert key.environment is not None
        if environment is not None and environment != key.environment:
            raise ForbiddenError(f"this SDK key belongs to {key.environment!r}, not {environment!r}")
        return key.environment
    if environment is None:
        raise ValidationError.at("environment", "admin keys must name the environment (?environment=)")
    return environment


@dataclass(frozen=True, slots=True)
class Scope:
    """Who is calling an SDK or ingestion route, and for which environment."""

    key: ApiKey
    environment: str


async def environment_scope(
    request: Request,
    authorization: Authorization = None,
    environment: Annotated[
        str | None, Query(max_length=100, description="needed with an admin key; an SDK key implies it")
    ] = None,
) -> Scope:
    """The guard of `/sdk/…` and `/ingest/…` (async: keys are cached, the hot path stays on the
    event loop)."""
    st: ServerState = request.app.state.ramplight
    key = st.authenticate(bearer(authorization))
    scope = Scope(key, environment_of(key, environment))
    if key.kind == "admin":  # an SDK key's environment exists; an admin key's may be a typo
        known = st.known_environments()
        if known is None or scope.environment not in known:  # a miss reads the store, off the loop
            known = await run_in_threadpool(st.environments)
        if scope.environment not in known:
            raise NotFoundError(
                f"no environment {scope.environment!r}; the environments are {', '.join(sorted(known))}"
                " (evidence and config belong to an existing one: create it first)"
            )
    return scope


InEnvironment = Annotated[Scope, Depends(environment_scope)]
