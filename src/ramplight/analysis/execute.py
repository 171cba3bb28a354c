"""Running analysis SQL on the store. Statements that embed user-written SQL (SQL metrics, and
the evidence sources over the team's own tables) are checked first, run under the sandbox's time
limit, and fail as a 422 that names the metric or source and the engine's reason — never as a
500. `sql_of` is the one place an analysis tree becomes text: the store's sources are spliced in
(`analysis.sources`), then the tree is rendered for the dialect."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

from sqlglot import exp

from ramplight.analysis.sources import with_sources
from ramplight.analysis.sql import Dialect, render
from ramplight.core.errors import FieldProblem, QueryError, ValidationError
from ramplight.core.metrics import Metric
from ramplight.core.sources import Source
from ramplight.core.usersql import check_user_sql
from ramplight.store.base import Store


def store_dialect(store: Store) -> Dialect:
    """The SQL dialect `store` runs (a store without one is the embedded DuckDB)."""
    dialect: Dialect = getattr(store, "dialect", "duckdb")
    return dialect


def evidence_sources(store: Store) -> list[Source]:
    """The store's evidence sources (none for a store without a control plane of its own)."""
    lister = getattr(store, "list_sources", None)
    return list(lister()) if callable(lister) else []


def sql_of(store: Store, tree: exp.Expr, dialect: Dialect | None = None, pretty: bool = False) -> str:
    """The text of an analysis statement as it runs on `store` (or would on `dialect`): with the
    store's evidence sources in place of the tables they feed."""
    return render(with_sources(tree, evidence_sources(store)), dialect or store_dialect(store), pretty=pretty)


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
        fetch(store, probe, [metric])


UserSql = Metric | Source
"""Definitions whose user-written SQL a statement embeds."""


def _label(user: Sequence[UserSql]) -> str:
    parts = []
    metrics = [u.key for u in user if isinstance(u, Metric)]
    sources = [u.key for u in user if isinstance(u, Source)]
    if metrics:
        parts.append(("SQL metric " if len(metrics) == 1 else "SQL metrics ") + ", ".join(map(repr, metrics)))
    if sources:
        parts.append(("source " if len(sources) == 1 else "sources ") + ", ".join(map(repr, sources)))
    return " or ".join(parts)


@contextmanager
def naming_user_sql(user: Sequence[UserSql]) -> Iterator[None]:
    """Re-raise a failed query that embeds the SQL metrics or sources `user` as a 422 naming them."""
    try:
        yield
    except QueryError as exc:
        if not user:
            raise
        raise ValidationError(
            f"{_label(user)}: {exc.reason}",
            tuple(
                FieldProblem(f"{'metrics' if isinstance(u, Metric) else 'sources'}.{u.key}.sql", exc.reason)
                for u in user
            ),
        ) from exc


def read(
    store: Store,
    statement: str | exp.Expr,
    user: Sequence[UserSql] = (),
    params: Mapping[str, Any] | None = None,
) -> tuple[list[str], list[tuple[Any, ...]]]:
    """(names, rows) of `statement` (text, or a tree that `sql_of` renders with the store's
    sources, which then count as embedded user SQL); `user` names the SQL metrics embedded in it,
    if any; `params` binds `$name` placeholders."""
    if isinstance(statement, exp.Expr):
        sources = evidence_sources(store)
        sql = render(with_sources(statement, sources), store_dialect(store))
        user = [*user, *sources]
    else:
        sql = statement
    with naming_user_sql(user):
        return store.read(sql, params or (), timeout_s=store.sandbox.timeout_s if user else None)


def fetch(
    store: Store,
    statement: str | exp.Expr,
    user: Sequence[UserSql] = (),
    params: Mapping[str, Any] | None = None,
) -> list[dict[str, Any]]:
    """Rows of `statement` as dicts (decimals as floats)."""
    names, rows = read(store, statement, user, params)
    return [
        {
            n: (float(v) if v is not None and type(v).__name__ == "Decimal" else v)
            for n, v in zip(names, row, strict=True)
        }
        for row in rows
    ]
