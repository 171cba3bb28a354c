"""PostgreSQL evidence store: exposures, events, evals and spans in one database that several
`ramplight serve` processes share (`RAMPLIGHT_EVIDENCE=postgresql://…`).

Segments load in one transaction each — the rows through COPY, then the segment's name in
`ingest_segments` — so a segment replayed after a crash loads once. Analysis reads run in a READ
ONLY transaction with `statement_timeout`, as the `ramplight_reader` role when the database lets
the store create it (SELECT on the evidence tables and the operator's listed tables only: a
function that reads files or another table's rows is refused by the server, beside the tree walk
of user SQL in `core.usersql`).
"""

from __future__ import annotations

import logging
import shutil
import tempfile
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import msgspec
import psycopg
from psycopg import errors as pg_errors
from psycopg import sql as pg_sql

from ramplight.core.errors import QueryError, StoreError
from ramplight.store.base import EvidenceKind, SqlSandbox
from ramplight.store.duckdb.store import EVIDENCE_COLUMNS
from ramplight.store.postgres.store import masked

log = logging.getLogger("ramplight.store.postgres")

READER_ROLE = "ramplight_reader"
"""The role analysis reads run as: SELECT on the evidence (and the operator's tables), nothing else."""

_JSON = frozenset(
    name for columns in EVIDENCE_COLUMNS.values() for name, kind in columns.items() if kind == "JSON"
)
_SIGNED = 1 << 63


def migrations() -> list[tuple[int, str, str]]:
    found = []
    for entry in resources.files("ramplight.store.postgres").joinpath("evidence_migrations").iterdir():
        if entry.name.endswith(".sql"):
            found.append((int(entry.name.split("_", 1)[0]), entry.name, entry.read_text()))
    return sorted(found)


def _signed(value: int) -> int:
    """A uint64 hash as the BIGINT with the same bits."""
    return value - (1 << 64) if value >= _SIGNED else value


def _reason(exc: BaseException) -> str:
    diag = getattr(exc, "diag", None)
    primary = getattr(diag, "message_primary", None) if diag is not None else None
    return primary or str(exc).strip().split("\n")[0]


_json = msgspec.json.Encoder()


def _rows(kind: EvidenceKind, path: Path) -> Iterator[list[Any]]:
    """The file's items as COPY rows in the table's column order, each identity once (the first
    line: as the DuckDB loader keeps them)."""
    columns = list(EVIDENCE_COLUMNS[kind])
    seen: set[tuple[str, str]] = set()
    for line in path.read_bytes().splitlines():
        if not line.strip():
            continue
        item = msgspec.json.decode(line)
        key = (item.get("environment", ""), item.get("event_id", ""))
        if key in seen:
            continue
        seen.add(key)
        row: list[Any] = []
        for name in columns:
            value = item.get(name)
            if value is None:
                row.append(None)
            elif name in _JSON:
                row.append(_json.encode(value).decode())
            elif name in ("identity", "payload_hash"):
                row.append(_signed(int(value)))
            else:
                row.append(value)
        yield row


