"""One control-plane suite, run on every backend that keeps a control plane: the embedded
DuckDB file and PostgreSQL (a fresh schema on the server at 127.0.0.1:5432). Compare-and-set,
the audit chains under concurrent writers, keys, plans and change requests must behave the same."""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import msgspec
import pytest

from ramplight import control
from ramplight.control import users
from ramplight.core.audit import Decision, verify_changes, verify_decisions
from ramplight.core.errors import AuthError, ConflictError, NotFoundError, ValidationError
from ramplight.core.keys import hash_key
from ramplight.core.prices import Price
from ramplight.core.sources import Source
from ramplight.server.auth import authenticate
from ramplight.store.base import ChangeRequest
from ramplight.store.duckdb import DuckDBStore
from tests import pg
from tests.core.builders import flag_doc
from tests.store.evidence import NOW


def open_control(backend: str, tmp_path: Path, url: str | None) -> Any:
    if backend == "duckdb":
        return DuckDBStore(tmp_path / "control.duckdb")
    from ramplight.store.postgres import PostgresControlStore

    assert url is not None
    return PostgresControlStore(url, audit_secret=tmp_path / "control.secret")


@pytest.fixture(params=["duckdb", "postgres"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, str | None]]:
    if request.param == "duckdb":
        yield "duckdb", None
        return
    with pg.schema_url() as url:
        yield "postgres", url


@pytest.fixture
def store(backend: tuple[str, str | None], tmp_path: Path) -> Iterator[Any]:
    opened = open_control(backend[0], tmp_path, backend[1])
    control.ensure_default_environments(opened)
    yield opened
    opened.close()


def test_a_flag_write_compares_and_sets_its_version(store: Any) -> None:
    flag = control.create_flag(store, flag_doc(), actor="ana")
    with pytest.raises(ConflictError, match="already exists"):
        control.create_flag(store, flag_doc(), actor="bo")
    updated = control.ramp(store, flag.key, "production", "candidate", 20, actor="ana")
    assert updated.version == 2
    with pytest.raises(ConflictError, match="version 2, not 1"):
        control.update_flag(store, flag.key, flag_doc(), expected_version=1, actor="bo")
    assert store.get_flag(flag.key) == updated
    assert [c.action for c in store.flag_changes(flag.key)] == ["create", "ramp"]
    assert verify_changes(store.flag_changes(), store.audit_key).ok


def test_concurrent_writers_keep_one_winner_per_version_and_an_unbroken_chain(
    backend: tuple[str, str | None], tmp_path: Path
) -> None:
    """Four writers, each with its own store object (on PostgreSQL: its own connections, as
    separate server processes have), ramp the same flag and their own flags at once."""
    first = open_control(backend[0], tmp_path, backend[1])
    control.ensure_default_environments(first)
    control.create_flag(first, flag_doc("shared"), actor="setup")
    others = (
        [open_control(backend[0], tmp_path, backend[1]) for _ in range(3)] if backend[0] == "postgres" else []
    )
    stores = [first, *others] if others else [first] * 4
    wins: list[int] = []
    conflicts: list[str] = []
    lock = threading.Lock()

    def writer(n: int) -> None:
        store = stores[n]
        control.create_flag(store, flag_doc(f"own_{n}"), actor=f"w{n}")
        for step in range(10):
            control.ramp(store, f"own_{n}", "production", "candidate", step + 1, actor=f"w{n}")
            current = store.get_flag("shared")
            try:
                control.update_flag(store, "shared", flag_doc("shared"), current.version, actor=f"w{n}")
            except ConflictError as exc:
                with lock:
                    conflicts.append(str(exc))
            else:
                with lock:
                    wins.append(current.version + 1)

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    try:
        assert sorted(wins) == sorted(set(wins)), "two writers won the same version"
        assert first.get_flag("shared").version == 1 + len(wins)
        assert len(wins) + len(conflicts) == 40
        changes = first.flag_changes()
        assert [c.seq for c in changes] == list(range(1, len(changes) + 1))
        assert len(changes) == 1 + 4 + 40 + len(wins)
        report = verify_changes(changes, first.audit_key)
        assert report.ok, report
    finally:
        for s in {id(s): s for s in stores}.values():
            s.close()


