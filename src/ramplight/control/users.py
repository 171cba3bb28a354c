"""People and their web sessions: users with a role and an argon2id password hash, sign-in by
password or by an admin API key, and sessions kept only as the SHA-256 of their token."""

from __future__ import annotations

import re
import secrets
import uuid
from dataclasses import dataclass, replace
from datetime import timedelta
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from ramplight.control.common import Clock, utcnow
from ramplight.core.errors import AuthError, ConflictError, NotFoundError, ValidationError
from ramplight.core.keys import hash_key
from ramplight.store.base import ROLES, ApiKey, Role, Session, User
from ramplight.store.base import ControlStore as Store

_hasher = PasswordHasher()
"""argon2id with the library's defaults (RFC 9106's low-memory profile: 64 MiB, 3 passes)."""
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,99}$")
MIN_PASSWORD = 10
SESSION_TTL = timedelta(hours=12)
_DUMMY_HASH = (
    "$argon2id$v=19$m=65536,t=3,p=4$bmQvw3q/4GkNmyY0D8mHWA$5LX6laskkyy0PEK53BRPRQvlhXoBCmiqaVnfbQVgveU"
)
"""What an unknown name's password is checked against, so that it costs what a real check costs
(timing does not tell which names exist). A constant made with the hasher's parameters
(`tests/store/test_control_store.py` checks they still match): hashing one at import took 0.2 s
and 64 MiB in every process that imports this module."""


def create_user(store: Store, name: str, role: str, password: str, clock: Clock = utcnow) -> User:
    """Create a user; the password is hashed here and never stored or logged."""
    if not _NAME.match(name):
        raise ValidationError.at(
            "name", "letters, digits and _ . @ - (1–100 characters, a letter or digit first)"
        )
    if role not in ROLES:
        raise ValidationError.at("role", f"one of {', '.join(ROLES)}")
    if not MIN_PASSWORD <= len(password) <= 1000:
        raise ValidationError.at("password", f"at least {MIN_PASSWORD} characters")
    user = User(
        id=uuid.uuid4().hex[:12],
        name=name,
        role=role,  # checked against ROLES above
        password_hash=_hasher.hash(password),
        created_at=clock(),
    )
    store.create_user(user)
    return user


def change_user(
    store: Store,
    user_id: str,
    *,
    role: str | None = None,
    disabled: bool | None = None,
    by_id: str | None = None,
    clock: Clock = utcnow,
) -> User:
    """Change a user's role, or disable (True) or re-enable (False) them. Disabling ends their
    sessions at once. `by_id`, the admin making the change, may not demote or disable
    themselves (nobody locks themselves out by a slip)."""
    user = store.get_user(user_id)
    if user is None:
        raise NotFoundError(f"no user {user_id!r}")
    if role is not None and role not in ROLES:
        raise ValidationError.at("role", f"one of {', '.join(ROLES)}")
    if by_id == user.id and (disabled or (role is not None and role != user.role)):
        raise ConflictError("you may not change your own role or disable yourself: ask another admin")
    changed = replace(
        user,
        role=role if role is not None else user.role,  # checked against ROLES above
        disabled_at=user.disabled_at
        if disabled is None
        else (user.disabled_at or clock())
        if disabled
        else None,
    )
    if changed != user:
        store.update_user(changed, previous=user)
    return changed


def check_password(store: Store, name: str, password: str) -> User:
    """The user whose name and password these are; one AuthError for every failure (an unknown
    name costs a hash too, so timing does not tell which names exist)."""
    user = store.find_user(name)
    try:
        _hasher.verify(user.password_hash if user else _DUMMY_HASH, password)
    except (VerificationError, InvalidHashError):
        user = None
    if user is None or user.disabled_at is not None:
        raise AuthError("unknown user or wrong password")
    return user


@dataclass(frozen=True, slots=True)
class Principal:
    """Who a session acts as: a user, or an admin API key (which acts as an admin)."""

    id: str
    name: str
    role: Role
    actor: str
    """How the audit log names them (never a secret)."""
    can_force: bool

    def may(self, role: Role) -> bool:
        """Whether this principal's role is `role` or above it."""
        return ROLES.index(self.role) >= ROLES.index(role)


def key_actor(key: ApiKey) -> str:
    """How a key is named in the audit log: its prefix and name, never the key."""
    return f"key:{key.prefix}… ({key.name})"


def _principal(store: Store, session: Session) -> Principal | None:
    if session.user_id is not None:
        user = store.get_user(session.user_id)
        if user is None or user.disabled_at is not None:
            return None
        return Principal(user.id, user.name, user.role, f"user:{user.name}", user.role == "admin")
    key = next((k for k in store.list_api_keys() if k.id == session.key_id), None)
    if key is None or key.revoked_at is not None or key.kind != "admin":
        return None
    return Principal(key.id, f"admin key {key.prefix}…", "admin", key_actor(key), key.can_force)


def start_session(
    store: Store, user: User | None = None, key: ApiKey | None = None, clock: Clock = utcnow
) -> str:
    """A new session for a user or an admin key; returns its token (the cookie's value), which
    is stored only as its hash."""
    if (user is None) == (key is None):
        raise ValueError("a session belongs to a user or to a key")
    if key is not None and (key.kind != "admin" or key.revoked_at is not None):
        raise AuthError("sign in with an admin key (SDK keys read config and send evidence)")
    token = secrets.token_urlsafe(32)
    now = clock()
    store.create_session(
        Session(
            token_hash=hash_key(token),
            user_id=user.id if user else None,
            key_id=key.id if key else None,
            created_at=now,
            expires_at=now + SESSION_TTL,
        )
    )
    return token


def session_principal(store: Store, token: str | None, clock: Clock = utcnow) -> Principal | None:
    """Who the session with this token acts as; None when there is none, it expired, or its
    user was disabled or its key revoked."""
    if not token:
        return None
    session = store.find_session(hash_key(token))
    if session is None or session.expires_at <= clock():
        return None
    return _principal(store, session)


def end_session(store: Store, token: str | None) -> None:
    if token:
        store.delete_session(hash_key(token))


def user_json(user: User) -> dict[str, Any]:
    """A user as the API and the CLI show them: never the password hash."""
    return {
        "id": user.id,
        "name": user.name,
        "role": user.role,
        "created_at": user.created_at.isoformat(),
        "disabled_at": user.disabled_at.isoformat() if user.disabled_at else None,
        "last_sign_in_at": user.last_sign_in_at.isoformat() if user.last_sign_in_at else None,
    }
