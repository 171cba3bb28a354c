"""Audit use cases: verify both chains with the server secret and the head log, and one flag's
history with a verification mark on each row (no HTTP, no SQL)."""

from __future__ import annotations

from typing import Any

import msgspec

from ramplight import control
from ramplight.core.audit import AuditHead, ChainReport, verify_changes, verify_decisions, verify_flag_history
from ramplight.store.base import Store


def _heads(store: Store, chain: str) -> list[AuditHead] | None:
    """The chain's heads; None where the store keeps no head log (a PostgreSQL control plane).
    Where it keeps one, a missing log counts as empty: with rows in the chain, a break."""
    if not getattr(store, "keeps_head_log", True):
        return None
    return [h for h in store.audit_heads() or [] if h.chain == chain]


def _report(report: ChainReport) -> dict[str, Any]:
    out: dict[str, Any] = msgspec.to_builtins(report)
    return out


def verify(store: Store) -> dict[str, Any]:
    """Both chains, each with its first broken row named; `ok` only when both verify."""
    key = store.audit_key
    changes = verify_changes(store.flag_changes(), key, _heads(store, "flag_changes"))
    decisions = verify_decisions(store.decisions(), key, _heads(store, "decisions"))
    return {
        "ok": changes.ok and decisions.ok,
        "flag_changes": _report(changes),
        "decisions": _report(decisions),
        "head_log": "kept"
        if getattr(store, "keeps_head_log", True)
        else "not kept: the control plane is shared by several processes (PostgreSQL); "
        "the chains and their MACs are verified, a truncated end is not detected",
    }


def head(store: Store) -> dict[str, Any]:
    """The latest head of each chain as logged outside the database: keep it to compare later."""
    latest: dict[str, Any] = {}
    for h in store.audit_heads() or []:
        latest[h.chain] = {"seq": h.seq, "hash": h.hash, "mac": h.mac}
    return latest


def flag_history(store: Store, flag_key: str) -> list[dict[str, Any]]:
    """A flag's change rows, each marked `verified`: its hash, its link to the flag's previous row
    and its MAC hold, and the whole chain does not break at or before it. The first row that does
    not verify carries `audit_break` (kind, detail)."""
    control.get_flag(store, flag_key)
    rows = store.flag_changes(flag_key)
    own = verify_flag_history(rows, store.audit_key).first_break
    # A break elsewhere in the chain may hide this flag's rows (a deleted row may have been one).
    whole = verify_changes(store.flag_changes(), store.audit_key).first_break
    seqs = [b.seq for b in (own, whole) if b is not None and b.seq is not None]
    first = min(seqs, default=None)
    found = own if own is not None and own.seq == first else whole
    out: list[dict[str, Any]] = []
    for row in rows:
        item: dict[str, Any] = msgspec.to_builtins(row)
        item["verified"] = first is None or row.seq < first
        # The break is told once, on the first row that does not verify.
        if (
            found is not None
            and first is not None
            and row.seq >= first
            and len(out) == sum(o["verified"] for o in out)
        ):
            item["audit_break"] = {
                "kind": found.kind,
                "seq": found.seq,
                "row_id": found.row_id,
                "detail": found.detail,
            }
        out.append(item)
    return out
