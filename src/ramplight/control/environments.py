"""Environments: created once, each flag configured per environment."""

from __future__ import annotations

from ramplight.control.common import Clock, utcnow
from ramplight.core.errors import NotFoundError, ValidationError
from ramplight.core.flags import KEY_PATTERN
from ramplight.store.base import ControlStore as Store
from ramplight.store.base import Environment


def create_environment(store: Store, key: str, name: str | None = None, clock: Clock = utcnow) -> Environment:
    if not KEY_PATTERN.match(key):
        raise ValidationError.at("key", "use 1-100 of a-z 0-9 _ . - starting alphanumeric")
    env = Environment(key=key, name=name or key, created_at=clock())
    store.create_environment(env)
    return env


def ensure_environment(store: Store, key: str, clock: Clock = utcnow) -> Environment:
    for env in store.list_environments():
        if env.key == key:
            return env
    return create_environment(store, key, clock=clock)


def ensure_default_environments(store: Store, clock: Clock = utcnow) -> None:
    """A new database starts with `production` and `staging`."""
    if not store.list_environments():
        create_environment(store, "production", "Production", clock)
        create_environment(store, "staging", "Staging", clock)


def _require_environment(store: Store, key: str) -> None:
    if key not in {e.key for e in store.list_environments()}:
        raise NotFoundError(f"no environment {key!r} (create it first: ramplight env create {key})")
