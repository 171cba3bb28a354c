"""The release-state audit log: flag changes and decisions, each linked in a SHA-256 hash chain.

Each row also carries an HMAC-SHA256 (`mac`) under a server secret, and the latest row of each
chain is kept outside the database as an HMACed head, so that re-hashing the chain after an
edit and deleting the newest rows are detected too (docs/operations.md, "Audit log").
Flag-change rows carry a second link, `flag_prev_hash`, so one flag's rows verify on their own.
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
from collections.abc import Callable, Iterable, Sequence
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
    seq: int = 0
    flag_prev_hash: str = GENESIS_HASH
    """The hash of the previous row of the same flag (GENESIS_HASH for its first row)."""
    hash_version: int = 2
    """1: written before MACs (sealed at upgrade; the hash does not cover `flag_prev_hash`)."""
    mac: str | None = None


_canonical = msgspec.json.Encoder(order="sorted")


def change_hash(change: FlagChange, prev_hash: str) -> str:
    """sha256(prev_hash || canonical JSON of every field but the hashes, seq and mac); version 2
    rows also cover `flag_prev_hash`."""
    fields: dict[str, Any] = {} if change.hash_version == 1 else {"flag_prev_hash": change.flag_prev_hash}
    body = _canonical.encode(
        {
            **fields,
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
    seq: int = 0
    hash_version: int = 2
    """1: written before MACs (sealed at upgrade). The hash itself is the same in both."""
    mac: str | None = None


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


# -- keyed seals and verification -------------------------------------------------------------

Chain = Literal["flag_changes", "decisions"]

BreakKind = Literal[
    "edited",
    "deleted",
    "reordered",
    "inserted",
    "rehashed",
    "unsealed",
    "truncated",
    "head_missing",
    "head_invalid",
]
"""edited: a row's content no longer matches its hash. deleted: rows before this one are gone.
reordered: this row is out of place. inserted: rows Ramplight did not write sit before this one.
rehashed: content and links agree but the MAC does not (edited, then hashes recomputed).
unsealed: a row without a MAC. truncated: the newest rows are gone (the head says the chain
goes further). head_missing / head_invalid: the head kept outside the database is gone or forged."""


@dataclass(frozen=True, slots=True)
class AuditHead:
    """A chain's latest row (seq and hash) after a write, HMACed; appended to a head log kept
    outside the database. `start` opens the log (a new database, or the upgrade that sealed
    the rows written before MACs); a log that does not open with it was restarted."""

    chain: Chain
    seq: int
    hash: str
    event: Literal["start", "write"]
    mac: str


@dataclass(frozen=True, slots=True)
class ChainBreak:
    """The first row where a chain stops verifying, and how."""

    kind: BreakKind
    row_id: str | None
    """change_id or decision_id; None when the row is gone (truncated) or the head is at fault."""
    seq: int | None
    detail: str


@dataclass(frozen=True, slots=True)
class ChainReport:
    chain: str
    ok: bool
    rows: int
    keyed: bool
    """MACs were checked (the verifier had the secret)."""
    legacy_rows: int
    """Rows written before MACs existed, sealed when the database was upgraded."""
    head_seq: int | None
    head_hash: str | None
    first_break: ChainBreak | None = None


def _mac(key: bytes, fields: dict[str, Any]) -> str:
    return hmac.new(key, _canonical.encode(fields), hashlib.sha256).hexdigest()


def change_mac(key: bytes, change: FlagChange) -> str:
    """HMAC-SHA256 over the row's place (seq, links) and its hash, which covers its content."""
    return _mac(
        key,
        {
            "chain": "flag_changes",
            "seq": change.seq,
            "hash_version": change.hash_version,
            "prev_hash": change.prev_hash,
            "flag_prev_hash": change.flag_prev_hash,
            "hash": change.hash,
        },
    )


def decision_mac(key: bytes, decision: Decision) -> str:
    return _mac(
        key,
        {
            "chain": "decisions",
            "seq": decision.seq,
            "hash_version": decision.hash_version,
            "prev_hash": decision.prev_hash,
            "hash": decision.hash,
        },
    )


