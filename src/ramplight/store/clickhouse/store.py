"""ClickHouse evidence store through clickhouse-connect: a ClickHouse server (`clickhouse://`,
`clickhouses://` for TLS) or the same engine in-process (`chdb://PATH`, clickhouse-connect's chDB
backend; needs the `chdb` package).

Segments load with one insert per evidence kind, each carrying a deduplication token
(`<segment>/<kind>`): a segment replayed after a crash — partly or wholly inserted before it — is
inserted once. Analysis reads run with `readonly=1` (no writes, no settings, no table functions
such as `file()` or `url()`) and `max_execution_time`, beside the tree walk of user SQL.
"""

from __future__ import annotations

import re
import shutil
import tempfile
import threading
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

import msgspec

from ramplight.core.errors import QueryError, StoreError
from ramplight.store.base import EvidenceKind, SqlSandbox

KINDS: tuple[EvidenceKind, ...] = ("exposures", "events", "evals", "spans")
_LOAD_SETTINGS = {
    "date_time_input_format": "best_effort",
    "input_format_json_read_objects_as_strings": 1,
    "input_format_skip_unknown_fields": 1,
}


_ANALYSIS_SETTINGS = frozenset(
    {"join_use_nulls", "enable_materialized_cte", "function_json_value_return_type_allow_nullable"}
)
"""Settings analysis statements carry (analysis/sql.py); in readonly mode a statement may not
set any, so the store lifts these from the statement's end and passes them with the query."""
_TRAILING_SETTINGS = re.compile(r"\s+SETTINGS\s+((?:\w+\s*=\s*\d+\s*,\s*)*\w+\s*=\s*\d+)\s*;?\s*$", re.I)


def _lift_settings(sql: str) -> tuple[str, dict[str, int]]:
    """(statement, settings) with a trailing SETTINGS clause of analysis settings only lifted out;
    any other SETTINGS stays in the text, where readonly mode refuses it."""
    found = _TRAILING_SETTINGS.search(sql)
    if found is None:
        return sql, {}
    pairs = dict((k.strip(), int(v)) for k, v in (p.split("=") for p in found.group(1).split(",")))
    if not set(pairs) <= _ANALYSIS_SETTINGS:
        return sql, {}
    return sql[: found.start()], pairs


def _reason(exc: Exception) -> str:
    """The engine's message without the query echo and stack trace."""
    text = str(exc).strip()
    if "DB::Exception: " in text:
        text = text.split("DB::Exception: ", 1)[1]
    return text.split("\n")[0].split(". Stack trace")[0]


class _Key(msgspec.Struct):
    environment: str = ""
    event_id: str = ""


_key_decoder = msgspec.json.Decoder(_Key)


def _first_of_each_identity(path: Path) -> bytes:
    """The file's lines, each (environment, event_id) once (as the DuckDB loader keeps them)."""
    seen: set[tuple[str, str]] = set()
    kept = []
    for line in path.read_bytes().splitlines():
        if not line.strip():
            continue
        key = _key_decoder.decode(line)
        if (key.environment, key.event_id) not in seen:
            seen.add((key.environment, key.event_id))
            kept.append(line)
    return b"\n".join(kept) + b"\n" if kept else b""


def migrations() -> list[tuple[int, str, str]]:
    found = []
    for entry in resources.files("ramplight.store.clickhouse").joinpath("migrations").iterdir():
        if entry.name.endswith(".sql"):
            found.append((int(entry.name.split("_", 1)[0]), entry.name, entry.read_text()))
    return sorted(found)


def _statements(sql: str) -> list[str]:
    body = "\n".join(line for line in sql.splitlines() if not line.lstrip().startswith("--"))
    return [s.strip() for s in body.split(";") if s.strip()]