class PostgresEvidenceStore:
    """The evidence in PostgreSQL tables; see the module docstring. `?options=-csearch_path=…`
    picks a schema (the control plane may share it: the table names do not overlap)."""

    dialect = "postgres"

    def __init__(
        self,
        url: str,
        *,
        sandbox: SqlSandbox | None = None,
        read_only: bool = False,
        connect_timeout: int = 10,
    ) -> None:
        self.url = url
        self.path = masked(url)
        self.sandbox = sandbox or SqlSandbox()
        self._connect_timeout = connect_timeout
        self._local = threading.local()
        self._connections: list[psycopg.Connection[Any]] = []
        self._lock = threading.Lock()
        self._closed = False
        self._scratch = Path(tempfile.mkdtemp(prefix="ramplight-pg-scratch-"))
        row = self._connection().execute("SELECT current_schema()").fetchone()
        if not row or row[0] is None:
            raise StoreError(f"{self.path}: no schema to use (check search_path and that the schema exists)")
        self.schema: str = row[0]
        if not read_only:
            self.migrate()
        found = (
            self._connection()
            .execute("SELECT rolsuper FROM pg_roles WHERE rolname = current_user")
            .fetchone()
        )
        self._superuser = bool(found and found[0])
        self.reader_role = self._grant_reader()

    # -- plumbing -------------------------------------------------------------------------

    def _connection(self) -> psycopg.Connection[Any]:
        if self._closed:
            raise StoreError("the store is closed")
        conn: psycopg.Connection[Any] | None = getattr(self._local, "conn", None)
        if conn is None or conn.closed or conn.broken:
            try:
                conn = psycopg.connect(self.url, autocommit=True, connect_timeout=self._connect_timeout)
            except psycopg.Error as exc:
                raise StoreError(f"cannot connect to PostgreSQL at {self.path}: {_reason(exc)}") from exc
            conn.execute("SET TIME ZONE 'UTC'")
            self._local.conn = conn
            with self._lock:
                self._connections.append(conn)
        return conn

    def migrate(self) -> list[int]:
        """Apply the evidence migrations this schema has not seen yet, one process at a time."""
        applied = []
        conn = self._connection()
        with conn.transaction():
            conn.execute(
                "SELECT pg_advisory_xact_lock(hashtext(current_schema() || '.ramplight_evidence_migrations'))"
            )
            conn.execute(
                "CREATE TABLE IF NOT EXISTS evidence_migrations ("
                "version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at TIMESTAMPTZ NOT NULL)"
            )
            done = {r[0] for r in conn.execute("SELECT version FROM evidence_migrations").fetchall()}
            for version, name, sql in migrations():
                if version in done:
                    continue
                conn.execute(sql)  # our own migration files
                conn.execute(
                    "INSERT INTO evidence_migrations VALUES (%s, %s, %s)", [version, name, datetime.now(UTC)]
                )
                applied.append(version)
        return applied

    def _grant_reader(self) -> str | None:
        """Create the reader role (once per cluster) and grant it this schema's evidence and the
        operator's tables; None when this login may not (reads then rely on the read-only
        transaction and the tree walk, and a warning says so)."""
        conn = self._connection()
        tables = ["exposures", "events", "evals", "spans", *sorted(self.sandbox.tables)]
        try:
            with conn.transaction():
                conn.execute(
                    "SELECT pg_advisory_xact_lock(hashtext('ramplight_reader_role'))"
                )  # CREATE ROLE races between processes
                exists = conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", [READER_ROLE]).fetchone()
                if not exists:
                    conn.execute(pg_sql.SQL("CREATE ROLE {} NOLOGIN").format(pg_sql.Identifier(READER_ROLE)))
                role = pg_sql.Identifier(READER_ROLE)
                conn.execute(pg_sql.SQL("GRANT {} TO CURRENT_USER").format(role))
                conn.execute(
                    pg_sql.SQL("GRANT USAGE ON SCHEMA {} TO {}").format(pg_sql.Identifier(self.schema), role)
                )
                present = {
                    r[0]
                    for r in conn.execute(
                        "SELECT table_name FROM information_schema.tables WHERE table_schema = %s",
                        [self.schema],
                    ).fetchall()
                }
                for table in tables:
                    if table in present:
                        conn.execute(
                            pg_sql.SQL("GRANT SELECT ON {}.{} TO {}").format(
                                pg_sql.Identifier(self.schema), pg_sql.Identifier(table), role
                            )
                        )
        except (pg_errors.InsufficientPrivilege, pg_errors.InvalidGrantOperation) as exc:
            log.warning(
                "PostgreSQL evidence at %s: cannot set up the %s role (%s); analysis reads run read-only "
                "without it. Create it (NOLOGIN, SELECT on the evidence tables) and grant it to this login.",
                self.path,
                READER_ROLE,
                _reason(exc),
            )
            return None
        return READER_ROLE

    # -- loading ----------------------------------------------------------------------------

    def load_segment(self, name: str, files: dict[EvidenceKind, Path]) -> int:
        """COPY one log segment's NDJSON files and record the segment, in one transaction."""
        conn = self._connection()
        inserted = 0
        try:
            with conn.transaction():
                if conn.execute("SELECT 1 FROM ingest_segments WHERE name = %s", [name]).fetchone():
                    return 0
                for kind, path in files.items():
                    inserted += self._copy(conn, kind, path)
                conn.execute(
                    "INSERT INTO ingest_segments VALUES (%s, %s, %s)", [name, inserted, datetime.now(UTC)]
                )
        except psycopg.Error as exc:
            raise StoreError(f"loading {name} into {self.path}: {_reason(exc)}") from exc
        return inserted

    @staticmethod
    def _copy(conn: psycopg.Connection[Any], kind: EvidenceKind, path: Path) -> int:
        """COPY the file into a staging table, then keep the rows whose identity is new: a resend
        acknowledged by another server of this database (whose identity index had not seen it)
        is stored once."""
        table = pg_sql.Identifier(kind)
        stage = pg_sql.Identifier(f"stage_{kind}")
        columns = pg_sql.SQL(", ").join(pg_sql.Identifier(c) for c in EVIDENCE_COLUMNS[kind])
        conn.execute(
            pg_sql.SQL("CREATE TEMP TABLE IF NOT EXISTS {} (LIKE {}) ON COMMIT DELETE ROWS").format(
                stage, table
            )
        )
        with (
            conn.cursor() as cur,
            cur.copy(pg_sql.SQL("COPY {} ({}) FROM STDIN").format(stage, columns)) as copy,
        ):
            for row in _rows(kind, path):
                copy.write_row(row)
        done = conn.execute(
            pg_sql.SQL("INSERT INTO {} ({}) SELECT {} FROM {} ON CONFLICT (identity) DO NOTHING").format(
                table, columns, columns, stage
            )
        )
        return max(done.rowcount, 0)

    def loaded_segments(self) -> set[str]:
        return {r[0] for r in self._connection().execute("SELECT name FROM ingest_segments").fetchall()}

    def segments_loaded(self) -> int:
        row = self._connection().execute("SELECT count(*) FROM ingest_segments").fetchone()
        return int(row[0]) if row else 0

    def identities(self) -> tuple[Any, Any]:
        import numpy as np

        keys, payloads = [], []
        conn = self._connection()
        for kind in EVIDENCE_COLUMNS:
            rows = conn.execute(
                pg_sql.SQL("SELECT identity, payload_hash FROM {}").format(pg_sql.Identifier(kind))
            ).fetchall()
            pairs = np.asarray(rows, dtype=np.int64).reshape(-1, 2)
            keys.append(pairs[:, 0].view(np.uint64))
            payloads.append(pairs[:, 1].view(np.uint64))
        return np.concatenate(keys), np.concatenate(payloads)

    def count(self, kind: EvidenceKind, environment: str | None = None) -> int:
        if kind not in (*EVIDENCE_COLUMNS, "spans"):
            raise ValueError(f"unknown evidence kind {kind!r}")
        table = pg_sql.Identifier(kind)
        conn = self._connection()
        if environment is None:
            row = conn.execute(pg_sql.SQL("SELECT count(*) FROM {}").format(table)).fetchone()
        else:
            statement = pg_sql.SQL("SELECT count(*) FROM {} WHERE environment = %s").format(table)
            row = conn.execute(statement, [environment]).fetchone()
        return int(row[0]) if row else 0

    # -- reading ----------------------------------------------------------------------------

    @contextmanager
    def _read_only(self, timeout_s: float | None) -> Iterator[psycopg.Cursor[Any]]:
        """A READ ONLY transaction as the reader role, stopped after `timeout_s`, rolled back."""
        conn = self._connection()
        with conn.transaction(force_rollback=True), conn.cursor() as cur:
            cur.execute("SET TRANSACTION READ ONLY")
            if timeout_s:
                cur.execute(
                    pg_sql.SQL("SET LOCAL statement_timeout = {}").format(max(1, round(timeout_s * 1000)))
                )
            if self.reader_role:
                # As a superuser login, the session itself becomes the reader: with SET ROLE alone a
                # query could set_config('role', …) back to the login's superuser mid-statement.
                switch = "SET LOCAL SESSION AUTHORIZATION {}" if self._superuser else "SET LOCAL ROLE {}"
                cur.execute(pg_sql.SQL(switch).format(pg_sql.Identifier(self.reader_role)))
            yield cur

    def read(
        self, sql: str, params: Sequence[Any] | Mapping[str, Any] = (), timeout_s: float | None = None
    ) -> tuple[list[str], list[tuple[Any, ...]]]:
        """(column names, rows) of `sql`, read-only, stopped after `timeout_s`; raises QueryError.
        Parameters are psycopg's (`%s`, or `%(name)s` with a mapping)."""
        try:
            with self._read_only(timeout_s) as cur:
                cur.execute(sql, params or None)  # analysis SQL as text
                names = [d.name for d in cur.description or ()]
                return names, [tuple(r) for r in cur.fetchall()]
        except pg_errors.QueryCanceled as exc:
            raise QueryError(f"stopped after {timeout_s:g} s, the query time limit", timed_out=True) from exc
        except psycopg.Error as exc:
            raise QueryError(_reason(exc)) from exc

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        return self.read(sql, params)[1]

    def export(self, sql: str, path: Path, fmt: Literal["parquet", "csv"]) -> None:
        """Rows of `sql` to `path`, written by this process: CSV as PostgreSQL prints it, parquet
        through an in-memory DuckDB reading that CSV (the database writes no files)."""
        staged = self.scratch_dir() / "export.csv"
        try:
            with self._read_only(self.sandbox.timeout_s) as cur, staged.open("wb") as handle:
                copy_sql = pg_sql.SQL("COPY ({}) TO STDOUT WITH (FORMAT csv, HEADER true)").format(
                    pg_sql.SQL(sql.rstrip().rstrip(";"))  # analysis SQL
                )
                with cur.copy(copy_sql) as copy:
                    for chunk in copy:
                        handle.write(chunk)
        except psycopg.Error as exc:
            raise QueryError(_reason(exc)) from exc
        if fmt == "csv":
            shutil.move(staged, path)
            return
        import duckdb

        with duckdb.connect(":memory:") as con:
            con.execute(
                "COPY (SELECT * FROM read_csv(?, header = true)) TO '"
                + str(path).replace("'", "''")
                + "' (FORMAT parquet)",
                [str(staged)],
            )
        staged.unlink(missing_ok=True)

    def scratch_dir(self) -> Path:
        self._scratch.mkdir(parents=True, exist_ok=True)
        return self._scratch

    def connection(self) -> Any:
        raise StoreError(
            "a PostgreSQL evidence store has no shared connection; analysis reads through read()"
        )

    def snapshot(self, directory: Path) -> dict[str, Any]:
        raise StoreError(
            f"`backup` copies an embedded database; back up PostgreSQL ({self.path}) with pg_dump"
        )

    def close(self) -> None:
        self._closed = True
        with self._lock:
            for conn in self._connections:
                conn.close()
            self._connections.clear()
        shutil.rmtree(self._scratch, ignore_errors=True)
