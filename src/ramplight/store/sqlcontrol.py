"""The control plane in portable SQL, shared by every store that keeps it (DuckDB, PostgreSQL).

Flags, segments, metrics, plans, change requests and API keys are versioned documents written
with compare-and-set; flag changes and decisions are hash chains, MACed with the audit secret.
A backend supplies the plumbing: `_transaction()` (a cursor in one transaction, `?`
placeholders), `_reading()` (a cursor for consistent reads), `_rows`/`_row`, and two
concurrency hooks — `_for_update` (row locks on the versions a write compares against) and
`_lock_chain` (one writer at a time appends to an audit chain). DuckDB serialises writers in
the process, so its hooks are empty; PostgreSQL is shared by several server processes, so its
hooks take row locks.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from datetime import UTC, datetime
from typing import Any, Protocol

import msgspec

from ramplight.core.audit import (
    GENESIS_HASH,
    AuditHead,
    Chain,
    Decision,
    FlagChange,
    change_hash,
    change_mac,
    decision_hash,
    decision_mac,
    make_head,
)
from ramplight.core.errors import ConflictError, NotFoundError
from ramplight.core.flags import Flag, Segment
from ramplight.core.gate import GateRecord
from ramplight.core.metrics import Metric
from ramplight.core.plan import Plan
from ramplight.core.prices import Price
from ramplight.core.sources import Source
from ramplight.store.base import ApiKey, ChangeRequest, Environment, Session, User

_flag_decoder = msgspec.json.Decoder(Flag)
_segment_decoder = msgspec.json.Decoder(Segment)
_metric_decoder = msgspec.json.Decoder(Metric)
_plan_decoder = msgspec.json.Decoder(Plan)
_source_decoder = msgspec.json.Decoder(Source)
_price_decoder = msgspec.json.Decoder(Price)
_gate_decoder = msgspec.json.Decoder(GateRecord)
_json = msgspec.json.Encoder()


def _json_or_none(value: Any) -> str | None:
    return None if value is None else _json.encode(value).decode()


def _decode_or_none(value: str | None) -> Any:
    return None if value is None else msgspec.json.decode(value)


_ROLES_LOCK = threading.Lock()
"""Guards the creation of a store's `one_at_a_time` locks."""


class Cursor(Protocol):
    """The part of a DB-API cursor the control plane uses (`execute` returns the cursor)."""

    def execute(self, sql: str, params: Sequence[Any] = ...) -> Any: ...
    def fetchone(self) -> Any: ...
    def fetchall(self) -> list[Any]: ...


