"""Tampering made directly in the DuckDB file is named by `ramplight.audit.verify`: the first
edited, deleted or reordered row of each chain, even after the chain is re-hashed."""

from __future__ import annotations

import dataclasses
import os
import stat
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import duckdb
import pytest

from ramplight import audit, control
from ramplight.core.audit import GENESIS_HASH, Decision, FlagChange, change_hash, decision_hash
from ramplight.core.errors import StoreError
from ramplight.store.duckdb import DuckDBStore
from ramplight.store.duckdb.store import migrations
from tests.core.builders import flag_doc, rollout
from tests.store.evidence import NOW

Clock = Callable[[], Any]


def decision(n: int) -> Decision:
    return Decision(
        decision_id=f"d{n}", ts=NOW + timedelta(minutes=n), environment="production",
        flag_key="checkout_copy", state="continue", actor="ana", forced=False, reason=f"look {n}",
        recommendation={"action": "continue"}, evidence={"units": n}, sql="SELECT 1",
        fingerprint=None, flag_version=1, rollout_before=None, rollout_after=None,
    )  # fmt: skip


@pytest.fixture
def history(db_path: Path, clock: Clock) -> Path:
    """Six flag changes over two flags and four decisions, written through the store, closed."""
    store = DuckDBStore(db_path)
    control.ensure_default_environments(store, clock)
    control.create_flag(store, flag_doc(rollout=rollout(control=95, candidate=5)), "ana", clock=clock)
    control.create_flag(store, flag_doc(key="model_route"), "ben", clock=clock)
    for percent in (10, 20):
        control.ramp(store, "checkout_copy", "production", "candidate", percent, "ana", clock=clock)
    control.ramp(store, "model_route", "production", "candidate", 10, "ben", clock=clock)
    control.kill(store, "checkout_copy", "production", "ana", "p95 latency", clock)
    for n in range(1, 5):
        store.record_decision(decision(n), None, None, [])
    store.close()
    return db_path


def tamper(db_path: Path, *statements: str) -> None:
    con = duckdb.connect(str(db_path))
    for sql in statements:
        con.execute(sql)
    con.execute("CHECKPOINT")  # DuckDB may otherwise refuse to reuse a deleted unique seq
    con.close()


def rehash_changes_from(db_path: Path, seq: int) -> None:
    """An attacker who knows the (public) hash format: recompute every hash and link from `seq`."""
    store = DuckDBStore(db_path)
    rows = store.flag_changes()
    store.close()
    con = duckdb.connect(str(db_path))
    prev, last_of = GENESIS_HASH, dict[str, str]()
    for row in rows:
        if row.seq >= seq:
            fixed = dataclasses.replace(
                row, prev_hash=prev, flag_prev_hash=last_of.get(row.flag_key, GENESIS_HASH)
            )
            fixed = dataclasses.replace(fixed, hash=change_hash(fixed, prev))
            con.execute(
                "UPDATE flag_changes SET prev_hash = ?, flag_prev_hash = ?, hash = ? WHERE change_id = ?",
                [fixed.prev_hash, fixed.flag_prev_hash, fixed.hash, row.change_id],
            )
            row = fixed
        prev = last_of[row.flag_key] = row.hash
    con.close()


def verified(db_path: Path) -> dict[str, Any]:
    store = DuckDBStore(db_path)
    try:
        return audit.verify(store)
    finally:
        store.close()


def first_break(result: dict[str, Any], chain: str) -> tuple[str, str | None, int | None]:
    found = result[chain]["first_break"]
    return found["kind"], found["row_id"], found["seq"]


def change_id_at(db_path: Path, seq: int) -> str:
    con = duckdb.connect(str(db_path))
    row = con.execute("SELECT change_id FROM flag_changes WHERE seq = ?", [seq]).fetchone()
    con.close()
    assert row is not None
    return str(row[0])


def test_an_untouched_database_verifies_with_its_secret_and_head(history: Path) -> None:
    result = verified(history)
    assert result["ok"] is True
    assert result["flag_changes"]["rows"] == 6 and result["decisions"]["rows"] == 4
    assert result["flag_changes"]["keyed"] is True and result["flag_changes"]["legacy_rows"] == 0
    secret = Path(str(history) + ".secret")
    assert stat.S_IMODE(os.stat(secret).st_mode) == 0o600
    assert Path(str(history) + ".audit-head").exists()