def decision(n: int) -> Decision:
    return Decision(
        decision_id=f"d{n}",
        ts=NOW,
        environment="production",
        flag_key="support_assistant_profile",
        state="continue",
        actor="guardian",
        forced=False,
        reason=f"check {n}",
        recommendation={"state": "continue"},
        evidence={"units": n},
        sql=None,
        fingerprint=None,
        flag_version=None,
        rollout_before=None,
        rollout_after=None,
    )


def test_decisions_chain_under_concurrent_writers(backend: tuple[str, str | None], tmp_path: Path) -> None:
    stores = [open_control(backend[0], tmp_path, backend[1])]
    if backend[0] == "postgres":
        stores += [open_control(backend[0], tmp_path, backend[1]) for _ in range(2)]
    else:
        stores *= 3

    def writer(n: int) -> None:
        for i in range(15):
            stores[n].record_decision(decision(n * 100 + i), None, None, [])

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    try:
        decisions = stores[0].decisions()
        assert [d.seq for d in decisions] == list(range(1, 46))
        assert verify_decisions(decisions, stores[0].audit_key).ok
    finally:
        for s in {id(s): s for s in stores}.values():
            s.close()


def test_keys_are_stored_hashed_and_revocation_holds(store: Any) -> None:
    plaintext, key = control.create_api_key(store, "sdk", "web", environment="staging")
    assert plaintext not in repr(store.list_api_keys())
    assert authenticate(store, plaintext).id == key.id
    control.revoke_api_key(store, key.id)
    with pytest.raises(AuthError):
        authenticate(store, plaintext)


def test_users_keep_only_a_password_hash_and_names_are_unique(store: Any) -> None:
    ana = users.create_user(store, "ana", "editor", "correct horse battery")
    assert "correct horse battery" not in repr(store.list_users())
    assert ana.password_hash.startswith("$argon2id$")
    assert store.get_user(ana.id) == ana == store.find_user("ana")
    assert users.check_password(store, "ana", "correct horse battery") == ana
    for name, password in (
        ("ana", "wrong password!"),
        ("nobody", "correct horse battery"),
        ("nobody", "not a password anyone has"),  # the unknown names' stand-in hash's password
    ):
        with pytest.raises(AuthError, match="unknown user or wrong password"):
            users.check_password(store, name, password)
    # An unknown name is checked against a hash of the same cost as a user's.
    assert not users._hasher.check_needs_rehash(users._DUMMY_HASH)
    assert users._DUMMY_HASH.split("$")[1:4] == ana.password_hash.split("$")[1:4]
    with pytest.raises(ConflictError, match="already exists"):
        users.create_user(store, "ana", "viewer", "another password")
    with pytest.raises(ValidationError):
        users.create_user(store, "bo", "owner", "long enough password")
    with pytest.raises(ValidationError):
        users.create_user(store, "bo", "viewer", "short")
    assert [u.name for u in store.list_users()] == ["ana"]


def test_sessions_are_stored_hashed_expire_and_end(store: Any) -> None:
    ana = users.create_user(store, "ana", "approver", "correct horse battery")
    token = users.start_session(store, user=ana, clock=lambda: NOW)
    stored = store.find_session(hash_key(token))
    assert stored is not None and stored.user_id == ana.id and stored.token_hash != token
    seen = users.session_principal(store, token, clock=lambda: NOW + timedelta(hours=1))
    assert seen is not None and (seen.name, seen.role, seen.actor) == ("ana", "approver", "user:ana")
    assert seen.may("editor") and not seen.may("admin")
    assert users.session_principal(store, token, clock=lambda: NOW + users.SESSION_TTL) is None
    assert users.session_principal(store, "not-a-token") is None
    # A later sign-in sweeps the expired sessions away.
    later = users.start_session(store, user=ana, clock=lambda: NOW + timedelta(days=1))
    assert store.find_session(hash_key(token)) is None
    users.end_session(store, later)
    assert store.find_session(hash_key(later)) is None


