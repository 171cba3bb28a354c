"""The DuckDB store on real files: migrations, compare-and-set flag writes, the audit chain,
hashed API keys and idempotent segment loads."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from pathlib import Path

import duckdb
import msgspec
import pytest

from ramplight import control
from ramplight.core.audit import FlagChange, broken_links
from ramplight.core.errors import AuthError, ConflictError
from ramplight.core.flags import Flag
from ramplight.core.keys import hash_key
from ramplight.server.auth import authenticate
from ramplight.store.duckdb import DuckDBStore
from ramplight.store.duckdb.store import migrations
from tests.core.builders import checked, event_doc, flag_doc, rollout
from tests.store.evidence import NOW, accepted, exposures

Clock = Callable[[], datetime]


def change(flag: Flag, change_id: str, action: str = "update", ts: datetime = NOW) -> FlagChange:
    return FlagChange(
        change_id=change_id,
        ts=ts,
        environment="production",
        flag_key=flag.key,
        version=flag.version,
        actor="ana@example.com",
        action=action,  # type: ignore[arg-type]
        before=None,
        after=msgspec.to_builtins(flag),
        reason=None,
    )


def bump(flag: Flag, **changes: object) -> Flag:
    return msgspec.structs.replace(flag, version=flag.version + 1, **changes)


# -- migrations ---------------------------------------------------------------------------


def test_migrations_apply_once_and_are_recorded(db_path: Path) -> None:
    first = DuckDBStore(db_path)
    recorded = first.query("SELECT version, name, applied_at FROM schema_migrations ORDER BY version")
    assert [(v, n) for v, n, _ in recorded] == [(v, n) for v, n, _ in migrations()]
    assert first.migrate() == []
    first.close()

    reopened = DuckDBStore(db_path)
    try:
        assert (
            reopened.query("SELECT version, name, applied_at FROM schema_migrations ORDER BY version")
            == recorded
        )
        assert reopened.schema_version() == max(v for v, _, _ in migrations())
        assert reopened.count("exposures") == 0
    finally:
        reopened.close()


def test_an_older_database_gets_only_the_migrations_it_lacks(db_path: Path) -> None:
    (first_version, first_name, first_sql), *later = migrations()
    old = duckdb.connect(str(db_path))  # a file written by the first release
    old.execute(
        "CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, name VARCHAR NOT NULL,"
        " applied_at TIMESTAMPTZ NOT NULL)"
    )
    old.execute(first_sql)
    old.execute("INSERT INTO schema_migrations VALUES (?, ?, ?)", [first_version, first_name, NOW])
    old.close()

    store = DuckDBStore(db_path)
    try:
        recorded = store.query("SELECT version, name, applied_at FROM schema_migrations ORDER BY version")
        assert recorded[0] == (first_version, first_name, NOW)
        assert [(v, n) for v, n, _ in recorded[1:]] == [(v, n) for v, n, _ in later]
    finally:
        store.close()


def test_a_read_only_store_sees_the_data_without_migrating(db_path: Path) -> None:
    writer = DuckDBStore(db_path)
    writer.save_flag(checked(flag_doc()), None, [])
    writer.close()
    reader = DuckDBStore(db_path, read_only=True)
    try:
        assert [f.key for f in reader.list_flags()] == ["checkout_copy"]
    finally:
        reader.close()


# -- flags: compare-and-set and atomicity -------------------------------------------------


def test_creating_a_flag_twice_is_a_conflict(store: DuckDBStore) -> None:
    flag = checked(flag_doc())
    store.save_flag(flag, None, [change(flag, "c1", "create")])
    with pytest.raises(ConflictError, match="already exists"):
        store.save_flag(flag, None, [change(flag, "c2", "create")])
    assert [c.change_id for c in store.flag_changes()] == ["c1"]


def test_saving_with_a_stale_version_is_a_conflict_and_changes_nothing(store: DuckDBStore) -> None:
    v1 = checked(flag_doc())
    store.save_flag(v1, None, [change(v1, "c1", "create")])
    v2 = bump(v1, description="first editor")
    store.save_flag(v2, 1, [change(v2, "c2")])
    late = bump(v1, description="second editor, read version 1")
    with pytest.raises(ConflictError, match="is at version 2, not 1"):
        store.save_flag(late, 1, [change(late, "c3")])
    assert store.get_flag(v1.key) == v2
    assert [c.change_id for c in store.flag_changes()] == ["c1", "c2"]


def test_updating_a_flag_that_does_not_exist_is_a_conflict(store: DuckDBStore) -> None:
    flag = checked(flag_doc())
    with pytest.raises(ConflictError, match="does not exist"):
        store.save_flag(flag, 1, [])
    assert store.get_flag(flag.key) is None


def test_a_failing_change_insert_rolls_back_the_flag_write(store: DuckDBStore) -> None:
    v1 = checked(flag_doc())
    store.save_flag(v1, None, [change(v1, "c1", "create")])
    v2 = bump(v1, description="never committed")
    with pytest.raises((duckdb.ConstraintException, ConflictError)):
        store.save_flag(v2, 1, [change(v2, "c2"), change(v2, "c1")])  # c1 is taken
    assert store.get_flag(v1.key) == v1
    assert [c.change_id for c in store.flag_changes()] == ["c1"]
    v2_retry = bump(v1, description="committed")
    store.save_flag(v2_retry, 1, [change(v2_retry, "c2")])
    assert broken_links(store.flag_changes()) == []


def test_a_duplicate_change_id_is_reported_as_a_conflict(store: DuckDBStore) -> None:
    v1 = checked(flag_doc())
    store.save_flag(v1, None, [change(v1, "c1", "create")])
    with pytest.raises(ConflictError):
        store.save_flag(bump(v1), 1, [change(bump(v1), "c1")])


def test_archived_flags_are_listed_only_on_request(store: DuckDBStore) -> None:
    live, old = checked(flag_doc(key="live")), checked(flag_doc(key="old"))
    store.save_flag(live, None, [])
    store.save_flag(old, None, [])
    store.save_flag(bump(old, archived=True), 1, [])
    assert [f.key for f in store.list_flags()] == ["live"]
    assert [f.key for f in store.list_flags(include_archived=True)] == ["live", "old"]


# -- the audit chain through control operations -------------------------------------------


def test_flag_changes_chain_verifies_after_control_operations(store: DuckDBStore, clock: Clock) -> None:
    control.ensure_default_environments(store, clock)
    doc = flag_doc(rollout=rollout(control=99, candidate=1))
    control.create_flag(store, doc, "ana", "start at 1 %", clock)
    control.create_flag(store, flag_doc(key="model_route"), "ben", clock=clock)
    for percent in (5, 20):
        control.ramp(store, "checkout_copy", "production", "candidate", percent, "guardian", clock=clock)
    control.kill(store, "checkout_copy", "production", "ana", "p95 latency", clock)
    control.ramp(store, "model_route", "production", "candidate", 10, "ben", clock=clock)
    control.restore(store, "checkout_copy", "production", "ana", "fixed", clock)
    now = {**flag_doc(rollout=rollout(control=80, candidate=20)), "description": "copy test"}
    control.update_flag(store, "checkout_copy", now, 5, "ana", clock=clock)
    control.archive(store, "checkout_copy", "ana", "decided", clock)

    changes = store.flag_changes()
    assert broken_links(changes) == []
    assert [(c.flag_key, c.action, c.version) for c in changes] == [
        ("checkout_copy", "create", 1),
        ("model_route", "create", 1),
        ("checkout_copy", "ramp", 2),
        ("checkout_copy", "ramp", 3),
        ("checkout_copy", "kill", 4),
        ("model_route", "ramp", 2),
        ("checkout_copy", "restore", 5),
        ("checkout_copy", "update", 6),
        ("checkout_copy", "archive", 7),
    ]
    assert [c.environment for c in changes if c.action in ("ramp", "kill", "restore")] == ["production"] * 5
    assert changes[2].reason is None and changes[4].reason == "p95 latency"
    assert changes[3].before["environments"]["production"]["rollout"]["weights"] == {
        "control": 95.0,
        "candidate": 5.0,
    }
    assert [c.flag_key for c in store.flag_changes("model_route")] == ["model_route", "model_route"]


def test_the_chain_survives_reopening_and_detects_an_edit_made_in_sql(db_path: Path, clock: Clock) -> None:
    first = DuckDBStore(db_path)
    control.ensure_default_environments(first, clock)
    control.create_flag(first, flag_doc(rollout=rollout(control=95, candidate=5)), "ana", clock=clock)
    control.ramp(first, "checkout_copy", "production", "candidate", 20, "ana", reason="expand", clock=clock)
    control.kill(first, "checkout_copy", "production", "ana", clock=clock)
    first.close()

    store = DuckDBStore(db_path)
    try:
        assert broken_links(store.flag_changes()) == []
        ramp_id = store.flag_changes()[1].change_id
        store.query("UPDATE flag_changes SET reason = 'routine' WHERE change_id = ?", [ramp_id])
        assert broken_links(store.flag_changes()) == [ramp_id]
    finally:
        store.close()


def test_a_change_stamped_in_another_timezone_still_verifies(store: DuckDBStore) -> None:
    flag = checked(flag_doc())
    paris = timezone(timedelta(hours=1))
    store.save_flag(flag, None, [change(flag, "c1", "create", ts=NOW.astimezone(paris))])
    assert broken_links(store.flag_changes()) == []


def test_changes_keep_timestamps_and_documents_exactly(store: DuckDBStore) -> None:
    flag = checked(flag_doc(rollout=rollout(control=33.333, candidate=66.667)))
    original = dataclasses.replace(change(flag, "c1", "create"), ts=NOW + timedelta(microseconds=123_456))
    store.save_flag(flag, None, [original])
    (stored,) = store.flag_changes()
    as_json = msgspec.json.decode(msgspec.json.encode(original.after))
    assert (stored.ts, stored.after, stored.before) == (original.ts, as_json, None)


# -- API keys -----------------------------------------------------------------------------


def test_api_keys_are_stored_hashed_never_in_plaintext(db_path: Path, clock: Clock) -> None:
    store = DuckDBStore(db_path)
    control.ensure_default_environments(store, clock)
    admin_plain, admin = control.create_api_key(store, "admin", "ci", clock=clock)
    sdk_plain, sdk = control.create_api_key(store, "sdk", "web", "production", clock=clock)
    store.query("CHECKPOINT")

    def on_disk() -> bytes:
        return b"".join(p.read_bytes() for p in db_path.parent.iterdir() if p.name.startswith(db_path.name))

    for plaintext in (admin_plain, sdk_plain):
        assert plaintext.encode() not in on_disk()
    assert {k.key_hash for k in store.list_api_keys()} == {
        hash_key(admin_plain),
        hash_key(sdk_plain),
    }
    store.close()
    for plaintext in (admin_plain, sdk_plain):
        assert plaintext.encode() not in on_disk()

    reopened = DuckDBStore(db_path)
    try:
        assert authenticate(reopened, sdk_plain) == sdk
        assert authenticate(reopened, admin_plain).kind == "admin"
        reopened.revoke_api_key(admin.id, NOW)
        with pytest.raises(AuthError, match="revoked"):
            authenticate(reopened, admin_plain)
        with pytest.raises(AuthError):
            authenticate(reopened, admin_plain + "x")
    finally:
        reopened.close()


# -- evidence: idempotent segment loads ---------------------------------------------------


def test_load_segment_keeps_each_identity_of_a_file_once_and_stamps_identities(
    store: DuckDBStore, write_segment: Callable[..., dict[str, Path]]
) -> None:
    """Within a file the loader keeps one row per identity; across segments, resends never reach
    the log (ingestion's identity index answers them; see tests/store/test_identity.py)."""
    a, b, c = exposures("user-1", "user-2", "user-3")
    first = write_segment(exposures=[a, b, b])
    second = write_segment(exposures=[c])
    assert store.load_segment("000000000001.seg", first) == 2
    assert store.load_segment("000000000002.seg", second) == 1
    ids = [r[0] for r in store.query("SELECT event_id FROM exposures ORDER BY unit_id")]
    assert ids == [a.event_id, b.event_id, c.event_id]
    keys, payloads = store.identities()
    assert sorted(int(k) for k in keys) == sorted([a.identity, b.identity, c.identity])
    assert sorted(int(p) for p in payloads) == sorted([a.payload_hash, b.payload_hash, c.payload_hash])


def test_a_segment_from_before_identities_keeps_each_event_id_once(
    store: DuckDBStore, write_segment: Callable[..., dict[str, Path]]
) -> None:
    """Lines without an identity (a log written before identities) are told apart by their
    environment and event id, not lumped together as one missing identity."""
    a, b = exposures("user-1", "user-2")
    legacy = [msgspec.structs.replace(x, identity=None, payload_hash=None) for x in (a, b, b)]
    assert store.load_segment("000000000001.seg", write_segment(exposures=legacy)) == 2
    ids = [r[0] for r in store.query("SELECT event_id FROM exposures ORDER BY unit_id")]
    assert ids == [a.event_id, b.event_id]


def test_loading_a_segment_name_again_inserts_nothing(
    store: DuckDBStore, write_segment: Callable[..., dict[str, Path]]
) -> None:
    files = write_segment(exposures=exposures("user-1"), events=accepted("events", event_doc()))
    assert store.load_segment("000000000007.seg", files) == 2
    store.query("DELETE FROM exposures")  # even if the rows were gone, the segment counts as loaded
    assert store.load_segment("000000000007.seg", files) == 0
    assert store.count("exposures") == 0
    assert store.loaded_segments() == {"000000000007.seg"}
    assert store.query("SELECT inserted FROM ingest_segments") == [(2,)]


def test_loaded_evidence_keeps_every_contract_field(
    store: DuckDBStore, write_segment: Callable[..., dict[str, Path]]
) -> None:
    (exposure,) = exposures(
        "conv-9",
        served_variation="control",
        fallback_reason="timeout",
        behavior={"prompt_profile": "support_v4", "model": "small"},
        ids={"account_id": "acme"},
        attributes={"plan": "pro", "seats": 12},
        trace_id="4bf92f3577b34da6a3ce929d0e0e4736",
        flag_version=3,
        sdk="ramplight-python/0.1",
    )
    store.load_segment("000000000001.seg", write_segment(exposures=[exposure]))
    row = store.query(
        "SELECT ts, received_at, environment, flag_version, assigned_variation, served_variation, fallback_reason,"
        " behavior->>'prompt_profile', ids->>'account_id', CAST(attributes->>'seats' AS INTEGER), trace_id, sdk"
        " FROM exposures"
    )
    assert row == [
        (
            datetime(2025, 3, 1, 11, 59, tzinfo=NOW.tzinfo),
            NOW,
            "production",
            3,
            "candidate",
            "control",
            "timeout",
            "support_v4",
            "acme",
            12,
            "4bf92f3577b34da6a3ce929d0e0e4736",
            "ramplight-python/0.1",
        )
    ]


def test_counts_are_per_environment(
    store: DuckDBStore, write_segment: Callable[..., dict[str, Path]]
) -> None:
    store.load_segment(
        "000000000001.seg", write_segment(events=accepted("events", event_doc(), event_doc(unit_id="u2")))
    )
    assert store.count("events") == 2
    assert store.count("events", "production") == 2
    assert store.count("events", "staging") == 0
    with pytest.raises(ValueError, match="unknown evidence kind"):
        store.count("spans_and_more")  # type: ignore[arg-type]


def test_a_closed_store_kept_alive_holds_no_duckdb_object_at_exit(tmp_path: Path) -> None:
    # A store referenced after close (by a traceback, a cache) with a cursor in a thread that
    # outlives it, like a server's worker threads: nanobind reported DuckDB objects leaked at exit.
    script = f"""
import threading
from ramplight.store.duckdb import DuckDBStore

store = DuckDBStore({str(tmp_path / "exit.duckdb")!r})
idle, listed = threading.Event(), threading.Event()
threading.Thread(target=lambda: (store.list_flags(), listed.set(), idle.wait()), daemon=True).start()
listed.wait(30)  # the thread holds its cursor, idle, when the store closes
store.read("SELECT 1")
store.close()
kept = store
"""
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "leaked" not in result.stderr