class ClickHouseEvidenceStore:
    """Exposures, events, evals and spans in MergeTree tables; see the module docstring."""

    dialect = "clickhouse"

    def __init__(self, url: str, *, sandbox: SqlSandbox | None = None, read_only: bool = False) -> None:
        import clickhouse_connect

        parts = urlsplit(url)
        self.url = url
        self.path = url if parts.password is None else url.replace(f":{parts.password}@", ":***@")
        self.sandbox = sandbox or SqlSandbox()
        if parts.scheme == "chdb":
            try:
                import chdb  # noqa: F401  (clickhouse-connect's chDB backend needs it)
            except ImportError:
                raise StoreError(
                    f"{self.path}: chdb:// needs the chdb package (pip install chdb==4.4.0)"
                ) from None
            if parts.path:
                Path(parts.path).mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        """clickhouse-connect clients are not shared between concurrent queries: one at a time."""
        try:
            self._client = clickhouse_connect.get_client(dsn=url)
        except Exception as exc:
            raise StoreError(f"cannot open ClickHouse at {self.path}: {_reason(exc)}") from exc
        self._scratch = Path(tempfile.mkdtemp(prefix="ramplight-ch-scratch-"))
        if not read_only:
            self.migrate()

    def migrate(self) -> list[int]:
        with self._lock:
            self._client.command(
                "CREATE TABLE IF NOT EXISTS schema_migrations (version UInt32, name String,"
                " applied_at DateTime64(6, 'UTC')) ENGINE = ReplacingMergeTree ORDER BY version"
            )
            done = {r[0] for r in self._client.query("SELECT version FROM schema_migrations").result_rows}
            applied = []
            for version, name, sql in migrations():
                if version in done:
                    continue
                for statement in _statements(sql):
                    self._client.command(statement)
                self._client.insert(
                    "schema_migrations",
                    [[version, name, datetime.now(UTC)]],
                    ["version", "name", "applied_at"],
                )
                applied.append(version)
            return applied

    # -- loading ----------------------------------------------------------------------------

    def load_segment(self, name: str, files: dict[EvidenceKind, Path]) -> int:
        """Insert one log segment's NDJSON files; replays of the same segment insert nothing."""
        if name in self.loaded_segments():
            return 0
        inserted = 0
        with self._lock:
            for kind, path in files.items():
                settings = {**_LOAD_SETTINGS, "insert_deduplication_token": f"{name}/{kind}"}
                # written_rows counts a deduplicated insert too: count the table instead (only
                # the loader inserts, one segment at a time).
                before = int(self._client.query(f"SELECT count() FROM {kind}").result_rows[0][0])
                try:
                    self._client.raw_insert(
                        kind, None, _first_of_each_identity(path), settings=settings, fmt="JSONEachRow"
                    )
                except Exception as exc:
                    raise StoreError(f"loading {name}/{kind} into {self.path}: {_reason(exc)}") from exc
                inserted += int(self._client.query(f"SELECT count() FROM {kind}").result_rows[0][0]) - before
            self._client.insert(
                "ingest_segments", [[name, inserted, datetime.now(UTC)]], ["name", "inserted", "loaded_at"]
            )
        return inserted

    def loaded_segments(self) -> set[str]:
        with self._lock:
            return {r[0] for r in self._client.query("SELECT name FROM ingest_segments").result_rows}

    def segments_loaded(self) -> int:
        with self._lock:
            return int(self._client.query("SELECT count() FROM ingest_segments").result_rows[0][0])

    def identities(self) -> tuple[Any, Any]:
        import numpy as np

        keys, payloads = [], []
        with self._lock:
            for kind in KINDS:
                rows = self._client.query(f"SELECT identity, payload_hash FROM {kind}").result_columns
                keys.append(np.asarray(rows[0] if rows else [], dtype=np.uint64))
                payloads.append(np.asarray(rows[1] if rows else [], dtype=np.uint64))
        return np.concatenate(keys), np.concatenate(payloads)

    def count(self, kind: EvidenceKind, environment: str | None = None) -> int:
        if kind not in KINDS:
            raise ValueError(f"unknown evidence kind {kind!r}")
        with self._lock:
            if environment is None:
                rows = self._client.query(f"SELECT count() FROM {kind}").result_rows
            else:
                rows = self._client.query(
                    f"SELECT count() FROM {kind} WHERE environment = {{env:String}}",
                    parameters={"env": environment},
                ).result_rows
        return int(rows[0][0])

    # -- reading ----------------------------------------------------------------------------

    def read(
        self, sql: str, params: Sequence[Any] | Mapping[str, Any] = (), timeout_s: float | None = None
    ) -> tuple[list[str], list[tuple[Any, ...]]]:
        """(column names, rows) of `sql`, read-only, stopped after `timeout_s`; raises QueryError.
        Parameters are named (`{name:Type}` in the SQL)."""
        if params and not isinstance(params, Mapping):
            raise QueryError("ClickHouse queries take named parameters ({name:Type}), not positional ones")
        sql, lifted = _lift_settings(sql)
        settings: dict[str, Any] = dict(lifted)
        if timeout_s:
            settings["max_execution_time"] = max(1, round(timeout_s))
        settings["readonly"] = 1  # last: the settings before it are the engine's, not the user's
        try:
            with self._lock:
                result = self._client.query(sql, parameters=dict(params) or None, settings=settings)
        except Exception as exc:
            reason = _reason(exc)
            if "TIMEOUT_EXCEEDED" in str(exc):
                raise QueryError(
                    f"stopped after {timeout_s:g} s, the query time limit", timed_out=True
                ) from exc
            raise QueryError(reason) from exc
        return list(result.column_names), [tuple(row) for row in result.result_rows]

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        if params:
            raise QueryError("ClickHouse queries take named parameters ({name:Type}): use read()")
        return self.read(sql)[1]

    def export(self, sql: str, path: Path, fmt: Literal["parquet", "csv"]) -> None:
        """Rows of `sql` to `path`, written by this process (the engine writes no user paths)."""
        output = "Parquet" if fmt == "parquet" else "CSVWithNames"
        try:
            with self._lock:
                stream = self._client.raw_stream(sql, settings={"readonly": 1}, fmt=output)
                staged = self.scratch_dir() / f"export.{fmt}"
                with staged.open("wb") as handle:
                    for chunk in stream:
                        handle.write(chunk)
        except Exception as exc:
            raise QueryError(_reason(exc)) from exc
        shutil.move(staged, path)

    def scratch_dir(self) -> Path:
        self._scratch.mkdir(parents=True, exist_ok=True)
        return self._scratch

    def connection(self) -> Any:
        raise StoreError(
            "a ClickHouse evidence store has no DB-API connection; analysis reads through read()"
        )

    def snapshot(self, directory: Path) -> dict[str, Any]:
        raise StoreError(
            f"`backup` copies an embedded database; back up ClickHouse ({self.path}) with its own BACKUP command"
        )

    def close(self) -> None:
        with self._lock:
            self._client.close()
        shutil.rmtree(self._scratch, ignore_errors=True)