def make_head(
    key: bytes, chain: Chain, seq: int, hash: str, event: Literal["start", "write"] = "write"
) -> AuditHead:
    fields = {"chain": chain, "head_seq": seq, "hash": hash, "event": event}
    return AuditHead(chain, seq, hash, event, _mac(key, fields))


def head_verifies(key: bytes, head: AuditHead) -> bool:
    expected = make_head(key, head.chain, head.seq, head.hash, head.event).mac
    return hmac.compare_digest(expected, head.mac)


@dataclass(frozen=True, slots=True)
class _Link:
    """What the walk needs of one row: its place, its links, its hash recomputed, its MAC."""

    row_id: str
    seq: int
    link: str
    hash: str
    computed: str
    mac: str | None
    expected_mac: str | None
    legacy: bool


def _walk(chain: str, links: Sequence[_Link], keyed: bool, contiguous: bool) -> ChainReport:
    by_hash = {link.hash: i for i, link in enumerate(links)}
    by_link = {link.link: i for i, link in enumerate(links)}
    legacy = sum(link.legacy for link in links)
    prev, prev_seq = GENESIS_HASH, 0

    def report(found: ChainBreak | None) -> ChainReport:
        last = links[-1] if links else None
        return ChainReport(
            chain,
            found is None,
            len(links),
            keyed,
            legacy,
            last.seq if last else None,
            last.hash if last else None,
            found,
        )

    def after(i: int) -> str:
        return f"after {links[i - 1].row_id} (seq {links[i - 1].seq})" if i else "at the start"

    for i, row in enumerate(links):
        if row.computed != row.hash:
            return report(ChainBreak("edited", row.row_id, row.seq, "its content no longer matches its hash"))
        if row.link != prev:
            at = by_hash.get(row.link)
            if at is not None and at > i:
                detail = f"it links to {links[at].row_id} (seq {links[at].seq}), which comes after it"
                return report(ChainBreak("reordered", row.row_id, row.seq, detail))
            if at is not None and at < i - 1:
                first = links[at + 1]
                detail = f"{i - at - 1} row(s) that the chain does not link sit {after(at + 1)}"
                return report(ChainBreak("inserted", first.row_id, first.seq, detail))
            if row.link == GENESIS_HASH:
                detail = f"it claims to be the first row, but stands {after(i)}"
                return report(ChainBreak("reordered", row.row_id, row.seq, detail))
            if by_link.get(prev, -1) > i:
                detail = f"the row that should stand here, {after(i)}, comes later"
                return report(ChainBreak("reordered", row.row_id, row.seq, detail))
            missing = range(prev_seq + 1, row.seq) if contiguous else range(0)
            gap = (
                ""
                if not missing
                else f" (seq {missing[0]}" + (f"–{missing[-1]})" if len(missing) > 1 else ")")
            )
            detail = f"the row it links to{gap} is gone: deleted {after(i)}"
            return report(ChainBreak("deleted", row.row_id, row.seq, detail))
        if (contiguous and row.seq != prev_seq + 1) or row.seq <= prev_seq:
            kind: BreakKind = "deleted" if row.seq > prev_seq else "reordered"
            detail = f"seq jumps from {prev_seq} to {row.seq}: rows deleted and the chain relinked"
            if kind == "reordered":
                detail = f"seq {row.seq} stands after seq {prev_seq}"
            return report(ChainBreak(kind, row.row_id, row.seq, detail))
        if keyed and row.mac is None:
            detail = "it has no MAC: it was not written by Ramplight"
            return report(ChainBreak("unsealed", row.row_id, row.seq, detail))
        if row.expected_mac is not None and not hmac.compare_digest(row.expected_mac, row.mac or ""):
            detail = "its hashes agree but its MAC does not: it was changed and the chain re-hashed"
            return report(ChainBreak("rehashed", row.row_id, row.seq, detail))
        prev, prev_seq = row.hash, row.seq
    return report(None)


