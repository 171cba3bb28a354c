"""Evidence sources compiled into the analysis: the team's tables read as `exposures` and `events`.

A source (`core.sources.Source`) becomes a SELECT with exactly the columns of the evidence table
it feeds, in the same order; `with_sources` then replaces every reference to that table in an
analysis tree by `(own table UNION ALL each source)`, so the readout, the data-quality figures,
the export and the timeline run on them exactly as on Ramplight's own tables — and the SQL that
`ramplight sql` prints is the SQL that runs, sources included. The canonical tree is DuckDB's;
`analysis.sql.render` takes it to the store's dialect like any other statement.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache

import sqlglot
from sqlglot import exp

from ramplight.core.sources import DEFAULT_ENVIRONMENT, FIELDS, JSON_FIELDS, Source

_TYPES = {"ts": "TIMESTAMPTZ", "value": "DOUBLE"}
"""Casts of mapped fields; the others are text (`VARCHAR`), JSON fields are taken as they are."""

_ALIAS = "src"


@lru_cache(maxsize=64)
def _query(sql: str) -> exp.Query:
    tree = sqlglot.parse_one(sql, read="duckdb")
    assert isinstance(tree, exp.Query)
    return tree


def _reference(reference: str) -> exp.Expr:
    """`column` or `column.json.path` (text at that path) of the source's query."""
    column, *path = reference.split(".")
    value = exp.column(column, _ALIAS, quoted=True)
    if not path:
        return value
    keys = [exp.JSONPathKey(this=key) for key in path]
    return exp.JSONExtractScalar(this=value, expression=exp.JSONPath(expressions=[exp.JSONPathRoot(), *keys]))


def _number(reference: str) -> exp.Expr:
    """A number from a column (cast) or from JSON text, where `true`/`false` count as 1/0."""
    value = _reference(reference)
    if "." not in reference:
        return exp.cast(value, "DOUBLE")
    return (
        exp.Case()
        .when(exp.EQ(this=value.copy(), expression=exp.Literal.string("true")), exp.Literal.number(1))
        .when(exp.EQ(this=value.copy(), expression=exp.Literal.string("false")), exp.Literal.number(0))
        .else_(exp.cast(value, "DOUBLE"))
    )


def _field(source: Source, name: str) -> exp.Expr:
    if name in source.fields:
        reference = source.fields[name]
        if name == "value":
            return _number(reference)
        if name in JSON_FIELDS:
            return _reference(reference)
        return exp.cast(_reference(reference), _TYPES.get(name, "VARCHAR"))
    if name in source.constants:
        value = source.constants[name]
        if name == "value":
            return exp.cast(exp.Literal.number(value), "DOUBLE")
        return exp.cast(exp.Literal.string(str(value)), "VARCHAR")
    if name == "served_variation":
        return _field(source, "assigned_variation")  # served as assigned unless mapped
    if name == "environment":
        return exp.cast(exp.Literal.string(DEFAULT_ENVIRONMENT), "VARCHAR")
    return exp.Null()


def columns_probe(source: Source) -> exp.Subquery:
    """The source's own query as a FROM item (its columns before any mapping)."""
    return exp.Subquery(this=_query(source.sql).copy(), alias=exp.to_identifier(_ALIAS))


def _select(source: Source, overrides: dict[str, exp.Expr] | None = None) -> exp.Select:
    overrides = overrides or {}
    columns = [exp.alias_(overrides.get(n) or _field(source, n), n) for n in FIELDS[source.kind]]
    select = exp.select(*columns).from_(
        exp.Subquery(this=_query(source.sql).copy(), alias=exp.to_identifier(_ALIAS))
    )
    return select


def relation(source: Source) -> exp.Query:
    """The source as rows of its evidence table: one per row of its query or, with `outcomes`,
    one per outcome whose value is not NULL."""
    if not source.outcomes:
        return _select(source)
    parts: list[exp.Query] = []
    for name, reference in source.outcomes.items():
        value = _number(reference)
        row = _select(source, {"name": exp.cast(exp.Literal.string(name), "VARCHAR"), "value": value})
        parts.append(row.where(exp.Not(this=exp.Is(this=_reference(reference), expression=exp.Null()))))
    union: exp.Query = parts[0]
    for other in parts[1:]:
        union = exp.union(union, other, distinct=False)
    return union


def own(kind: str) -> exp.Select:
    """Ramplight's own table with the columns a source gives, in the same order."""
    return exp.select(*(exp.column(n) for n in FIELDS[kind])).from_(kind)


def with_sources(tree: exp.Expr, sources: Sequence[Source]) -> exp.Expr:
    """`tree` with every unqualified reference to a table that sources feed replaced by the union
    of that table and its sources (a copy; `tree` itself when no source applies)."""
    kinds: dict[str, list[Source]] = {}
    for source in sources:
        kinds.setdefault(source.kind, []).append(source)
    if not kinds:
        return tree
    tree = tree.copy()
    ctes = {cte.alias for cte in tree.find_all(exp.CTE)}  # a user's CTE named `events` is its own
    targets = [
        t
        for t in tree.find_all(exp.Table)
        if t.name in kinds
        and t.name not in ctes
        and not t.db
        and not t.catalog
        and isinstance(t.this, exp.Identifier)
    ]
    for table in targets:
        union: exp.Query = own(table.name)
        for source in kinds[table.name]:
            union = exp.union(union, relation(source), distinct=False)
        alias = table.alias or table.name
        table.replace(exp.Subquery(this=union, alias=exp.TableAlias(this=exp.to_identifier(alias))))
    return tree


def probe(source: Source, rows: int = 100) -> exp.Select:
    """The source's relation on its first `rows` rows: running it binds every mapped column and
    casts real values (a text time that is not one fails here, not in a readout)."""
    relation_ = exp.Subquery(this=relation(source), alias=exp.to_identifier("probe"))
    return exp.select(exp.Star()).from_(relation_).limit(rows)
