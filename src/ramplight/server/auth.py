"""Authentication of API requests: a bearer key, looked up by its hash."""

from __future__ import annotations

from ramplight.core.errors import AuthError
from ramplight.core.keys import hash_key
from ramplight.store.base import ApiKey, ControlStore


def authenticate(store: ControlStore, plaintext: str | None) -> ApiKey:
    if not plaintext:
        raise AuthError("missing API key: send 'Authorization: Bearer <key>'")
    key = store.find_api_key(hash_key(plaintext))
    if key is None or key.revoked_at is not None:
        raise AuthError("unknown or revoked API key")
    return key