class SqlControlPlane(ABC):
    """Control-plane reads and writes; see the module docstring for what a backend supplies."""

    audit_key: bytes | None
    _pending_heads: list[AuditHead]
    _for_update: str = ""
    """Appended to the SELECT of the version a write compares against (" FOR UPDATE" on PostgreSQL)."""

    @abstractmethod
    def _transaction(self) -> AbstractContextManager[Cursor]:
        """A cursor in one transaction (joining this thread's open one, inside `atomic()`)."""

    @abstractmethod
    def _reading(self) -> AbstractContextManager[Cursor]:
        """A cursor for consistent reads (the open transaction's, inside `atomic()`)."""

    @abstractmethod
    def _rows(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """Every row of a read."""

    def _row(self, sql: str, params: Sequence[Any] = ()) -> tuple[Any, ...] | None:
        rows = self._rows(sql, params)
        return rows[0] if rows else None

    def _lock_chain(self, cur: Cursor, chain: Chain) -> None:
        """Hold the right to append to `chain` until the transaction ends. By default nothing to
        do: a backend whose writers are serialised in the process (DuckDB) already holds it;
        a shared database (PostgreSQL) locks the chain's row."""
        del cur, chain

    @contextmanager
    def atomic(self) -> Iterator[None]:
        """Every control-plane write of this thread inside the block commits together, or none
        does (`apply` of a file: its metrics, flags and plans). Reads inside see those writes."""
        with self._transaction():
            yield

    def try_lead(self, role: str) -> bool:
        """An embedded database is held by one process: it leads every role."""
        del role
        return True

    @contextmanager
    def one_at_a_time(self, role: str) -> Iterator[None]:
        """Among this process's threads (the one process an embedded database has)."""
        with _ROLES_LOCK:  # one lock a role, kept with the store (none outlives it)
            locks: dict[str, threading.Lock] = self.__dict__.setdefault("_role_locks", {})
            lock = locks.setdefault(role, threading.Lock())
        with lock:
            yield

    def list_environments(self) -> list[Environment]:
        rows = self._rows("SELECT key, name, created_at FROM environments ORDER BY created_at, key")
        return [Environment(*row) for row in rows]

    def create_environment(self, env: Environment) -> None:
        with self._transaction() as cur:
            if cur.execute(
                "SELECT 1 FROM environments WHERE key = ?" + self._for_update, [env.key]
            ).fetchone():
                raise ConflictError(f"environment {env.key!r} already exists")
            cur.execute("INSERT INTO environments VALUES (?, ?, ?)", [env.key, env.name, env.created_at])

    def get_flag(self, key: str) -> Flag | None:
        row = self._row("SELECT doc FROM flags WHERE key = ?", [key])
        return _flag_decoder.decode(row[0]) if row else None

    def list_flags(self, include_archived: bool = False) -> list[Flag]:
        where = "" if include_archived else "WHERE NOT archived"
        rows = self._rows(f"SELECT doc FROM flags {where} ORDER BY key")
        return [_flag_decoder.decode(row[0]) for row in rows]

    def save_flag(self, flag: Flag, expected_version: int | None, changes: Sequence[FlagChange]) -> None:
        """Compare-and-set on `version`; the flag and its changes commit together or not at all."""
        with self._transaction() as cur:
            self._write_flag(cur, flag, expected_version)
            self._append_changes(cur, changes)

    def _write_flag(self, cur: Cursor, flag: Flag, expected_version: int | None) -> None:
        now = datetime.now(UTC)
        row = cur.execute("SELECT version FROM flags WHERE key = ?" + self._for_update, [flag.key]).fetchone()
        current = row[0] if row else None
        if current != expected_version:
            if expected_version is None:
                raise ConflictError(f"flag {flag.key!r} already exists (version {current})")
            if current is None:
                raise ConflictError(f"flag {flag.key!r} does not exist")
            raise ConflictError(
                f"flag {flag.key!r} is at version {current}, not {expected_version}: "
                "someone else changed it; reload and retry"
            )
        doc = _json.encode(flag).decode()
        if current is None:
            cur.execute(
                "INSERT INTO flags VALUES (?, ?, ?, ?, ?, ?)",
                [flag.key, flag.version, flag.archived, doc, now, now],
            )
        else:
            cur.execute(
                "UPDATE flags SET version = ?, archived = ?, doc = ?, updated_at = ? WHERE key = ?",
                [flag.version, flag.archived, doc, now, flag.key],
            )

    def _append_changes(self, cur: Cursor, changes: Sequence[FlagChange]) -> None:
        if not changes:
            return
        self._lock_chain(cur, "flag_changes")
        last = cur.execute("SELECT seq, hash FROM flag_changes ORDER BY seq DESC LIMIT 1").fetchone()
        seq, prev = (last[0], last[1]) if last else (0, GENESIS_HASH)
        flag_last: dict[str, str] = {}
        for change in changes:
            seq += 1
            if change.flag_key not in flag_last:
                row = cur.execute(
                    "SELECT hash FROM flag_changes WHERE flag_key = ? ORDER BY seq DESC LIMIT 1",
                    [change.flag_key],
                ).fetchone()
                flag_last[change.flag_key] = row[0] if row else GENESIS_HASH
            linked = dataclasses.replace(
                change, seq=seq, prev_hash=prev, flag_prev_hash=flag_last[change.flag_key], hash_version=2
            )
            linked = dataclasses.replace(linked, hash=change_hash(linked, prev))
            mac = change_mac(self.audit_key, linked) if self.audit_key is not None else None
            cur.execute(
                "INSERT INTO flag_changes (change_id, seq, ts, environment, flag_key, version, actor, action,"
                " before, after, reason, prev_hash, hash, flag_prev_hash, hash_version, mac)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    linked.change_id,
                    seq,
                    linked.ts,
                    linked.environment,
                    linked.flag_key,
                    linked.version,
                    linked.actor,
                    linked.action,
                    _json_or_none(linked.before),
                    _json_or_none(linked.after),
                    linked.reason,
                    prev,
                    linked.hash,
                    linked.flag_prev_hash,
                    2,
                    mac,
                ],
            )
            prev = flag_last[change.flag_key] = linked.hash
        if self.audit_key is not None:
            self._pending_heads.append(make_head(self.audit_key, "flag_changes", seq, prev))

    def flag_changes(self, flag_key: str | None = None) -> list[FlagChange]:
        with self._reading() as cur:
            return self._read_changes(cur, flag_key)

    def _read_changes(self, cur: Cursor, flag_key: str | None) -> list[FlagChange]:
        sql = (
            "SELECT change_id, ts, environment, flag_key, version, actor, action, before, after,"
            " reason, prev_hash, hash, seq, flag_prev_hash, hash_version, mac FROM flag_changes"
        )
        params: list[Any] = []
        if flag_key is not None:
            sql += " WHERE flag_key = ?"
            params.append(flag_key)
        rows = cur.execute(sql + " ORDER BY seq", params).fetchall()
        return [
            FlagChange(
                change_id=r[0],
                ts=r[1],
                environment=r[2],
                flag_key=r[3],
                version=r[4],
                actor=r[5],
                action=r[6],
                before=_decode_or_none(r[7]),
                after=_decode_or_none(r[8]),
                reason=r[9],
                prev_hash=r[10],
                hash=r[11],
                seq=r[12],
                flag_prev_hash=r[13],
                hash_version=r[14],
                mac=r[15],
            )
            for r in rows
        ]

    def list_segments(self) -> list[Segment]:
        return [_segment_decoder.decode(r[0]) for r in self._rows("SELECT doc FROM segments ORDER BY key")]

    def save_segment(self, segment: Segment, expected_version: int | None) -> None:
        now = datetime.now(UTC)
        with self._transaction() as cur:
            row = cur.execute(
                "SELECT version FROM segments WHERE key = ?" + self._for_update, [segment.key]
            ).fetchone()
            current = row[0] if row else None
            if current != expected_version:
                raise ConflictError(
                    f"segment {segment.key!r} is at version {current}, not {expected_version}"
                )
            doc = _json.encode(segment).decode()
            cur.execute("DELETE FROM segments WHERE key = ?", [segment.key])
            cur.execute("INSERT INTO segments VALUES (?, ?, ?, ?)", [segment.key, segment.version, doc, now])

    def list_metrics(self) -> list[Metric]:
        return [_metric_decoder.decode(r[0]) for r in self._rows("SELECT doc FROM metrics ORDER BY key")]

    def save_metric(self, metric: Metric, expected_version: int | None) -> None:
        now = datetime.now(UTC)
        with self._transaction() as cur:
            row = cur.execute(
                "SELECT version FROM metrics WHERE key = ?" + self._for_update, [metric.key]
            ).fetchone()
            current = row[0] if row else None
            if current != expected_version:
                raise ConflictError(f"metric {metric.key!r} is at version {current}, not {expected_version}")
            cur.execute("DELETE FROM metrics WHERE key = ?", [metric.key])
            cur.execute(
                "INSERT INTO metrics VALUES (?, ?, ?, ?)",
                [metric.key, metric.version, _json.encode(metric).decode(), now],
            )

    def list_prices(self) -> list[Price]:
        return [_price_decoder.decode(r[0]) for r in self._rows("SELECT doc FROM prices ORDER BY model")]

    def replace_prices(self, prices: Sequence[Price]) -> None:
        """The whole table, in one transaction."""
        now = datetime.now(UTC)
        with self._transaction() as cur:
            cur.execute("DELETE FROM prices")
            for price in prices:
                cur.execute(
                    "INSERT INTO prices VALUES (?, ?, ?)", [price.model, _json.encode(price).decode(), now]
                )

    def record_gate(self, record: GateRecord) -> None:
        with self._transaction() as cur:
            cur.execute(
                "INSERT INTO eval_gates VALUES (?, ?, ?, ?, ?, ?)",
                [record.gate_id, record.ts, record.flag_key, record.environment, record.passed,
                 _json.encode(record).decode()],
            )  # fmt: skip

    def eval_gates(self, flag_key: str, environment: str | None = None) -> list[GateRecord]:
        where, params = (
            ("flag_key = ?", [flag_key])
            if environment is None
            else ("flag_key = ? AND environment = ?", [flag_key, environment])
        )
        rows = self._rows(f"SELECT doc FROM eval_gates WHERE {where} ORDER BY ts, gate_id", params)
        return [_gate_decoder.decode(r[0]) for r in rows]

    _sources_cache: tuple[float, list[Source]] | None = None
    SOURCES_TTL_S = 1.0
    """How long a read of the sources serves every statement of a readout: a change made here is
    seen at once, one made by another server (a shared PostgreSQL) within this time."""

    def list_sources(self) -> list[Source]:
        cached = self._sources_cache
        now = time.monotonic()
        if cached is not None and now - cached[0] < self.SOURCES_TTL_S:
            return list(cached[1])
        sources = [_source_decoder.decode(r[0]) for r in self._rows("SELECT doc FROM sources ORDER BY key")]
        self._sources_cache = (now, sources)
        return list(sources)

    def save_source(self, source: Source, expected_version: int | None) -> None:
        """Create (`expected_version` None) or replace the source at that version."""
        self._sources_cache = None
        now = datetime.now(UTC)
        with self._transaction() as cur:
            row = cur.execute(
                "SELECT version FROM sources WHERE key = ?" + self._for_update, [source.key]
            ).fetchone()
            current = row[0] if row else None
            if current != expected_version:
                raise ConflictError(f"source {source.key!r} is at version {current}, not {expected_version}")
            cur.execute("DELETE FROM sources WHERE key = ?", [source.key])
            cur.execute(
                "INSERT INTO sources VALUES (?, ?, ?, ?)",
                [source.key, source.version, _json.encode(source).decode(), now],
            )

    def delete_source(self, key: str) -> bool:
        """Remove the source; False when there is none."""
        self._sources_cache = None
        with self._transaction() as cur:
            found = cur.execute(
                "SELECT version FROM sources WHERE key = ?" + self._for_update, [key]
            ).fetchone()
            if found is not None:
                cur.execute("DELETE FROM sources WHERE key = ?", [key])
        return found is not None

    def get_plan(self, flag_key: str, environment: str) -> Plan | None:
        row = self._row(
            "SELECT doc FROM plans WHERE flag_key = ? AND environment = ?", [flag_key, environment]
        )
        return _plan_decoder.decode(row[0]) if row else None

    def list_plans(self) -> list[Plan]:
        rows = self._rows("SELECT doc FROM plans ORDER BY flag_key, environment")
        return [_plan_decoder.decode(r[0]) for r in rows]

    def save_plan(self, plan: Plan, expected_version: int | None, change: FlagChange) -> None:
        """Compare-and-set on the plan's version; its change row commits with it."""
        with self._transaction() as cur:
            row = cur.execute(
                "SELECT version FROM plans WHERE flag_key = ? AND environment = ?" + self._for_update,
                [plan.flag_key, plan.environment],
            ).fetchone()
            current = row[0] if row else None
            if current != expected_version:
                raise ConflictError(
                    f"the plan for {plan.flag_key!r} in {plan.environment!r} is at version {current}, "
                    f"not {expected_version}: someone else changed it; reload and retry"
                )
            cur.execute(
                "DELETE FROM plans WHERE flag_key = ? AND environment = ?", [plan.flag_key, plan.environment]
            )
            cur.execute(
                "INSERT INTO plans VALUES (?, ?, ?, ?, ?)",
                [
                    plan.flag_key,
                    plan.environment,
                    plan.version,
                    _json.encode(plan).decode(),
                    datetime.now(UTC),
                ],
            )
            self._append_changes(cur, [change])

    def record_decision(
        self,
        decision: Decision,
        flag: Flag | None,
        expected_version: int | None,
        changes: Sequence[FlagChange],
    ) -> Decision:
        with self._transaction() as cur:
            if flag is not None:
                self._write_flag(cur, flag, expected_version)
                self._append_changes(cur, changes)
            self._lock_chain(cur, "decisions")
            last = cur.execute("SELECT seq, hash FROM decisions ORDER BY seq DESC LIMIT 1").fetchone()
            seq, prev = (last[0] + 1, last[1]) if last else (1, GENESIS_HASH)
            linked = dataclasses.replace(decision, seq=seq, prev_hash=prev, hash_version=2)
            linked = dataclasses.replace(linked, hash=decision_hash(linked, prev))
            if self.audit_key is not None:
                linked = dataclasses.replace(linked, mac=decision_mac(self.audit_key, linked))
                self._pending_heads.append(make_head(self.audit_key, "decisions", seq, linked.hash))
            cur.execute(
                "INSERT INTO decisions (decision_id, seq, ts, environment, flag_key, state, actor, forced,"
                " reason, recommendation, evidence, sql, fingerprint, flag_version, rollout_before,"
                " rollout_after, prev_hash, hash, hash_version, mac)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    linked.decision_id,
                    seq,
                    linked.ts,
                    linked.environment,
                    linked.flag_key,
                    linked.state,
                    linked.actor,
                    linked.forced,
                    linked.reason,
                    _json_or_none(linked.recommendation),
                    _json_or_none(linked.evidence),
                    linked.sql,
                    linked.fingerprint,
                    linked.flag_version,
                    _json_or_none(linked.rollout_before),
                    _json_or_none(linked.rollout_after),
                    prev,
                    linked.hash,
                    2,
                    linked.mac,
                ],
            )
        return linked

    def decisions(self, flag_key: str | None = None) -> list[Decision]:
        with self._reading() as cur:
            return self._read_decisions(cur, flag_key)

    def _read_decisions(self, cur: Cursor, flag_key: str | None) -> list[Decision]:
        sql = (
            "SELECT decision_id, ts, environment, flag_key, state, actor, forced, reason, recommendation,"
            " evidence, sql, fingerprint, flag_version, rollout_before, rollout_after, prev_hash, hash,"
            " seq, hash_version, mac FROM decisions"
        )
        params: list[Any] = []
        if flag_key is not None:
            sql += " WHERE flag_key = ?"
            params.append(flag_key)
        rows = cur.execute(sql + " ORDER BY seq", params).fetchall()
        return [
            Decision(
                decision_id=r[0],
                ts=r[1],
                environment=r[2],
                flag_key=r[3],
                state=r[4],
                actor=r[5],
                forced=r[6],
                reason=r[7],
                recommendation=_decode_or_none(r[8]),
                evidence=_decode_or_none(r[9]),
                sql=r[10],
                fingerprint=r[11],
                flag_version=r[12],
                rollout_before=_decode_or_none(r[13]),
                rollout_after=_decode_or_none(r[14]),
                prev_hash=r[15],
                hash=r[16],
                seq=r[17],
                hash_version=r[18],
                mac=r[19],
            )
            for r in rows
        ]

    _REQUEST_COLUMNS = (
        "request_id, flag_key, environment, action, percent, reason, proposed_by, proposer_id,"
        " proposed_at, state, approvals, required, decided_at, decision_id"
    )

    def save_request(self, request: ChangeRequest, expected_state: str | None) -> None:
        with self._transaction() as cur:
            row = cur.execute(
                "SELECT state FROM change_requests WHERE request_id = ?" + self._for_update,
                [request.request_id],
            ).fetchone()
            current = row[0] if row else None
            if current != expected_state:
                raise ConflictError(
                    f"change request {request.request_id} is {current or 'missing'}, not {expected_state}"
                )
            cur.execute("DELETE FROM change_requests WHERE request_id = ?", [request.request_id])
            cur.execute(
                f"INSERT INTO change_requests ({self._REQUEST_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    request.request_id,
                    request.flag_key,
                    request.environment,
                    request.action,
                    request.percent,
                    request.reason,
                    request.proposed_by,
                    request.proposer_id,
                    request.proposed_at,
                    request.state,
                    _json.encode(request.approvals).decode(),
                    request.required,
                    request.decided_at,
                    request.decision_id,
                ],
            )

    def _requests(self, where: str, params: Sequence[Any]) -> list[ChangeRequest]:
        rows = self._rows(
            f"SELECT {self._REQUEST_COLUMNS} FROM change_requests {where} ORDER BY proposed_at", params
        )
        return [
            ChangeRequest(
                request_id=r[0],
                flag_key=r[1],
                environment=r[2],
                action=r[3],
                percent=r[4],
                reason=r[5],
                proposed_by=r[6],
                proposer_id=r[7],
                proposed_at=r[8],
                state=r[9],
                approvals=msgspec.json.decode(r[10]),
                required=r[11],
                decided_at=r[12],
                decision_id=r[13],
            )
            for r in rows
        ]

    def get_request(self, request_id: str) -> ChangeRequest | None:
        found = self._requests("WHERE request_id = ?", [request_id])
        return found[0] if found else None

    def list_requests(self, flag_key: str | None = None) -> list[ChangeRequest]:
        return self._requests("WHERE flag_key = ?", [flag_key]) if flag_key else self._requests("", [])

    def create_api_key(self, key: ApiKey) -> None:
        with self._transaction() as cur:
            cur.execute(
                "INSERT INTO api_keys VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    key.id,
                    key.kind,
                    key.environment,
                    key.name,
                    key.prefix,
                    key.key_hash,
                    key.created_at,
                    key.revoked_at,
                    key.can_force,
                ],
            )

    def _api_keys(self, where: str, params: Sequence[Any]) -> list[ApiKey]:
        rows = self._rows(
            "SELECT id, kind, environment, name, prefix, key_hash, created_at, revoked_at, can_force"
            f" FROM api_keys {where} ORDER BY created_at, id",
            params,
        )
        return [ApiKey(*row) for row in rows]

    def find_api_key(self, key_hash: str) -> ApiKey | None:
        found = self._api_keys("WHERE key_hash = ?", [key_hash])
        return found[0] if found else None

    def list_api_keys(self) -> list[ApiKey]:
        return self._api_keys("", [])

    def revoke_api_key(self, key_id: str, at: datetime) -> None:
        with self._transaction() as cur:
            cur.execute(
                "UPDATE api_keys SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL", [at, key_id]
            )

    _USER_COLUMNS = "id, name, role, password_hash, created_at, disabled_at, last_sign_in_at"

    def create_user(self, user: User) -> None:
        with self._transaction() as cur:
            if cur.execute("SELECT 1 FROM users WHERE name = ?" + self._for_update, [user.name]).fetchone():
                raise ConflictError(f"user {user.name!r} already exists")
            cur.execute(
                f"INSERT INTO users ({self._USER_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?)",
                [
                    user.id,
                    user.name,
                    user.role,
                    user.password_hash,
                    user.created_at,
                    user.disabled_at,
                    user.last_sign_in_at,
                ],
            )

    def update_user(self, user: User, previous: User | None = None) -> None:
        """Replace the user's role and `disabled_at` (compared with `previous` first, under the
        row's lock); disabling deletes their sessions too."""
        with self._transaction() as cur:
            found = cur.execute(
                "SELECT role, disabled_at FROM users WHERE id = ?" + self._for_update, [user.id]
            ).fetchone()
            if not found:
                raise NotFoundError(f"no user {user.id!r}")
            if previous is not None and (found[0], found[1]) != (previous.role, previous.disabled_at):
                raise ConflictError(
                    f"user {user.name!r} was changed meanwhile (now {found[0]}"
                    f"{', disabled' if found[1] is not None else ''}): look again, then change"
                )
            cur.execute(
                "UPDATE users SET role = ?, disabled_at = ? WHERE id = ?",
                [user.role, user.disabled_at, user.id],
            )
            if user.disabled_at is not None:
                cur.execute("DELETE FROM sessions WHERE user_id = ?", [user.id])

    def _users(self, where: str, params: Sequence[Any]) -> list[User]:
        rows = self._rows(f"SELECT {self._USER_COLUMNS} FROM users {where} ORDER BY name", params)
        return [User(*row) for row in rows]

    def get_user(self, user_id: str) -> User | None:
        found = self._users("WHERE id = ?", [user_id])
        return found[0] if found else None

    def find_user(self, name: str) -> User | None:
        found = self._users("WHERE name = ?", [name])
        return found[0] if found else None

    def list_users(self) -> list[User]:
        return self._users("", [])

    def create_session(self, session: Session) -> None:
        with self._transaction() as cur:
            cur.execute("DELETE FROM sessions WHERE expires_at < ?", [session.created_at])
            cur.execute(
                "INSERT INTO sessions (token_hash, user_id, key_id, created_at, expires_at) VALUES (?, ?, ?, ?, ?)",
                [session.token_hash, session.user_id, session.key_id, session.created_at, session.expires_at],
            )
            if session.user_id is not None:
                cur.execute(
                    "UPDATE users SET last_sign_in_at = ? WHERE id = ?", [session.created_at, session.user_id]
                )

    def find_session(self, token_hash: str) -> Session | None:
        row = self._row(
            "SELECT token_hash, user_id, key_id, created_at, expires_at FROM sessions WHERE token_hash = ?",
            [token_hash],
        )
        return Session(*row) if row else None

    def delete_session(self, token_hash: str) -> None:
        with self._transaction() as cur:
            cur.execute("DELETE FROM sessions WHERE token_hash = ?", [token_hash])