def test_a_users_role_changes_and_disabling_ends_their_sessions(store: Any) -> None:
    ana = users.create_user(store, "ana", "editor", "correct horse battery")
    admin = users.create_user(store, "ada", "admin", "correct horse battery")
    assert ana.last_sign_in_at is None
    token = users.start_session(store, user=ana, clock=lambda: NOW)
    assert store.get_user(ana.id).last_sign_in_at == NOW  # the users page shows it
    promoted = users.change_user(store, ana.id, role="approver", by_id=admin.id)
    assert store.get_user(ana.id) == promoted and promoted.role == "approver"
    seen = users.session_principal(store, token, clock=lambda: NOW + timedelta(hours=1))
    assert seen is not None and seen.role == "approver"  # the role is read on every request

    users.change_user(store, ana.id, disabled=True, by_id=admin.id, clock=lambda: NOW)
    assert store.get_user(ana.id).disabled_at == NOW
    assert store.find_session(hash_key(token)) is None  # deleted with the disabling, not only ignored
    with pytest.raises(AuthError):
        users.check_password(store, "ana", "correct horse battery")
    enabled = users.change_user(store, ana.id, disabled=False, by_id=admin.id)
    assert enabled.disabled_at is None and users.check_password(store, "ana", "correct horse battery")

    with pytest.raises(ConflictError, match="your own role"):
        users.change_user(store, admin.id, role="viewer", by_id=admin.id)
    with pytest.raises(ConflictError, match="disable yourself"):
        users.change_user(store, admin.id, disabled=True, by_id=admin.id)
    with pytest.raises(ValidationError):
        users.change_user(store, ana.id, role="owner")
    with pytest.raises(NotFoundError):
        users.change_user(store, "nobody", role="viewer")
    with pytest.raises(NotFoundError):
        store.update_user(dataclasses.replace(ana, id="nobody"))
    assert [(u.name, u.role) for u in store.list_users()] == [("ada", "admin"), ("ana", "approver")]


def test_two_admins_changing_one_user_at_once_never_undo_each_other(store: Any) -> None:
    """Admin 1 reads bo to change his role; admin 2 disables him meanwhile: admin 1's write is
    refused instead of storing the stale `disabled_at` (which would re-enable bo)."""
    bo = users.create_user(store, "bo", "viewer", "correct horse battery")
    read_by_first = store.get_user(bo.id)
    users.change_user(store, bo.id, disabled=True, clock=lambda: NOW)  # the second admin
    with pytest.raises(ConflictError, match="changed meanwhile"):
        store.update_user(dataclasses.replace(read_by_first, role="editor"), previous=read_by_first)
    now = store.get_user(bo.id)
    assert (now.role, now.disabled_at) == ("viewer", NOW)


def test_an_admin_key_session_acts_as_admin_until_the_key_is_revoked(store: Any) -> None:
    plaintext, key = control.create_api_key(store, "admin", "ops", can_force=True)
    token = users.start_session(store, key=key)
    seen = users.session_principal(store, token)
    assert seen is not None and seen.role == "admin" and seen.can_force and plaintext not in seen.actor
    control.revoke_api_key(store, key.id)
    assert users.session_principal(store, token) is None
    _, sdk = control.create_api_key(store, "sdk", "web", environment="staging")
    with pytest.raises(AuthError):
        users.start_session(store, key=sdk)


def test_segments_metrics_plans_and_requests_round_trip(store: Any) -> None:
    control.create_flag(store, flag_doc(), actor="ana")
    control.save_segment(store, {"key": "beta", "included": ["conv_1"]}, None)
    with pytest.raises(ConflictError):
        control.save_segment(store, {"key": "beta", "included": ["conv_2"]}, None)
    control.save_segment(store, {"key": "beta", "included": ["conv_2"]}, 1)
    assert [(s.key, s.version, s.included) for s in store.list_segments()] == [("beta", 2, ["conv_2"])]
    request = ChangeRequest(
        request_id="r1",
        flag_key="support_assistant_profile",
        environment="production",
        action="expand",
        percent=20.0,
        reason="stage 2",
        proposed_by="ana",
        proposer_id="k1",
        proposed_at=NOW,
        state="proposed",
        approvals=[],
        required=1,
    )
    store.save_request(request, None)
    with pytest.raises(ConflictError):
        store.save_request(request, None)
    store.save_request(dataclasses.replace(request, state="approved", approvals=[{"by": "bo"}]), "proposed")
    with pytest.raises(ConflictError, match="is approved, not proposed"):
        store.save_request(request, "proposed")
    assert store.get_request("r1").approvals == [{"by": "bo"}]
    assert [r.request_id for r in store.list_requests("support_assistant_profile")] == ["r1"]


