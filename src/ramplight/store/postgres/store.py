"""PostgreSQL control plane: the `SqlControlPlane` over psycopg 3, shared by several server
processes. Row locks keep compare-and-set writes and the audit chains correct under concurrent
writers; every committed write NOTIFYs the other processes, which drop their caches at once."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import psycopg
from psycopg import errors as pg_errors

from ramplight.core.audit import AuditHead, Chain
from ramplight.core.errors import ConflictError, StoreError
from ramplight.store.audit_files import load_secret
from ramplight.store.sqlcontrol import SqlControlPlane

log = logging.getLogger("ramplight.store.postgres")

CHANNEL = "ramplight_control"
"""The NOTIFY channel; the payload is the schema that changed (one database may hold several)."""


def migrations() -> list[tuple[int, str, str]]:
    """(version, name, sql) of every migration shipped beside this backend, in order."""
    found = []
    for entry in resources.files("ramplight.store.postgres").joinpath("migrations").iterdir():
        if entry.name.endswith(".sql"):
            found.append((int(entry.name.split("_", 1)[0]), entry.name, entry.read_text()))
    return sorted(found)


def masked(url: str) -> str:
    """The URL without its password, for messages and logs."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = f"{parts.username}:***@{parts.hostname}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


class _Cursor:
    """A psycopg cursor that takes the control plane's `?` placeholders."""

    def __init__(self, cursor: psycopg.Cursor[Any]) -> None:
        self._cursor = cursor

    def execute(self, sql: str, params: Sequence[Any] = ()) -> _Cursor:
        self._cursor.execute(sql.replace("%", "%%").replace("?", "%s"), list(params))
        return self

    def fetchone(self) -> Any:
        return self._cursor.fetchone()

    def fetchall(self) -> list[Any]:
        return self._cursor.fetchall()


