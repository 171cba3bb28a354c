"""DuckDB implementation of `Store`: versioned migrations, atomic flag writes, bulk loads."""

from __future__ import annotations

import contextlib
import dataclasses
import secrets
import shutil
import tempfile
import threading
import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import duckdb
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
    verify_changes,
    verify_decisions,
)
from ramplight.core.errors import ConflictError, QueryError, StoreError
from ramplight.core.flags import Flag, Segment
from ramplight.core.metrics import Metric
from ramplight.core.plan import Plan
from ramplight.store.audit_files import append_heads, load_secret, read_heads
from ramplight.store.base import ApiKey, ChangeRequest, Environment, EvidenceKind, SqlSandbox

# Column types of the NDJSON log segments, per table (the loader's schema).
EVIDENCE_COLUMNS: dict[EvidenceKind, dict[str, str]] = {
    "exposures": {
        "event_id": "VARCHAR",
        "ts": "TIMESTAMPTZ",
        "received_at": "TIMESTAMPTZ",
        "environment": "VARCHAR",
        "flag_key": "VARCHAR",
        "flag_version": "INTEGER",
        "assignment_unit": "VARCHAR",
        "unit_id": "VARCHAR",
        "assigned_variation": "VARCHAR",
        "served_variation": "VARCHAR",
        "fallback_reason": "VARCHAR",
        "behavior": "JSON",
        "ids": "JSON",
        "attributes": "JSON",
        "trace_id": "VARCHAR",
        "sdk": "VARCHAR",
        "identity": "UBIGINT",
        "payload_hash": "UBIGINT",
    },
    "events": {
        "event_id": "VARCHAR",
        "ts": "TIMESTAMPTZ",
        "received_at": "TIMESTAMPTZ",
        "environment": "VARCHAR",
        "name": "VARCHAR",
        "unit_id": "VARCHAR",
        "assignment_unit": "VARCHAR",
        "ids": "JSON",
        "value": "DOUBLE",
        "properties": "JSON",
        "flag_key": "VARCHAR",
        "variation": "VARCHAR",
        "trace_id": "VARCHAR",
        "identity": "UBIGINT",
        "payload_hash": "UBIGINT",
    },
    "evals": {
        "event_id": "VARCHAR",
        "ts": "TIMESTAMPTZ",
        "received_at": "TIMESTAMPTZ",
        "environment": "VARCHAR",
        "unit_id": "VARCHAR",
        "trace_id": "VARCHAR",
        "span_id": "VARCHAR",
        "name": "VARCHAR",
        "score": "DOUBLE",
        "label": "VARCHAR",
        "evaluator": "VARCHAR",
        "evaluator_version": "VARCHAR",
        "flag_key": "VARCHAR",
        "variation": "VARCHAR",
        "comment": "VARCHAR",
        "identity": "UBIGINT",
        "payload_hash": "UBIGINT",
    },
}

_flag_decoder = msgspec.json.Decoder(Flag)
_segment_decoder = msgspec.json.Decoder(Segment)
_metric_decoder = msgspec.json.Decoder(Metric)
_plan_decoder = msgspec.json.Decoder(Plan)
_json = msgspec.json.Encoder()


def _columns_literal(columns: dict[str, str]) -> str:
    # Column names and types come from the constant above, never from input.
    return "{" + ", ".join(f"'{name}': '{kind}'" for name, kind in columns.items()) + "}"


def migrations() -> list[tuple[int, str, str]]:
    """(version, name, sql) of every migration shipped beside this backend, in order."""
    found = []
    for entry in resources.files("ramplight.store.duckdb").joinpath("migrations").iterdir():
        if entry.name.endswith(".sql"):
            version = int(entry.name.split("_", 1)[0])
            found.append((version, entry.name, entry.read_text()))
    return sorted(found)


def _json_or_none(value: Any) -> str | None:
    return None if value is None else _json.encode(value).decode()


def _decode_or_none(value: str | None) -> Any:
    return None if value is None else msgspec.json.decode(value)