def _check_heads(
    report: ChainReport, links: Sequence[_Link], key: bytes | None, heads: Sequence[AuditHead] | None
) -> ChainReport:
    """Compare the chain with every head logged outside the database: each must still be in the
    chain, unchanged, and none may lie beyond its end. `heads` None: no head log to compare."""
    if report.first_break is not None or heads is None:
        return report
    by_seq = {link.seq: link for link in links}
    last = links[-1].seq if links else 0
    found: ChainBreak | None = None
    if not heads:
        if links:
            found = ChainBreak(
                "head_missing", None, None, "the head log kept outside the database is missing"
            )
    elif key is not None and not all(head_verifies(key, h) for h in heads):
        bad = next(h for h in heads if not head_verifies(key, h))
        found = ChainBreak(
            "head_invalid", None, bad.seq, f"a head at seq {bad.seq} does not verify: it was forged"
        )
    elif heads[0].event != "start":
        found = ChainBreak(
            "head_missing", None, heads[0].seq, "the head log was restarted: its start is missing"
        )
    elif max(h.seq for h in heads) > last:
        end = max(h.seq for h in heads)
        detail = f"the newest rows are gone: the head log says the chain reached seq {end}, the database ends at seq {last}"
        found = ChainBreak("truncated", None, last + 1, detail)
    else:
        for h in heads:
            row = by_seq.get(h.seq)
            if h.seq and (row is None or row.hash != h.hash):
                detail = f"the row at seq {h.seq} is not the one the head log recorded"
                found = ChainBreak("rehashed", row.row_id if row else None, h.seq, detail)
                break
    return report if found is None else dataclasses.replace(report, ok=False, first_break=found)


def _change_link(key: bytes | None, link: Callable[[FlagChange], str]) -> Callable[[FlagChange], _Link]:
    def make(c: FlagChange) -> _Link:
        expected = change_mac(key, c) if key is not None and c.mac is not None else None
        computed = change_hash(c, c.prev_hash)
        return _Link(c.change_id, c.seq, link(c), c.hash, computed, c.mac, expected, c.hash_version == 1)

    return make


def verify_changes(
    changes: Iterable[FlagChange],
    key: bytes | None = None,
    heads: Sequence[AuditHead] | None = None,
) -> ChainReport:
    """Walk all flag-change rows in seq order; name the first edited, deleted or reordered row.

    With `key`, every row's MAC is checked (catching a re-hashed chain); with `heads` (the head
    log kept outside the database), deleted newest rows are caught too.
    """
    links = [_change_link(key, lambda c: c.prev_hash)(c) for c in changes]
    return _check_heads(_walk("flag_changes", links, key is not None, True), links, key, heads)


def verify_flag_history(
    changes: Iterable[FlagChange], key: bytes | None = None, anchor: tuple[int, str] | None = None
) -> ChainReport:
    """Verify one flag's rows on their own (as `GET /api/flags/{key}/changes` returns them),
    following `flag_prev_hash`. `anchor` (seq, hash) is a row seen earlier that must still be
    there, unchanged: it catches the newest rows deleted since."""
    rows = list(changes)
    chain = f"flag:{rows[0].flag_key}" if rows else "flag"
    links = [_change_link(key, lambda c: c.flag_prev_hash)(c) for c in rows]
    report = _walk(chain, links, key is not None, False)
    if report.first_break is None and anchor is not None:
        seq, digest = anchor
        kept = {link.seq: link for link in links}.get(seq)
        if kept is None or kept.hash != digest:
            kind: BreakKind = "truncated" if kept is None else "rehashed"
            state = "gone" if kept is None else "changed"
            detail = f"the row seen earlier at seq {seq} ({digest[:12]}…) is {state}"
            found = ChainBreak(kind, kept.row_id if kept else None, seq, detail)
            return dataclasses.replace(report, ok=False, first_break=found)
    return report


def verify_decisions(
    decisions: Iterable[Decision],
    key: bytes | None = None,
    heads: Sequence[AuditHead] | None = None,
) -> ChainReport:
    """Walk all decision rows in seq order; see `verify_changes`."""
    links = [
        _Link(
            d.decision_id,
            d.seq,
            d.prev_hash,
            d.hash,
            decision_hash(d, d.prev_hash),
            d.mac,
            decision_mac(key, d) if key is not None and d.mac is not None else None,
            d.hash_version == 1,
        )
        for d in decisions
    ]
    return _check_heads(_walk("decisions", links, key is not None, True), links, key, heads)