@pytest.mark.parametrize(
    ("statements", "kind", "seq"),
    [
        (["UPDATE flag_changes SET reason = 'routine' WHERE seq = 3"], "edited", 3),
        (["UPDATE flag_changes SET after = '{\"key\": \"checkout_copy\"}' WHERE seq = 3"], "edited", 3),
        (["DELETE FROM flag_changes WHERE seq = 3"], "deleted", 4),
        (["UPDATE flag_changes SET seq = 100 WHERE seq = 2", "UPDATE flag_changes SET seq = 2 WHERE seq = 3",
          "UPDATE flag_changes SET seq = 3 WHERE seq = 100"], "reordered", 2),
        (["DELETE FROM flag_changes WHERE seq = 6"], "truncated", 6),
    ],
    ids=["edited reason", "edited after", "deleted middle row", "swapped rows", "deleted newest row"],
)  # fmt: skip
def test_tampering_with_flag_changes_in_the_file_is_named(
    history: Path, statements: list[str], kind: str, seq: int
) -> None:
    expected_id = None if kind == "truncated" else change_id_at(history, 3 if kind == "reordered" else seq)
    tamper(history, *statements)
    result = verified(history)
    assert result["ok"] is False and result["decisions"]["ok"] is True
    assert first_break(result, "flag_changes") == (kind, expected_id, seq)


def test_an_edit_hidden_by_re_hashing_the_rest_of_the_chain_is_named(history: Path) -> None:
    edited = change_id_at(history, 3)
    tamper(history, "UPDATE flag_changes SET reason = 'approved by the board' WHERE seq = 3")
    rehash_changes_from(history, 3)
    assert first_break(verified(history), "flag_changes") == ("rehashed", edited, 3)


def test_deleting_newest_rows_then_writing_again_is_still_caught(history: Path, clock: Clock) -> None:
    tamper(history, "DELETE FROM flag_changes WHERE seq = 6")
    store = DuckDBStore(history)
    control.ramp(store, "model_route", "production", "candidate", 30, "ben", clock=clock)
    store.close()
    kind, _, seq = first_break(verified(history), "flag_changes")
    assert (kind, seq) == ("rehashed", 6)


@pytest.mark.parametrize(
    ("statements", "kind", "row_id", "seq"),
    [
        (["UPDATE decisions SET reason = 'approved' WHERE seq = 2"], "edited", "d2", 2),
        (["DELETE FROM decisions WHERE seq = 2"], "deleted", "d3", 3),
        (["DELETE FROM decisions WHERE seq = 4"], "truncated", None, 4),
    ],
    ids=["edited", "deleted middle row", "deleted newest row"],
)
def test_tampering_with_decisions_in_the_file_is_named(
    history: Path, statements: list[str], kind: str, row_id: str | None, seq: int
) -> None:
    tamper(history, *statements)
    result = verified(history)
    assert result["ok"] is False and result["flag_changes"]["ok"] is True
    assert first_break(result, "decisions") == (kind, row_id, seq)


def test_a_decision_edited_and_re_hashed_fails_its_mac(history: Path) -> None:
    store = DuckDBStore(history)
    (row,) = [d for d in store.decisions() if d.seq == 4]
    store.close()
    edited = dataclasses.replace(row, reason="approved")
    tamper(
        history,
        f"UPDATE decisions SET reason = 'approved', hash = '{decision_hash(edited, row.prev_hash)}' WHERE seq = 4",
    )
    assert first_break(verified(history), "decisions") == ("rehashed", "d4", 4)