def test_sources_are_versioned_documents(store: Any) -> None:
    source = Source(
        key="conversations",
        kind="events",
        sql="SELECT * FROM support_conversations",
        fields={"unit_id": "unitId", "ts": "timestamp"},
        constants={"assignment_unit": "conversation", "value": 1.5},
        outcomes={"resolved": "resolvedWithoutEscalation"},
        version=1,
    )
    store.save_source(source, None)
    with pytest.raises(ConflictError):
        store.save_source(source, None)
    assert store.list_sources() == [source]
    newer = msgspec.structs.replace(source, description="v2", version=2)
    store.save_source(newer, 1)
    with pytest.raises(ConflictError, match="at version 2, not 1"):
        store.save_source(newer, 1)
    assert store.list_sources() == [newer]
    assert store.delete_source("conversations") is True
    assert store.delete_source("conversations") is False
    assert store.list_sources() == []


def test_the_price_table_is_replaced_whole(store: Any) -> None:
    assert store.list_prices() == []
    table = [Price("gpt-5", 1.25, 10.0), Price("gpt-5-mini", 0.25, 2.0)]
    store.replace_prices(table)
    assert store.list_prices() == table
    store.replace_prices(table[1:])
    assert store.list_prices() == table[1:]


def test_eval_gates_are_kept_per_flag_and_environment_oldest_first(store: Any) -> None:
    from datetime import timedelta

    from ramplight.core.gate import GateRecord

    def record(i: int, environment: str, passed: bool) -> GateRecord:
        result = {"control": "control", "candidate": "candidate", "scores": [], "passed": passed}
        return GateRecord(
            f"g{i}", NOW + timedelta(minutes=i), "f", environment, "cli", passed, result, run_id=f"r{i}"
        )

    gates = [record(2, "production", False), record(1, "production", True), record(3, "staging", True)]
    for gate in gates:
        store.record_gate(gate)
    assert store.eval_gates("f", "production") == [gates[1], gates[0]]
    assert store.eval_gates("f") == [gates[1], gates[0], gates[2]]
    assert store.eval_gates("other") == []


def test_every_control_store_method_is_routed_to_the_control_plane_when_the_planes_are_split() -> None:
    from ramplight.store.base import ControlStore
    from ramplight.store.split import CONTROL, SplitStore

    declared = {name for name in vars(ControlStore) if not name.startswith("_")}
    assert declared - CONTROL - set(vars(SplitStore)) == set()  # the split store closes both itself


def test_postgres_notifies_other_processes_of_each_commit(tmp_path: Path) -> None:
    from ramplight.store.postgres import PostgresControlStore

    with pg.schema_url() as url:
        writer = PostgresControlStore(url, audit_secret=tmp_path / "s")
        reader = PostgresControlStore(url, audit_secret=tmp_path / "s")
        heard = threading.Event()
        calls: list[float] = []

        def changed() -> None:
            calls.append(time.monotonic())
            heard.set()

        stop = reader.listen(changed)
        try:
            assert heard.wait(5), "the listener never connected"
            control.ensure_default_environments(writer)
            time.sleep(0.5)  # those commits' notifications arrive first
            heard.clear()
            calls.clear()
            before = time.monotonic()
            flag = control.create_flag(writer, flag_doc(), actor="ana")
            committed = time.monotonic()
            assert heard.wait(2), "no notification within 2 s of a commit"
            assert before <= calls[0] and calls[0] - committed < 1.0
            assert reader.get_flag(flag.key) == flag
        finally:
            stop()
            writer.close()
            reader.close()


