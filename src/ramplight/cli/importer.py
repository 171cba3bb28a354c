"""Reading evidence files (NDJSON, CSV, Parquet) into contract-shaped JSON items.

NDJSON lines pass through untouched. CSV and Parquet are read by DuckDB and re-shaped so that
each row becomes the JSON object the HTTP API would receive: timestamps as RFC 3339 UTC,
JSON columns parsed, identifiers as strings. Validation is then the ingestion path's own.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import duckdb

from ramplight.core.contract import KIND_TYPES
from ramplight.core.errors import ValidationError

Format = Literal["ndjson", "csv", "parquet"]
JSON_FIELDS = frozenset({"behavior", "ids", "attributes", "properties"})
NUMBER_FIELDS = frozenset({"value", "score", "flag_version"})
TIME_FIELDS = frozenset({"ts"})


@dataclass(frozen=True, slots=True)
class Source:
    path: Path
    format: Format
    kind: str
    rows: int | None


def detect_format(path: Path) -> Format:
    name = path.name.lower()
    for suffix, fmt in (
        (".ndjson", "ndjson"),
        (".jsonl", "ndjson"),
        (".json", "ndjson"),
        (".csv", "csv"),
        (".parquet", "parquet"),
    ):
        if name.endswith(suffix):
            return fmt  # type: ignore[return-value]
    raise ValidationError.at(
        "FILE", f"cannot tell the format of {path.name}: use .ndjson, .csv or .parquet (or --format)"
    )


def _kind_from_columns(columns: set[str]) -> str:
    if "assigned_variation" in columns:
        return "exposures"
    if "score" in columns:
        return "evals"
    return "events"


def _reader(fmt: Format) -> str:
    return {
        "csv": "read_csv(?, header = true)",
        "parquet": "read_parquet(?)",
        "ndjson": "read_json(?, format = 'newline_delimited')",
    }[fmt]


def open_source(path: Path, fmt: Format | None = None, kind: str | None = None) -> Source:
    if not path.exists():
        raise ValidationError.at("FILE", f"{path} does not exist")
    fmt = fmt or detect_format(path)
    if kind is not None and kind not in KIND_TYPES:
        raise ValidationError.at("--kind", f"must be one of {', '.join(KIND_TYPES)}")
    con = duckdb.connect()
    try:
        if fmt == "ndjson":
            with path.open("rb") as handle:
                first = handle.readline()
                rows = 1 + sum(1 for _ in handle) if first.strip() else 0
            if kind is None:
                columns = (
                    set(
                        con.execute(
                            "SELECT * FROM read_json(?, format = 'newline_delimited') LIMIT 0", [str(path)]
                        ).fetchnumpy()
                    )
                    if rows
                    else set()
                )
                kind = _kind_from_columns(columns)
        else:
            relation = con.sql(f"SELECT * FROM {_reader(fmt).replace('?', repr(str(path)))}")
            kind = kind or _kind_from_columns(set(relation.columns))
            row = con.execute(f"SELECT count(*) FROM {_reader(fmt)}", [str(path)]).fetchone()
            rows = int(row[0]) if row else 0
    except duckdb.Error as exc:
        raise ValidationError.at("FILE", f"cannot read {path.name} as {fmt}: {exc}") from exc
    finally:
        con.close()
    return Source(path=path, format=fmt, kind=kind, rows=rows)


def _expression(column: str, column_type: str) -> str:
    quoted = '"' + column.replace('"', '""') + '"'
    upper = column_type.upper()
    if column in TIME_FIELDS and upper.startswith("TIMESTAMP"):
        zoned = quoted if "TIME ZONE" in upper else f"({quoted} AT TIME ZONE 'UTC')"
        return f"strftime({zoned} AT TIME ZONE 'UTC', '%Y-%m-%dT%H:%M:%S.%fZ')"
    if column in JSON_FIELDS:
        return f"CAST({quoted} AS JSON)" if upper in ("VARCHAR", "JSON") else quoted
    if column in NUMBER_FIELDS:
        if upper != "VARCHAR":
            return quoted
        # Numbers stay numbers; anything else stays a string so validation names the field.
        number = f"TRY_CAST({quoted} AS DOUBLE)"
        return f"CAST(CASE WHEN {number} IS NOT NULL THEN CAST({number} AS VARCHAR) ELSE CAST(to_json({quoted}) AS VARCHAR) END AS JSON)"
    return f"CAST({quoted} AS VARCHAR)"


def read_items(source: Source, chunk: int = 5000) -> Iterator[list[bytes]]:
    """Yield lists of JSON-encoded items, `chunk` at a time, in file order."""
    if source.format == "ndjson":
        lines: list[bytes] = []
        with source.path.open("rb") as handle:
            for line in handle:
                lines.append(line.rstrip(b"\r\n"))
                if len(lines) >= chunk:
                    yield lines
                    lines = []
        if lines:
            yield lines
        return
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    try:
        described = con.execute(
            f"DESCRIBE SELECT * FROM {_reader(source.format)}", [str(source.path)]
        ).fetchall()
        fields = ", ".join(
            f"{_quote_key(name)} := {_expression(name, str(kind))}" for name, kind, *_ in described
        )
        cursor = con.execute(
            f"SELECT CAST(to_json(struct_pack({fields})) AS VARCHAR) FROM {_reader(source.format)}",
            [str(source.path)],
        )
        while True:
            rows = cursor.fetchmany(chunk)
            if not rows:
                return
            yield [row[0].encode() for row in rows]
    except duckdb.Error as exc:
        raise ValidationError.at("FILE", f"cannot read {source.path.name}: {exc}") from exc
    finally:
        con.close()


def _quote_key(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'