def test_one_flags_rows_carry_a_verification_mark(history: Path) -> None:
    store = DuckDBStore(history)
    rows = audit.flag_history(store, "checkout_copy")
    store.close()
    assert [r["verified"] for r in rows] == [True] * 4
    assert all("audit_break" not in r for r in rows)
    tamper(history, f"UPDATE flag_changes SET reason = 'routine' WHERE change_id = '{rows[2]['change_id']}'")
    store = DuckDBStore(history)
    marked = audit.flag_history(store, "checkout_copy")
    store.close()
    assert [r["verified"] for r in marked] == [True, True, False, False]
    assert marked[2]["audit_break"]["kind"] == "edited" and "audit_break" not in marked[3]


def test_a_missing_secret_is_refused_rather_than_replaced(history: Path) -> None:
    Path(str(history) + ".secret").unlink()
    with pytest.raises(StoreError, match=r"audit secret .* is missing"):
        DuckDBStore(history)


def test_the_secret_can_live_elsewhere(db_path: Path, tmp_path: Path, clock: Clock) -> None:
    secret = tmp_path / "vault" / "ramplight.secret"
    store = DuckDBStore(db_path, audit_secret=secret)
    control.ensure_default_environments(store, clock)
    control.create_flag(store, flag_doc(), "ana", clock=clock)
    store.close()
    assert secret.exists() and not Path(str(db_path) + ".secret").exists()
    reopened = DuckDBStore(db_path, audit_secret=secret)
    assert audit.verify(reopened)["ok"] is True
    reopened.close()


def legacy_database(db_path: Path, tamper_seq: int | None = None) -> list[str]:
    """A database at schema 4 with rows hashed the old way (no MACs, no flag links)."""
    con = duckdb.connect(str(db_path))
    con.execute(
        "CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, name VARCHAR NOT NULL, applied_at TIMESTAMPTZ NOT NULL)"
    )
    for version, name, sql in migrations():
        if version <= 4:
            con.execute(sql)
            con.execute("INSERT INTO schema_migrations VALUES (?, ?, ?)", [version, name, NOW])
    prev, ids = GENESIS_HASH, []
    for seq in range(1, 5):
        row = legacy_change(seq)
        digest = change_hash(row, prev)
        con.execute(
            "INSERT INTO flag_changes VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [row.change_id, seq, row.ts, row.environment, row.flag_key, row.version, row.actor, row.action,
             None, f'{{"n": {seq}}}', row.reason, prev, digest],
        )  # fmt: skip
        prev = digest
        ids.append(row.change_id)
    prev = GENESIS_HASH
    for seq in range(1, 3):
        d = dataclasses.replace(decision(seq), hash_version=1)
        digest = decision_hash(d, prev)
        con.execute(
            "INSERT INTO decisions VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [d.decision_id, seq, d.ts, d.environment, d.flag_key, d.state, d.actor, d.forced, d.reason,
             '{"action": "continue"}', f'{{"units": {seq}}}', d.sql, None, 1, None, None, prev, digest],
        )  # fmt: skip
        prev = digest
    if tamper_seq is not None:
        con.execute("UPDATE flag_changes SET reason = 'quietly changed' WHERE seq = ?", [tamper_seq])
    con.close()
    return ids


def legacy_change(seq: int) -> FlagChange:
    return FlagChange(
        change_id=f"legacy{seq}", ts=NOW + timedelta(minutes=seq), environment="production",
        flag_key="checkout_copy" if seq % 2 else "model_route", version=seq, actor="ana", action="update",
        before=None, after={"n": seq}, reason=f"step {seq}", hash_version=1,
    )  # fmt: skip


def test_rows_written_before_the_upgrade_are_sealed_and_still_verify(db_path: Path, clock: Clock) -> None:
    legacy_database(db_path)
    store = DuckDBStore(db_path)
    assert store.schema_version() >= 5
    before = audit.verify(store)
    assert before["ok"] is True, before
    assert (before["flag_changes"]["legacy_rows"], before["decisions"]["legacy_rows"]) == (4, 2)
    store.record_decision(decision(3), None, None, [])
    store.close()
    after = verified(db_path)
    assert after["ok"] is True and after["decisions"]["rows"] == 3


def test_tampering_made_before_the_upgrade_is_not_laundered_by_it(db_path: Path) -> None:
    ids = legacy_database(db_path, tamper_seq=2)
    assert first_break(verified(db_path), "flag_changes") == ("edited", ids[1], 2)
