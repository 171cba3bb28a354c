"""User-written SQL (SQL metrics) checked by walking its parsed tree before it goes near a database.

This is the first of three fences; the store adds the others (a read-only transaction on an
engine with file and network access off and its configuration locked, and a time limit). The
tree walk is what decides *which tables* a query may read: evidence tables and the ones the
operator lists, never the control plane (API keys, flags, audit), however the name is spelled.
"""

from __future__ import annotations

from collections.abc import Iterable

import sqlglot
from sqlglot import exp
from sqlglot.optimizer.scope import traverse_scope

from ramplight.core.errors import FieldProblem

EVIDENCE_TABLES: frozenset[str] = frozenset({"exposures", "events", "evals", "spans"})
"""What every SQL metric may read."""

CONTROL_TABLES: frozenset[str] = frozenset(
    {
        "api_keys",
        "audit_chains",
        "change_requests",
        "decisions",
        "environments",
        "eval_gates",
        "flag_changes",
        "flags",
        "ingest_segments",
        "metrics",
        "plans",
        "prices",
        "schema_migrations",
        "segments",
        "sessions",
        "sources",
        "users",
    }
)
"""Never readable from user SQL, even if an operator lists one."""

# Scalar functions that reach outside the rows a query names: other tables, sequences (writes),
# settings, variables, the environment, or SQL execution of their own. Table functions are
# refused wholesale (a FROM item must be a table name), so `read_*`, `glob`, `query_table` and
# friends never get that far.
_FORBIDDEN_FUNCTIONS = frozenset(
    {
        "currval",
        "current_setting",
        "getenv",
        "getvariable",
        "json_execute_serialized_sql",
        "nextval",
        "query",
        "query_table",
        "read_blob",
        "read_text",
        "set_config",
        "setval",
        "ts_rewrite",
        "ts_stat",
        "sql_auto_complete",
        "which_secret",
    }
)
_FORBIDDEN_PREFIXES = (
    "duckdb_", "pragma_", "read_", "parquet_", "iceberg_", "delta_", "sqlite_", "pg_",
    # PostgreSQL: large objects (server files), other databases, and functions that run a query
    # given as text (the tree walk could not see what it reads).
    "lo_", "dblink", "query_to_", "table_to_", "cursor_to_", "schema_to_", "database_to_",
)  # fmt: skip


def _function_name(node: exp.Func) -> str:
    return (node.name if isinstance(node, exp.Anonymous) else node.sql_name()).lower()


def _is_forbidden(name: str) -> bool:
    return name in _FORBIDDEN_FUNCTIONS or name.startswith(_FORBIDDEN_PREFIXES)


def check_user_sql(
    sql: str, allowed_tables: Iterable[str], field: str = "sql", dialect: str = "duckdb"
) -> tuple[exp.Query | None, list[FieldProblem]]:
    """Parse `sql` and list every reason it may not run; the tree is returned when there are none."""
    allowed = {t.lower() for t in allowed_tables} - CONTROL_TABLES
    try:
        parsed = sqlglot.parse(sql, read=dialect)
    except sqlglot.errors.SqlglotError as exc:
        return None, [FieldProblem(field, f"does not parse: {str(exc).splitlines()[0]}")]
    statements = [p for p in parsed if p is not None]
    if len(statements) != 1 or not isinstance(statements[0], exp.Query):
        return None, [FieldProblem(field, "must be exactly one SELECT query (no SET, ATTACH, COPY, writes)")]
    tree = statements[0]
    problems: list[str] = []
    try:
        scopes = traverse_scope(tree)
    except sqlglot.errors.SqlglotError as exc:
        return None, [FieldProblem(field, f"cannot be analysed: {exc}")]
    for scope in scopes:
        for table in scope.tables:
            if not isinstance(table.this, exp.Identifier):
                name = _function_name(table.this) if isinstance(table.this, exp.Func) else table.this.sql()
                problems.append(f"reads from {name}(…): table functions and files are not allowed")
                continue
            name = table.name.lower()
            if name in scope.cte_sources and not table.db:
                continue
            if table.catalog or table.db.lower() not in ("", "main"):
                problems.append(f"names {table.sql(dialect=dialect)}: only unqualified table names")
            elif name in CONTROL_TABLES:
                problems.append(f"reads {name}, a control-plane table")
            elif name not in allowed:
                readable = ", ".join(sorted(allowed))
                problems.append(f"reads {name!r}, which is not readable (readable: {readable})")
    for node in tree.find_all(exp.Func):
        name = _function_name(node)
        if _is_forbidden(name):
            problems.append(f"calls {name}(), which is not allowed in user SQL")
    unique = list(dict.fromkeys(problems))
    if unique:
        return None, [FieldProblem(field, reason) for reason in unique]
    return tree, []
