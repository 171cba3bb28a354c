"""The same evidence in real PostgreSQL and real ClickHouse (chdb, in-process), to run analysis
SQL rendered for each. Table definitions are derived from the DuckDB store's own schema, so the
three engines hold the same columns.

PostgreSQL is the server on 127.0.0.1:5432 (`RAMPLIGHT_TEST_PG` overrides the conninfo); each
`Postgres` works in a schema of its own and drops it on close. When the server is down the tests
skip — unless `CI` or `RAMPLIGHT_REQUIRE_PG` is set, where they fail (tests/pg.py).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ramplight.store.duckdb import DuckDBStore
from tests import pg

TABLES = ("exposures", "events", "evals", "spans")

_PG_TYPES = {
    "VARCHAR": "TEXT",
    "TIMESTAMP WITH TIME ZONE": "TIMESTAMPTZ",
    "JSON": "JSONB",
    "DOUBLE": "DOUBLE PRECISION",
    "INTEGER": "INTEGER",
    "BIGINT": "BIGINT",
    "UBIGINT": "NUMERIC(20)",
    "BOOLEAN": "BOOLEAN",
}
_CH_TYPES = {
    "VARCHAR": "String",
    "TIMESTAMP WITH TIME ZONE": "DateTime64(6, 'UTC')",
    "JSON": "String",
    "DOUBLE": "Float64",
    "INTEGER": "Int32",
    "BIGINT": "Int64",
    "UBIGINT": "UInt64",
    "BOOLEAN": "Bool",
}
# The readout's access path: one flag's exposures by unit, one environment's events by unit.
_CH_ORDER = {
    "exposures": "(environment, flag_key, unit_id, ts)",
    "events": "(environment, name, unit_id, ts)",
    "evals": "(environment, name, ts)",
    "spans": "(environment, start_ts)",
}

Columns = list[tuple[str, str, bool]]
"""(name, DuckDB type, nullable) per column, in table order."""


def schema(store: DuckDBStore) -> dict[str, Columns]:
    rows = store.query(
        "SELECT table_name, column_name, data_type, is_nullable = 'YES' FROM information_schema.columns "
        "WHERE table_name IN ('exposures', 'events', 'evals', 'spans') ORDER BY table_name, ordinal_position"
    )
    out: dict[str, Columns] = {}
    for table, column, kind, nullable in rows:
        out.setdefault(table, []).append((column, kind, bool(nullable)))
    return out


def evidence(store: DuckDBStore, columns: Mapping[str, Columns]) -> dict[str, list[tuple[Any, ...]]]:
    """Every evidence row of `store`, JSON columns as text."""
    out = {}
    for table, cols in columns.items():
        select = ", ".join(f"CAST({c} AS VARCHAR)" if kind == "JSON" else c for c, kind, _ in cols)
        out[table] = store.query(f"SELECT {select} FROM {table}")
    return out


def require_postgres() -> Any:
    """A psycopg connection to the test server (tests/pg.py: skip, or fail in CI, without it)."""
    import psycopg

    pg.require()
    return psycopg.connect(pg.BASE, autocommit=True, connect_timeout=5)


class Postgres:
    """The evidence in a fresh schema of the test server."""

    dialect = "postgres"

    def __init__(self, columns: Mapping[str, Columns], rows: Mapping[str, Sequence[tuple[Any, ...]]]) -> None:
        self.con = require_postgres()
        self.schema = f"ramplight_test_{uuid.uuid4().hex[:12]}"
        self.con.execute(f"CREATE SCHEMA {self.schema}")
        self.con.execute(f"SET search_path TO {self.schema}")
        try:
            self._load(columns, rows)
        except BaseException:
            self.close()
            raise

    def _load(self, columns: Mapping[str, Columns], rows: Mapping[str, Sequence[tuple[Any, ...]]]) -> None:
        for table, cols in columns.items():
            body = ", ".join(f"{c} {_PG_TYPES[k]}{'' if n else ' NOT NULL'}" for c, k, n in cols)
            self.con.execute(f"CREATE TABLE {table} ({body})")
            with self.con.cursor().copy(f"COPY {table} FROM STDIN") as copy:
                for row in rows[table]:
                    copy.write_row(row)
            self.con.execute(f"ANALYZE {table}")

    def run(self, sql: str) -> list[dict[str, Any]]:
        cursor = self.con.execute(sql)  # type: ignore[arg-type]
        names = [d.name for d in cursor.description or ()]
        return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]

    def close(self) -> None:
        self.con.execute(f"DROP SCHEMA {self.schema} CASCADE")
        self.con.close()


def _ch_value(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")
    return value


class ClickHouse:
    """The evidence in MergeTree tables of an in-process ClickHouse (chdb) under `path`."""

    dialect = "clickhouse"

    def __init__(
        self, columns: Mapping[str, Columns], rows: Mapping[str, Sequence[tuple[Any, ...]]], path: Path
    ) -> None:
        from chdb import session

        self.session = session.Session(str(path))
        for table, cols in columns.items():
            body = ", ".join(f"{c} {f'Nullable({_CH_TYPES[k]})' if n else _CH_TYPES[k]}" for c, k, n in cols)
            self.session.query(
                f"CREATE TABLE {table} ({body}) ENGINE = MergeTree ORDER BY {_CH_ORDER[table]}"
            )
            names = [c for c, _, _ in cols]
            lines = "\n".join(
                json.dumps({n: _ch_value(v) for n, v in zip(names, row, strict=True)}) for row in rows[table]
            )
            if lines:
                self.session.query(f"INSERT INTO {table} FORMAT JSONEachRow\n{lines}")

    def run(self, sql: str) -> list[dict[str, Any]]:
        table = self.session.query(sql, "ArrowTable")
        rows: list[dict[str, Any]] = table.to_pylist()
        return rows

    def close(self) -> None:
        self.session.close()
