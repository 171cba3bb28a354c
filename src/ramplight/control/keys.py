"""API keys: created with their plaintext shown once, stored hashed, revoked by id."""

from __future__ import annotations

import secrets
import uuid
from typing import Literal

from ramplight.control.common import Clock, utcnow
from ramplight.control.environments import _require_environment
from ramplight.core.errors import NotFoundError, ValidationError
from ramplight.core.keys import hash_key
from ramplight.store.base import ApiKey
from ramplight.store.base import ControlStore as Store


def create_api_key(
    store: Store,
    kind: Literal["admin", "sdk"],
    name: str,
    environment: str | None = None,
    clock: Clock = utcnow,
    can_force: bool = False,
) -> tuple[str, ApiKey]:
    """Create a key; the plaintext is returned once and never stored. `can_force`: an admin key
    that may act against a measurement plan (recorded as forced)."""
    if can_force and kind != "admin":
        raise ValidationError.at("can_force", "only admin keys may force actions")
    if kind == "sdk":
        if environment is None:
            raise ValidationError.at("environment", "an SDK key belongs to one environment")
        _require_environment(store, environment)
    elif environment is not None:
        raise ValidationError.at("environment", "admin keys are not tied to an environment")
    plaintext = f"rl_{kind}_{secrets.token_urlsafe(20)}"
    key = ApiKey(
        id=uuid.uuid4().hex[:12],
        kind=kind,
        environment=environment,
        name=name,
        prefix=plaintext[: len(kind) + 8],
        key_hash=hash_key(plaintext),
        created_at=clock(),
        can_force=can_force,
    )
    store.create_api_key(key)
    return plaintext, key


def revoke_api_key(store: Store, key_id: str, clock: Clock = utcnow) -> None:
    """Revoke a key by id (revoking it again changes nothing); an unknown id is a NotFoundError."""
    if not any(k.id == key_id for k in store.list_api_keys()):
        raise NotFoundError(f"no API key {key_id!r}")
    store.revoke_api_key(key_id, clock())