def _sql_string(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _reason(exc: duckdb.Error) -> str:
    """The engine's message without the echoed query and caret lines."""
    return str(exc).strip().split("\n")[0]


class _Closed:
    """Stands in for the engine after `close`: a store object that outlives it (held by a
    traceback, say) then holds no DuckDB object at exit, which nanobind reports as leaked."""

    def __getattr__(self, name: str) -> Any:
        raise StoreError("the store is closed")


class DuckDBStore:
    """One DuckDB file. Writes are serialised by a lock; reads use their own cursors.

    The engine runs locked down: no extension installs, no file or network access outside the
    store's own directories (the ingestion log, scratch space for exports and spills), and its
    configuration locked after open — so nothing that reaches it as SQL can read server files,
    fetch URLs, attach databases or turn those settings back on.

    Audit rows are MACed with the secret in `audit_secret` (default `<db>.secret`, created 0600)
    and each write appends the chains' heads to `<db>.audit-head`, outside the database.
    """

    def __init__(
        self,
        path: str | Path,
        read_only: bool = False,
        *,
        sandbox: SqlSandbox | None = None,
        allowed_directories: Sequence[str | Path] = (),
        audit_secret: str | Path | None = None,
    ) -> None:
        self.path = str(path)
        self.sandbox = sandbox or SqlSandbox()
        in_memory = self.path == ":memory:"
        try:
            if not in_memory:
                Path(self.path).parent.mkdir(parents=True, exist_ok=True)
            self._con = duckdb.connect(
                self.path,
                read_only=read_only,
                config={"autoinstall_known_extensions": False, "autoload_known_extensions": False},
            )
        except duckdb.Error as exc:
            raise StoreError(f"cannot open {self.path}: {exc}") from exc
        self._scratch = (
            Path(tempfile.mkdtemp(prefix="ramplight-scratch-")) if in_memory else Path(self.path + ".scratch")
        )
        default = () if in_memory else (Path(self.path + ".log"), Path(self.path + ".tmp"))
        self._lock_down([self._scratch, *default, *map(Path, allowed_directories)])
        self._lock = threading.RLock()
        self._cursors_lock = threading.Lock()
        self._local = threading.local()
        self._closed = False
        self._cursors: list[duckdb.DuckDBPyConnection] = []
        """Every per-thread cursor handed out, so `close` can close and drop them all."""
        self._pending_heads: list[AuditHead] = []
        self._memory_heads: list[AuditHead] = []
        self.head_path: Path | None = None if in_memory else Path(self.path + ".audit-head")
        self.audit_key: bytes | None = secrets.token_bytes(32) if in_memory else None
        if not in_memory:
            secret = Path(audit_secret) if audit_secret else Path(self.path + ".secret")
            sealed = self._has_sealed_rows()
            self.audit_key = load_secret(secret, create=not read_only and not sealed)
            if self.audit_key is None and sealed and not read_only:
                self._con.close()
                raise StoreError(
                    f"the audit secret {secret} is missing, but this database's audit log was sealed "
                    "with one: restore it from your backup, or point RAMPLIGHT_AUDIT_SECRET at it"
                )
        if not read_only:
            self.migrate()

    def _has_sealed_rows(self) -> bool:
        """Whether audit rows were MACed already (then a missing secret is lost, not new)."""
        row = self._con.execute(
            "SELECT count(*) FROM information_schema.columns WHERE table_name = 'flag_changes'"
            " AND column_name = 'mac'"
        ).fetchone()
        if not row or not row[0]:
            return False
        found = self._con.execute(
            "SELECT EXISTS (SELECT 1 FROM flag_changes WHERE mac IS NOT NULL)"
            " OR EXISTS (SELECT 1 FROM decisions WHERE mac IS NOT NULL)"
        ).fetchone()
        return bool(found and found[0])

    def _lock_down(self, directories: Sequence[Path]) -> None:
        """Turn external access off for this engine and lock its configuration (once per file:
        a second store on the same file shares the engine and its settings)."""
        locked = self._con.execute("SELECT current_setting('lock_configuration')").fetchone()
        if locked and locked[0]:
            return
        listed = ", ".join(_sql_string(str(d.resolve()) + "/") for d in directories)
        self._con.execute("SET GLOBAL TimeZone = 'UTC'")
        self._con.execute(f"SET allowed_directories = [{listed}]")
        self._con.execute("SET enable_external_access = false")
        self._con.execute("SET lock_configuration = true")

    # -- plumbing -------------------------------------------------------------------------

    def _cursor(self) -> duckdb.DuckDBPyConnection:
        cursor: duckdb.DuckDBPyConnection | None = getattr(self._local, "cursor", None)
        if cursor is None:
            cursor = self._local.cursor = self._new_cursor()
        return cursor

    def _new_cursor(self) -> duckdb.DuckDBPyConnection:
        cursor = self._con.cursor()
        with self._cursors_lock:  # not the write lock: a reader never waits for a load
            self._cursors.append(cursor)
        return cursor

    def _reader(self) -> duckdb.DuckDBPyConnection:
        """This thread's read-only cursor, apart from the one writes use."""
        cursor: duckdb.DuckDBPyConnection | None = getattr(self._local, "reader", None)
        if cursor is None:
            cursor = self._local.reader = self._new_cursor()
        return cursor

    @contextmanager
    def _transaction(self) -> Iterator[duckdb.DuckDBPyConnection]:
        with self._lock:
            cur = self._cursor()
            cur.execute("BEGIN TRANSACTION")
            try:
                yield cur
            except duckdb.ConstraintException as exc:
                cur.execute("ROLLBACK")
                raise ConflictError(f"conflicting write: {exc}") from exc
            except BaseException:
                self._pending_heads.clear()
                cur.execute("ROLLBACK")
                raise
            cur.execute("COMMIT")
            if self._pending_heads:
                self._log_heads(self._pending_heads)
                self._pending_heads.clear()

    def _log_heads(self, heads: Sequence[AuditHead], start: bool = False) -> None:
        """After a commit: the chains' new heads go to the head log outside the database."""
        if self.head_path is None:
            self._memory_heads = [*([] if start else self._memory_heads), *heads]
        else:
            append_heads(self.head_path, heads, start=start)

    def audit_heads(self) -> list[AuditHead] | None:
        """The head log, oldest first (None: there is none)."""
        return list(self._memory_heads) if self.head_path is None else read_heads(self.head_path)

    def migrate(self) -> list[int]:
        """Apply the migrations this file has not seen yet; return their versions."""
        with self._lock:
            self._con.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations ("
                " version INTEGER PRIMARY KEY, name VARCHAR NOT NULL, applied_at TIMESTAMPTZ NOT NULL)"
            )
            done = {row[0] for row in self._con.execute("SELECT version FROM schema_migrations").fetchall()}
            applied = []
            for version, name, sql in migrations():
                if version in done:
                    continue
                start: list[AuditHead] = []
                with self._transaction() as cur:
                    cur.execute(sql)
                    if version == 5:
                        start = self._seal_existing(cur)
                    cur.execute(
                        "INSERT INTO schema_migrations VALUES (?, ?, ?)",
                        [version, name, datetime.now(UTC)],
                    )
                if start:
                    self._log_heads(start, start=True)
                applied.append(version)
            return applied

    def _seal_existing(self, cur: duckdb.DuckDBPyConnection) -> list[AuditHead]:
        """Migration 0005: MAC the rows written before MACs existed — only the prefix of each chain
        that still verifies, so earlier tampering stays visible — and start the head log."""
        assert self.audit_key is not None
        key = self.audit_key
        changes = self._read_changes(cur, None)
        broken = verify_changes(changes).first_break
        intact = [c for c in changes if broken is None or broken.seq is None or c.seq < broken.seq]
        for c in intact:
            cur.execute(
                "UPDATE flag_changes SET mac = ? WHERE change_id = ?", [change_mac(key, c), c.change_id]
            )
        decisions = self._read_decisions(cur, None)
        broken = verify_decisions(decisions).first_break
        kept = [d for d in decisions if broken is None or broken.seq is None or d.seq < broken.seq]
        for d in kept:
            cur.execute(
                "UPDATE decisions SET mac = ? WHERE decision_id = ?", [decision_mac(key, d), d.decision_id]
            )
        ends: list[tuple[Chain, int, str]] = [
            ("flag_changes", changes[-1].seq, changes[-1].hash)
            if changes
            else ("flag_changes", 0, GENESIS_HASH),
            ("decisions", decisions[-1].seq, decisions[-1].hash)
            if decisions
            else ("decisions", 0, GENESIS_HASH),
        ]
        return [make_head(key, chain, seq, digest, "start") for chain, seq, digest in ends]

    def schema_version(self) -> int:
        row = self._cursor().execute("SELECT max(version) FROM schema_migrations").fetchone()
        return int(row[0]) if row and row[0] is not None else 0

    def close(self) -> None:
        """Close the engine and drop every DuckDB object this store holds, including the cursors
        of threads that outlive it (a server's worker threads)."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            with self._cursors_lock:
                for cursor in self._cursors:
                    # A cursor busy in another thread's call refuses; closing the engine ends it.
                    with contextlib.suppress(duckdb.Error):
                        cursor.close()
                self._cursors.clear()
            self._local = threading.local()
            self._con.close()
            self._con = _Closed()  # type: ignore[assignment]
        if self.path == ":memory:":
            shutil.rmtree(self._scratch, ignore_errors=True)

    def snapshot(self, directory: Path) -> dict[str, Any]:
        """Copy the database file (checkpointed; its WAL too if one is left) and the audit head log
        into `directory` under the write lock, so no commit lands between the copies: the copied
        head log ends exactly where the copied chains end. Readers and the ingest log go on."""
        if self.path == ":memory:":
            raise StoreError("an in-memory store has no file to back up")
        with self._lock:
            self._cursor().execute("CHECKPOINT")
            sources = [Path(self.path), Path(self.path + ".wal")]
            if self.head_path is not None:
                sources.append(self.head_path)
            copied = []
            for source in sources:
                if source.exists():
                    shutil.copyfile(source, directory / source.name)
                    copied.append(source.name)
            return {
                "database": Path(self.path).name,
                "files": copied,
                "schema_version": self.schema_version(),
                "counts": {kind: self.count(kind) for kind in EVIDENCE_COLUMNS},
            }

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        return self._cursor().execute(sql, list(params)).fetchall()

    def read(
        self, sql: str, params: Sequence[Any] | Mapping[str, Any] = (), timeout_s: float | None = None
    ) -> tuple[list[str], list[tuple[Any, ...]]]:
        cursor = self._reader()
        state = {"running": True}
        guard = threading.Lock()

        def stop() -> None:
            with guard:
                if state["running"]:
                    cursor.interrupt()

        timer = threading.Timer(timeout_s, stop) if timeout_s else None
        cursor.execute("BEGIN TRANSACTION READ ONLY")
        try:
            if timer is not None:
                timer.daemon = True
                timer.start()
            cursor.execute(sql, dict(params) if isinstance(params, Mapping) else list(params))
            names = [d[0] for d in cursor.description or ()]
            rows = cursor.fetchall()
            with guard:
                state["running"] = False
            return names, rows
        except duckdb.InterruptException as exc:
            raise QueryError(f"stopped after {timeout_s:g} s, the query time limit", timed_out=True) from exc
        except duckdb.Error as exc:
            raise QueryError(_reason(exc)) from exc
        finally:
            with guard:
                state["running"] = False
            if timer is not None:
                timer.cancel()
            cursor.execute("ROLLBACK")

    def scratch_dir(self) -> Path:
        """A directory the engine may read and write: stage files to load or export here."""
        self._scratch.mkdir(parents=True, exist_ok=True)
        return self._scratch

    def export(self, sql: str, path: Path, fmt: Literal["parquet", "csv"]) -> None:
        option = "FORMAT parquet" if fmt == "parquet" else "FORMAT csv, HEADER true"
        staged = self.scratch_dir() / f"{uuid.uuid4().hex}.{fmt}"
        cursor = self._reader()
        cursor.execute("BEGIN TRANSACTION READ ONLY")
        try:
            cursor.execute(f"COPY ({sql}) TO {_sql_string(str(staged.resolve()))} ({option})")
        except duckdb.Error as exc:
            raise QueryError(_reason(exc)) from exc
        finally:
            cursor.execute("ROLLBACK")
        try:
            shutil.move(staged, path)
        finally:
            staged.unlink(missing_ok=True)

    def connection(self) -> duckdb.DuckDBPyConnection:
        """A cursor for this thread (analysis runs its SQL here)."""
        return self._cursor()

    # -- control plane --------------------------------------------------------------------

    def list_environments(self) -> list[Environment]:
        rows = self.query("SELECT key, name, created_at FROM environments ORDER BY created_at, key")
        return [Environment(*row) for row in rows]

    def create_environment(self, env: Environment) -> None:
        with self._transaction() as cur:
            if cur.execute("SELECT 1 FROM environments WHERE key = ?", [env.key]).fetchone():
                raise ConflictError(f"environment {env.key!r} already exists")
            cur.execute("INSERT INTO environments VALUES (?, ?, ?)", [env.key, env.name, env.created_at])

    def get_flag(self, key: str) -> Flag | None:
        row = self._cursor().execute("SELECT doc FROM flags WHERE key = ?", [key]).fetchone()
        return _flag_decoder.decode(row[0]) if row else None

    def list_flags(self, include_archived: bool = False) -> list[Flag]:
        where = "" if include_archived else "WHERE NOT archived"
        rows = self.query(f"SELECT doc FROM flags {where} ORDER BY key")
        return [_flag_decoder.decode(row[0]) for row in rows]

    def save_flag(self, flag: Flag, expected_version: int | None, changes: Sequence[FlagChange]) -> None:
        """Compare-and-set on `version`; the flag and its changes commit together or not at all."""
        with self._transaction() as cur:
            self._write_flag(cur, flag, expected_version)
            self._append_changes(cur, changes)

    def _write_flag(self, cur: duckdb.DuckDBPyConnection, flag: Flag, expected_version: int | None) -> None:
        now = datetime.now(UTC)
        row = cur.execute("SELECT version FROM flags WHERE key = ?", [flag.key]).fetchone()
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

    def _append_changes(self, cur: duckdb.DuckDBPyConnection, changes: Sequence[FlagChange]) -> None:
        if not changes:
            return
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
        return self._read_changes(self._cursor(), flag_key)

    def _read_changes(self, cur: duckdb.DuckDBPyConnection, flag_key: str | None) -> list[FlagChange]:
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
        return [_segment_decoder.decode(r[0]) for r in self.query("SELECT doc FROM segments ORDER BY key")]

    def save_segment(self, segment: Segment, expected_version: int | None) -> None:
        now = datetime.now(UTC)
        with self._transaction() as cur:
            row = cur.execute("SELECT version FROM segments WHERE key = ?", [segment.key]).fetchone()
            current = row[0] if row else None
            if current != expected_version:
                raise ConflictError(
                    f"segment {segment.key!r} is at version {current}, not {expected_version}"
                )
            doc = _json.encode(segment).decode()
            cur.execute("DELETE FROM segments WHERE key = ?", [segment.key])
            cur.execute("INSERT INTO segments VALUES (?, ?, ?, ?)", [segment.key, segment.version, doc, now])

    def list_metrics(self) -> list[Metric]:
        return [_metric_decoder.decode(r[0]) for r in self.query("SELECT doc FROM metrics ORDER BY key")]

    def save_metric(self, metric: Metric, expected_version: int | None) -> None:
        now = datetime.now(UTC)
        with self._transaction() as cur:
            row = cur.execute("SELECT version FROM metrics WHERE key = ?", [metric.key]).fetchone()
            current = row[0] if row else None
            if current != expected_version:
                raise ConflictError(f"metric {metric.key!r} is at version {current}, not {expected_version}")
            cur.execute("DELETE FROM metrics WHERE key = ?", [metric.key])
            cur.execute(
                "INSERT INTO metrics VALUES (?, ?, ?, ?)",
                [metric.key, metric.version, _json.encode(metric).decode(), now],
            )

    def get_plan(self, flag_key: str, environment: str) -> Plan | None:
        row = (
            self._cursor()
            .execute("SELECT doc FROM plans WHERE flag_key = ? AND environment = ?", [flag_key, environment])
            .fetchone()
        )
        return _plan_decoder.decode(row[0]) if row else None

    def list_plans(self) -> list[Plan]:
        rows = self.query("SELECT doc FROM plans ORDER BY flag_key, environment")
        return [_plan_decoder.decode(r[0]) for r in rows]

    def save_plan(self, plan: Plan, expected_version: int | None, change: FlagChange) -> None:
        """Compare-and-set on the plan's version; its change row commits with it."""
        with self._transaction() as cur:
            row = cur.execute(
                "SELECT version FROM plans WHERE flag_key = ? AND environment = ?",
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
        return self._read_decisions(self._cursor(), flag_key)

    def _read_decisions(self, cur: duckdb.DuckDBPyConnection, flag_key: str | None) -> list[Decision]:
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
                "SELECT state FROM change_requests WHERE request_id = ?", [request.request_id]
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
        rows = self.query(
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
        rows = self.query(
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

    # -- evidence -------------------------------------------------------------------------

    def load_segment(self, name: str, files: dict[EvidenceKind, Path]) -> int:
        """Load one log segment's NDJSON files; duplicates of stored event ids are ignored.

        The segment is recorded as loaded in the same transaction, so replay is exact.
        Returns the number of new rows.
        """
        inserted = 0
        with self._transaction() as cur:
            if cur.execute("SELECT 1 FROM ingest_segments WHERE name = ?", [name]).fetchone():
                return 0
            for kind, path in files.items():
                inserted += self._load_file(cur, kind, path)
            cur.execute("INSERT INTO ingest_segments VALUES (?, ?, ?)", [name, inserted, datetime.now(UTC)])
        return inserted

    def _load_file(self, cur: duckdb.DuckDBPyConnection, kind: EvidenceKind, path: Path) -> int:
        """Insert one NDJSON file's rows, each identity once. Resends of stored items never reach
        a segment: ingestion's identity index answers them as duplicates (store/identity.py)."""
        columns = _columns_literal(EVIDENCE_COLUMNS[kind])
        row = cur.execute(
            f"INSERT INTO {kind} BY NAME SELECT * FROM read_json(?, format = 'newline_delimited',"
            f" columns = {columns}) QUALIFY row_number() OVER (PARTITION BY environment, event_id ORDER BY received_at) = 1",
            [str(path)],
        ).fetchone()
        return int(row[0]) if row else 0

    def identities(self) -> tuple[Any, Any]:
        """(identity keys, payload hashes) of every stored evidence row, as numpy arrays; rows
        from before identities were stored get theirs computed first (once)."""
        import numpy as np

        from ramplight.core.identity import identity_key

        keys, payloads = [], []
        for kind in EVIDENCE_COLUMNS:
            missing = self.query(f"SELECT rowid, environment, event_id FROM {kind} WHERE identity IS NULL")
            if missing:
                rids = [r[0] for r in missing]
                computed = [identity_key(r[1], kind, r[2]) for r in missing]
                with self._transaction() as cur:
                    cur.execute(
                        f"UPDATE {kind} SET identity = b.identity, payload_hash = 0 FROM (SELECT "
                        "UNNEST(?::BIGINT[]) AS rid, UNNEST(?::UBIGINT[]) AS identity) AS b "
                        f"WHERE {kind}.rowid = b.rid",
                        [rids, computed],
                    )
            got = self._cursor().execute(f"SELECT identity, payload_hash FROM {kind}").fetchnumpy()
            keys.append(np.asarray(got["identity"], dtype=np.uint64))
            payloads.append(np.asarray(got["payload_hash"], dtype=np.uint64))
        return np.concatenate(keys), np.concatenate(payloads)

    def loaded_segments(self) -> set[str]:
        return {r[0] for r in self.query("SELECT name FROM ingest_segments")}

    def count(self, kind: EvidenceKind, environment: str | None = None) -> int:
        if kind not in EVIDENCE_COLUMNS:
            raise ValueError(f"unknown evidence kind {kind!r}")
        if environment is None:
            row = self._cursor().execute(f"SELECT count(*) FROM {kind}").fetchone()
        else:
            row = (
                self._cursor()
                .execute(f"SELECT count(*) FROM {kind} WHERE environment = ?", [environment])
                .fetchone()
            )
        return int(row[0]) if row else 0
