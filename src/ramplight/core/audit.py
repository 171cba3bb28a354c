"""The release-state audit log: flag changes linked in a SHA-256 hash chain."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

import msgspec

ChangeAction = Literal["create", "update", "ramp", "kill", "restore", "promote", "archive"]
GENESIS_HASH = "0" * 64


@dataclass(frozen=True, slots=True)
class FlagChange:
    """One change of release state: who did what to which flag, with before/after documents."""

    change_id: str
    ts: datetime
    environment: str | None
    flag_key: str
    version: int
    actor: str
    action: ChangeAction
    before: Any
    after: Any
    reason: str | None
    prev_hash: str = GENESIS_HASH
    hash: str = ""


_canonical = msgspec.json.Encoder(order="sorted")


def change_hash(change: FlagChange, prev_hash: str) -> str:
    """sha256(prev_hash || canonical JSON of every field but the hashes)."""
    body = _canonical.encode(
        {
            "change_id": change.change_id,
            "ts": change.ts.astimezone(UTC).isoformat(),
            "environment": change.environment,
            "flag_key": change.flag_key,
            "version": change.version,
            "actor": change.actor,
            "action": change.action,
            "before": change.before,
            "after": change.after,
            "reason": change.reason,
        }
    )
    return hashlib.sha256(prev_hash.encode() + body).hexdigest()


def broken_links(changes: Iterable[FlagChange]) -> list[str]:
    """Change ids whose hash or link does not verify, in log order (empty: chain intact)."""
    bad: list[str] = []
    prev = GENESIS_HASH
    for change in changes:
        if change.prev_hash != prev or change_hash(change, prev) != change.hash:
            bad.append(change.change_id)
        prev = change.hash
    return bad
