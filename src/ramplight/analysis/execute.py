"""Running analysis SQL on the store. Statements that embed user-written SQL (SQL metrics) are
checked metric by metric first, run under the sandbox's time limit, and fail as a 422 that
names the metric and the engine's reason — never as a 500."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

from sqlglot import exp

from ramplight.analysis.sql import Dialect, render
from ramplight.core.errors import FieldProblem, QueryError, ValidationError
from ramplight.core.metrics import Metric
from ramplight.core.usersql import check_user_sql
from ramplight.store.base import Store


def store_dialect(store: Store) -> Dialect:
    """The SQL dialect `store` runs (a store without one is the embedded DuckDB)."""
    dialect: Dialect = getattr(store, "dialect", "duckdb")
    return dialect


def user_sql_metrics(metrics: Sequence[Metric]) -> list[Metric]:
    return [m for m in metrics if m.type == "sql" and m.sql is not None]


def check_sql_metrics(store: Store, metrics: Sequence[Metric]) -> None:
    """Refuse each SQL metric that may not or cannot run here, naming it: the tree check against
    what this store lets user SQL read (the definition may predate a tightened list), then a
    zero-row run that binds every table and column."""
    for metric in user_sql_metrics(metrics):
        assert metric.sql is not None
        tree, problems = check_user_sql(metric.sql, store.sandbox.readable, field=f"metrics.{metric.key}.sql")
        if tree is None:
            raise ValidationError(
                f"SQL metric {metric.key!r} {problems[0].reason}"
                + (f" (and {len(problems) - 1} more problems)" if len(problems) > 1 else ""),
                tuple(problems),
            )
        probe = exp.select("unit_id", "ts", "value").from_(tree.subquery("user_metric")).limit(0)
        fetch(store, render(probe, store_dialect(store)), [metric])


@contextmanager
def naming_user_sql(user: Sequence[Metric]) -> Iterator[None]:
    """Re-raise a failed query that embeds the SQL metrics `user` as a 422 naming them."""
    try:
        yield
    except QueryError as exc:
        if not user:
            raise
        keys = ", ".join(repr(m.key) for m in user)
        label = "SQL metric" if len(user) == 1 else "SQL metrics"
        raise ValidationError(
            f"{label} {keys}: {exc.reason}",
            tuple(FieldProblem(f"metrics.{m.key}.sql", exc.reason) for m in user),
        ) from exc


def read(
    store: Store, sql: str, user: Sequence[Metric] = (), params: Mapping[str, Any] | None = None
) -> tuple[list[str], list[tuple[Any, ...]]]:
    """(names, rows) of `sql`; `user` names the SQL metrics embedded in it, if any; `params`
    binds `$name` placeholders."""
    with naming_user_sql(user):
        return store.read(sql, params or (), timeout_s=store.sandbox.timeout_s if user else None)


def fetch(
    store: Store, sql: str, user: Sequence[Metric] = (), params: Mapping[str, Any] | None = None
) -> list[dict[str, Any]]:
    """Rows of `sql` as dicts (decimals as floats)."""
    names, rows = read(store, sql, user, params)
    return [
        {
            n: (float(v) if v is not None and type(v).__name__ == "Decimal" else v)
            for n, v in zip(names, row, strict=True)
        }
        for row in rows
    ]
