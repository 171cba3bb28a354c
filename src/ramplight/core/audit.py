"""The release-state audit log: flag changes and decisions, each linked in a SHA-256 hash chain."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

import msgspec

ChangeAction = Literal[
    "create",
    "update",
    "ramp",
    "kill",
    "restore",
    "promote",
    "archive",
    "expand",
    "rollback",
    "pause",
    "plan",
]
"""`plan` rows carry a measurement plan (before/after), not a flag document."""
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


@dataclass(frozen=True, slots=True)
class Decision:
    """A release decision with the evidence it was made on: the recommendation at that moment,
    the readout snapshot and the SQL that produced it (replayable on the same data)."""

    decision_id: str
    ts: datetime
    environment: str
    flag_key: str
    state: Literal["continue", "expand", "pause", "rollback", "promote", "cleanup"]
    actor: str
    forced: bool
    reason: str | None
    recommendation: Any
    evidence: Any
    sql: str | None
    fingerprint: str | None
    flag_version: int | None
    rollout_before: Any
    rollout_after: Any
    prev_hash: str = GENESIS_HASH
    hash: str = ""


def decision_hash(decision: Decision, prev_hash: str) -> str:
    """sha256(prev_hash || canonical JSON of every field but the hashes)."""
    body = _canonical.encode(
        {
            "decision_id": decision.decision_id,
            "ts": decision.ts.astimezone(UTC).isoformat(),
            "environment": decision.environment,
            "flag_key": decision.flag_key,
            "state": decision.state,
            "actor": decision.actor,
            "forced": decision.forced,
            "reason": decision.reason,
            "recommendation": decision.recommendation,
            "evidence": decision.evidence,
            "sql": decision.sql,
            "fingerprint": decision.fingerprint,
            "flag_version": decision.flag_version,
            "rollout_before": decision.rollout_before,
            "rollout_after": decision.rollout_after,
        }
    )
    return hashlib.sha256(prev_hash.encode() + body).hexdigest()