class PostgresControlStore(SqlControlPlane):
    """The control plane in a PostgreSQL database (`postgresql://…` URL; `?options=-csearch_path=…`
    picks a schema). One connection per thread; writes in transactions with row locks.

    The audit secret lives in a file every server process reads (`audit_secret`); the head log
    kept beside an embedded database is not kept here (several processes append to the chains),
    so verification rests on the hash chains and their MACs.
    """

    _for_update = " FOR UPDATE"
    keeps_head_log = False

    def __init__(
        self, url: str, *, audit_secret: Path, read_only: bool = False, connect_timeout: int = 10
    ) -> None:
        self.url = url
        self.where = masked(url)
        self._connect_timeout = connect_timeout
        self._local = threading.local()
        self._connections: list[psycopg.Connection[Any]] = []
        self._connections_lock = threading.Lock()
        self._pending_heads: list[AuditHead] = []
        self._closed = False
        self._listeners: list[threading.Event] = []
        self._leads: dict[str, psycopg.Connection[Any]] = {}
        """Role → the connection holding its session-level advisory lock (`try_lead`)."""
        first = self._connection()
        row = first.execute("SELECT current_schema()").fetchone()
        if not row or row[0] is None:
            raise StoreError(f"{self.where}: no schema to use (check search_path and that the schema exists)")
        self.schema: str = row[0]
        if not read_only:
            self.migrate()
        sealed = self._row(
            "SELECT EXISTS (SELECT 1 FROM flag_changes WHERE mac IS NOT NULL)"
            " OR EXISTS (SELECT 1 FROM decisions WHERE mac IS NOT NULL)"
        )
        self.audit_key: bytes | None = load_secret(
            audit_secret, create=not read_only and not (sealed and sealed[0])
        )
        if self.audit_key is None and not read_only:
            raise StoreError(
                f"the audit secret {audit_secret} is missing, but the audit log in {self.where} was sealed "
                "with one: copy it from another server of this database, or point RAMPLIGHT_AUDIT_SECRET at it"
            )

    # -- plumbing -------------------------------------------------------------------------

    def _connect(self) -> psycopg.Connection[Any]:
        try:
            conn = psycopg.connect(self.url, autocommit=True, connect_timeout=self._connect_timeout)
        except psycopg.Error as exc:
            raise StoreError(f"cannot connect to PostgreSQL at {self.where}: {str(exc).strip()}") from exc
        conn.execute("SET TIME ZONE 'UTC'")
        return conn

    def _connection(self) -> psycopg.Connection[Any]:
        if self._closed:
            raise StoreError("the store is closed")
        conn: psycopg.Connection[Any] | None = getattr(self._local, "conn", None)
        if conn is None or conn.closed or conn.broken:
            conn = self._local.conn = self._connect()
            with self._connections_lock:
                self._connections.append(conn)
        return conn

    @contextmanager
    def _transaction(self) -> Iterator[_Cursor]:
        """One transaction; inside `atomic()` (or another transaction) of this thread, its part."""
        outer: _Cursor | None = getattr(self._local, "tx", None)
        if outer is not None:
            yield outer
            return
        conn = self._connection()
        try:
            with conn.transaction(), conn.cursor() as cur:
                self._local.tx = _Cursor(cur)
                try:
                    yield self._local.tx
                finally:
                    self._local.tx = None
                cur.execute("SELECT pg_notify(%s, %s)", [CHANNEL, self.schema])
        except pg_errors.UniqueViolation as exc:
            self._pending_heads.clear()
            raise ConflictError(f"conflicting write: {exc.diag.message_detail or exc}") from exc
        except psycopg.OperationalError as exc:
            self._pending_heads.clear()
            raise StoreError(f"PostgreSQL at {self.where}: {str(exc).strip()}") from exc
        except BaseException:
            self._pending_heads.clear()
            raise
        self._pending_heads.clear()  # no head log here: see the class docstring

    @contextmanager
    def _reading(self) -> Iterator[_Cursor]:
        within: _Cursor | None = getattr(self._local, "tx", None)
        if within is not None:  # inside atomic(): read what this transaction wrote
            yield within
            return
        conn = self._connection()
        with conn.transaction(), conn.cursor() as cur:
            cur.execute("SET TRANSACTION READ ONLY")
            yield _Cursor(cur)

    def _rows(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        try:
            with self._reading() as cur:
                return cur.execute(sql, params).fetchall()
        except psycopg.OperationalError as exc:
            raise StoreError(f"PostgreSQL at {self.where}: {str(exc).strip()}") from exc

    def _lock_chain(self, cur: Any, chain: Chain) -> None:
        cur.execute("SELECT chain FROM audit_chains WHERE chain = ? FOR UPDATE", [chain])

    def migrate(self) -> list[int]:
        """Apply the migrations this schema has not seen yet, one server at a time."""
        applied = []
        conn = self._connection()
        with conn.transaction():
            conn.execute(
                "SELECT pg_advisory_xact_lock(hashtext(current_schema() || '.ramplight_migrations'))"
            )
            conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations ("
                " version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at TIMESTAMPTZ NOT NULL)"
            )
            done = {r[0] for r in conn.execute("SELECT version FROM schema_migrations").fetchall()}
            for version, name, sql in migrations():
                if version in done:
                    continue
                conn.execute(sql.encode())
                conn.execute(
                    "INSERT INTO schema_migrations VALUES (%s, %s, %s)", [version, name, datetime.now(UTC)]
                )
                applied.append(version)
        return applied

    def schema_version(self) -> int:
        row = self._row("SELECT max(version) FROM schema_migrations")
        return int(row[0]) if row and row[0] is not None else 0

    def audit_heads(self) -> list[AuditHead] | None:
        return None

    # -- one server at a time -------------------------------------------------------------

    def _lock_key(self, role: str) -> str:
        return f"{self.schema}.ramplight.{role}"

    def try_lead(self, role: str) -> bool:
        """A session-level advisory lock on a connection of its own, kept while this store is
        open: when the process dies or its connection breaks, PostgreSQL releases it and the next
        server to ask leads."""
        conn = self._leads.get(role)
        if conn is not None:
            try:
                conn.execute("SELECT 1")
                return True
            except psycopg.Error as exc:
                log.warning("lost the lead of %s at %s: %s", role, self.where, str(exc).strip())
                self._drop_lead(role)
        conn = self._connect()
        try:
            row = conn.execute("SELECT pg_try_advisory_lock(hashtext(%s))", [self._lock_key(role)]).fetchone()
        except psycopg.Error as exc:
            conn.close()
            raise StoreError(f"PostgreSQL at {self.where}: {str(exc).strip()}") from exc
        if not (row and row[0]):
            conn.close()
            return False
        with self._connections_lock:
            if self._closed:
                conn.close()
                return False
            self._connections.append(conn)
            self._leads[role] = conn
        return True

    def _drop_lead(self, role: str) -> None:
        with self._connections_lock:
            conn = self._leads.pop(role, None)
            if conn is not None and conn in self._connections:
                self._connections.remove(conn)
        if conn is not None:
            _release_and_close(conn)

    @contextmanager
    def one_at_a_time(self, role: str) -> Iterator[None]:
        """A session-level advisory lock on this thread's connection, waited for."""
        key = self._lock_key(role) + ".serial"
        conn = self._connection()
        try:
            conn.execute("SELECT pg_advisory_lock(hashtext(%s))", [key])
        except psycopg.Error as exc:
            raise StoreError(f"PostgreSQL at {self.where}: {str(exc).strip()}") from exc
        try:
            yield
        finally:
            # A session that is gone took its locks with it.
            if not (conn.closed or conn.broken):
                with suppress(psycopg.Error):
                    conn.execute("SELECT pg_advisory_unlock(hashtext(%s))", [key])

    # -- changes made by other processes --------------------------------------------------

    def listen(self, changed: Callable[[], None]) -> Callable[[], None]:
        """Call `changed()` whenever any process commits a control-plane write to this schema
        (and after a lost connection is restored, as notifications may have been missed).
        Returns a function that stops listening."""
        stop = threading.Event()
        self._listeners.append(stop)

        def run() -> None:
            backoff = 0.1
            while not stop.is_set():
                try:
                    with psycopg.connect(
                        self.url, autocommit=True, connect_timeout=self._connect_timeout
                    ) as conn:
                        conn.execute(f"LISTEN {CHANNEL}")
                        changed()  # whatever happened while we were not listening
                        backoff = 0.1
                        while not stop.is_set():
                            for note in conn.notifies(timeout=0.5):
                                if note.payload == self.schema:
                                    changed()
                except psycopg.Error as exc:
                    log.warning("listening for control-plane changes at %s: %s", self.where, exc)
                    stop.wait(backoff)
                    backoff = min(backoff * 2, 5.0)
                except Exception:
                    log.exception("a control-plane change handler failed")

        threading.Thread(target=run, name="ramplight-pg-listen", daemon=True).start()
        return stop.set

    def close(self) -> None:
        self._closed = True
        for stop in self._listeners:
            stop.set()
        with self._connections_lock:
            leads = set(map(id, self._leads.values()))
            for conn in self._connections:
                if id(conn) in leads:
                    _release_and_close(conn)
                else:
                    conn.close()
            self._connections.clear()
            self._leads.clear()


def _release_and_close(conn: psycopg.Connection[Any]) -> None:
    """Give a lead back before closing its connection. Closing alone only asks the server to end
    the session: PostgreSQL frees the session's advisory locks when that backend has exited,
    a moment after `close()` returns, so another server asking at once could still be refused."""
    if not (conn.closed or conn.broken):
        with suppress(psycopg.Error):
            conn.execute("SELECT pg_advisory_unlock_all()")
    conn.close()