def test_apply_is_all_or_nothing(store: Any) -> None:
    """A plan refused after its flag (and another) were written undoes both flags and their
    change rows; the same file with a valid plan applies whole, the plan seeing its new flag."""
    from ramplight import release

    flags = [flag_doc("first_flag"), flag_doc("second_flag")]
    refused = [{"flag_key": "first_flag", "guardrails": [{"metric": "nope", "margin": 0.05}]}]
    with pytest.raises(ValidationError, match="nope"):
        release.apply_documents(store, [], flags, refused, actor="ana")
    assert store.list_flags() == []
    assert store.flag_changes() == []
    assert store.get_plan("first_flag", "production") is None

    applied = release.apply_documents(store, [], flags, [{"flag_key": "first_flag"}], actor="ana")
    assert [(r["key"], r["action"]) for r in applied] == [
        ("first_flag", "create"),
        ("second_flag", "create"),
        ("first_flag@production", "create"),
    ]
    assert [f.key for f in store.list_flags()] == ["first_flag", "second_flag"]
    assert store.get_plan("first_flag", "production").version == 1
    assert verify_changes(store.flag_changes(), store.audit_key).ok


# -- one server at a time ------------------------------------------------------------------


def test_one_store_of_a_control_plane_leads_a_role_until_it_closes(
    backend: tuple[str, str | None], tmp_path: Path
) -> None:
    kind, url = backend
    first = open_control(kind, tmp_path, url)
    try:
        assert first.try_lead("guardian") and first.try_lead("guardian")  # kept, asked again
        if kind == "duckdb":
            return  # one process holds an embedded database: it leads, and nobody else can ask
        second = open_control(kind, tmp_path, url)
        try:
            assert not second.try_lead("guardian")
            assert second.try_lead("other role")
            assert not first.try_lead("other role")
            first.close()
            assert second.try_lead("guardian")  # the lock went with the first store's session
        finally:
            second.close()
    finally:
        first.close()


def test_a_leader_that_loses_its_connection_loses_the_lead(tmp_path: Path) -> None:
    import psycopg

    with pg.schema_url() as url:
        first = open_control("postgres", tmp_path, url)
        second = open_control("postgres", tmp_path, url)
        try:
            assert first.try_lead("guardian")
            held = (
                "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted AND pid <> pg_backend_pid()"
                " AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
            )
            with psycopg.connect(url, autocommit=True) as admin:
                (pid,) = [row[0] for row in admin.execute(held).fetchall()]
                assert admin.execute("SELECT pg_terminate_backend(%s)", [pid]).fetchone() == (True,)
                deadline = time.monotonic() + 10  # the backend ends, and its locks with it, shortly after
                while admin.execute(held).fetchall():
                    assert time.monotonic() < deadline, "the terminated backend still holds its lock"
                    time.sleep(0.01)
            assert second.try_lead("guardian")
            assert not first.try_lead("guardian")  # noticed the lost session; the second leads
            second.close()
            assert first.try_lead("guardian")  # and takes over again when the second stops
        finally:
            first.close()
            second.close()


def test_one_at_a_time_holds_a_role_across_stores_of_one_control_plane(
    backend: tuple[str, str | None], tmp_path: Path
) -> None:
    kind, url = backend
    first = open_control(kind, tmp_path, url)
    # A second server's store over PostgreSQL; the same store from another thread when embedded.
    second = first if kind == "duckdb" else open_control(kind, tmp_path, url)
    entered, done = threading.Event(), threading.Event()

    def other() -> None:
        with second.one_at_a_time("guardian"):
            entered.set()
        done.set()

    try:
        with first.one_at_a_time("guardian"):
            thread = threading.Thread(target=other)
            thread.start()
            assert not entered.wait(0.5)  # waits while the first holds it
            with second.one_at_a_time("another role"):
                pass  # other roles are not held
        assert entered.wait(10) and done.wait(10)
        thread.join()
        with first.one_at_a_time("guardian"):  # released by the other in turn
            pass
    finally:
        if second is not first:
            second.close()
        first.close()
