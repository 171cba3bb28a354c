"""Analysis SQL as data: every statement the readout runs is a sqlglot expression tree, built
once per spec and rendered per dialect.

The tree is canonical, written in DuckDB's terms: identifiers are fixed or positional (`m0`,
`p1`, `g0`, …), never user text, and user values (names, paths, times) are literals. A construct
without one spelling that DuckDB, PostgreSQL and ClickHouse all accept is rewritten on a copy of
the tree by that dialect's transform (`_TRANSFORMS`): first-by-time (`ARG_MIN`), JSON paths,
quantile lists, timestamp literals, and ClickHouse's join and CTE semantics. Anything already
portable (CASE inside aggregates instead of FILTER, intervals, casts) is built that way.

One statement computes the per-unit relation (first exposure, assigned and served variation,
phase, segment, each metric's per-unit value inside its attribution window and, for CUPED, its
pre-period value) and aggregates it to sufficient statistics per phase, variation and segment,
beside the data-quality figures; an event-level quantile adds one statement of its own.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache
from typing import Literal

import sqlglot
from sqlglot import exp

from ramplight.core.metrics import Metric

Dialect = Literal["duckdb", "postgres", "clickhouse"]
DIALECTS: tuple[Dialect, ...] = ("duckdb", "postgres", "clickhouse")

# -- building blocks ---------------------------------------------------------------------------

_DOUBLE = "DOUBLE"
_TIMESTAMPTZ = "TIMESTAMPTZ"
_UID = "uid"
"""The exposed relation's integer unit key (`ROW_NUMBER()`), which later joins and groupings use
instead of the unit_id text; ClickHouse keys on unit_id itself (see `_clickhouse`)."""


def _str(value: str) -> exp.Expr:
    return exp.Literal.string(value)


def _num(value: float) -> exp.Expr:
    return exp.Literal.number(int(value) if float(value).is_integer() else repr(float(value)))


def _col(name: str, table: str | None = None) -> exp.Column:
    return exp.column(name, table)


def _ts(value: datetime) -> exp.Cast:
    return exp.cast(_str(value.astimezone(UTC).isoformat()), _TIMESTAMPTZ, copy=False)


def _interval(hours: float) -> exp.Interval:
    """`hours` as an interval literal in the coarsest whole unit (fractional hours are common)."""
    micros = round(hours * 3_600_000_000)
    for unit, size in (("HOUR", 3_600_000_000), ("MINUTE", 60_000_000), ("SECOND", 1_000_000)):
        if micros % size == 0:
            return exp.Interval(this=_num(micros // size), unit=exp.var(unit))
    return exp.Interval(this=_num(micros), unit=exp.var("MICROSECOND"))


def _json_text(value: exp.Expr, path: str) -> exp.JSONExtractScalar:
    """The text at `path` (`a.b`) inside the JSON `value`; NULL when absent."""
    keys = [exp.JSONPathKey(this=key) for key in path.split(".")]
    return exp.JSONExtractScalar(this=value, expression=exp.JSONPath(expressions=[exp.JSONPathRoot(), *keys]))


def _json_number(value: exp.Expr, path: str) -> exp.Cast:
    return exp.cast(_json_text(value, path), _DOUBLE, copy=False)


def _double(value: float) -> exp.Cast:
    return exp.cast(_num(value), _DOUBLE, copy=False)


def _when(condition: exp.Expr, value: exp.Expr, otherwise: exp.Expr | None = None) -> exp.Case:
    case = exp.Case().when(condition, value, copy=False)
    return case.else_(otherwise, copy=False) if otherwise is not None else case


def _count_if(condition: exp.Expr) -> exp.Count:
    """COUNT(CASE WHEN … THEN 1 END): what FILTER says, in every dialect."""
    return exp.Count(this=_when(condition, _num(1)))


def _agg(name: str, value: exp.Expr) -> exp.Func:
    return {"SUM": exp.Sum, "AVG": exp.Avg, "MAX": exp.Max, "MIN": exp.Min}[name](this=value)


def _and(*conditions: exp.Expr | None) -> exp.Expr:
    """The conjunction, flat (nested ANDs are spliced in, so no parentheses pile up)."""
    parts = [p for c in conditions if c is not None for p in (c.flatten() if isinstance(c, exp.And) else [c])]
    return parts[0] if len(parts) == 1 else exp.and_(*parts, copy=False)


def _eq(left: exp.Expr, right: exp.Expr) -> exp.EQ:
    return exp.EQ(this=left, expression=right)


def _is_null(value: exp.Expr) -> exp.Is:
    return exp.Is(this=value, expression=exp.Null())


def _not_null(value: exp.Expr) -> exp.Not:
    return exp.Not(this=_is_null(value))


def _as(value: exp.Expr, name: str) -> exp.Expr:
    return exp.alias_(value, name, copy=False)


def _subquery(query: exp.Query, alias: str) -> exp.Subquery:
    return query.subquery(alias, copy=False)


def _table(name: str, alias: str) -> exp.Expr:
    return exp.to_table(name).as_(alias, copy=False)


def _cte(name: str, query: exp.Query, materialized: bool = False) -> exp.CTE:
    return exp.CTE(
        this=query, alias=exp.TableAlias(this=exp.to_identifier(name)), materialized=materialized or None
    )


def _with(ctes: Sequence[exp.CTE], query: exp.Select) -> exp.Select:
    query.set("with_", exp.With(expressions=list(ctes)))
    return query


def _join(
    query: exp.Select, source: exp.Expr, on: exp.Expr | None = None, kind: str | None = None
) -> exp.Select:
    """query JOIN source ON on (`kind` LEFT or CROSS), built without parsing text."""
    join = exp.Join(this=source, on=on)
    if kind == "LEFT":
        join.set("side", "LEFT")
    elif kind == "CROSS":
        join.set("kind", "CROSS")
    return query.join(join, copy=False)


# -- the spec ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ReadoutSpec:
    """Everything the readout query depends on (hashable: trees are cached per spec)."""

    flag_key: str
    environment: str
    assignment_unit: str
    metrics: tuple[Metric, ...]
    phase_starts: tuple[datetime, ...] = ()
    segment: str | None = None
    served: bool = False
    """Group by the served variation (as-served) instead of the assigned one (intent-to-treat)."""
    variations: tuple[str, ...] = ()
    """The flag's variations: the readout's data-quality figures per variation (`dq_units_0`, …)."""
    prices: tuple[tuple[str, float, float], ...] = ()
    """The price table as (model, USD per million input tokens, per million output tokens): a
    span's cost when it carries none (core/prices.py)."""
    quantiles: tuple[Metric, ...] = ()
    """Event-level quantile metrics: their events per unit are counted in the readout's statement
    (`q0_n`, …), which sets each quantile's density bandwidth before its own statement runs."""
    until: datetime | None = None
    """The evidence as of this moment: only exposures, events, evals and spans stamped before it
    (a span by its end) are read. None: all of it (the statements are then unchanged)."""


def _before(spec: ReadoutSpec, ts: exp.Expr) -> exp.Expr | None:
    """`ts < until` when the spec reads the evidence as of a moment, else nothing."""
    return None if spec.until is None else exp.LT(this=ts, expression=_ts(spec.until))


def per_unit_metrics(metrics: Sequence[Metric], known: dict[str, Metric]) -> list[Metric]:
    """Metrics that need a per-unit value, ratio components included, each once, in order."""
    out: dict[str, Metric] = {}
    for metric in metrics:
        if metric.type == "ratio":
            for ref in (metric.numerator, metric.denominator):
                assert ref is not None
                out.setdefault(ref, known[ref])
        elif metric.type != "quantile":
            out.setdefault(metric.key, metric)
    return list(out.values())


@lru_cache(maxsize=64)
def _user_sql(sql: str) -> exp.Query:
    """A SQL metric's query (checked by `core.usersql` before it runs), parsed once."""
    tree = sqlglot.parse_one(sql, read="duckdb")
    assert isinstance(tree, exp.Query)
    return tree


def _user_metric_source(metric: Metric, spec: ReadoutSpec) -> exp.Select:
    """SELECT unit_id (as text), ts, value FROM (the metric's SQL)."""
    user = _user_sql(metric.sql or "").copy()
    query = exp.select(
        _as(exp.cast(_col("unit_id"), exp.DataType.build("VARCHAR"), copy=False), "unit_id"),
        _col("ts"),
        _as(exp.cast(_col("value"), _DOUBLE, copy=False), "value"),
        copy=False,
    ).from_(_subquery(user, "user_metric"), copy=False)
    cutoff = _before(spec, _col("ts"))
    return query if cutoff is None else query.where(cutoff, copy=False)


def _event_value(metric: Metric, table: str | None) -> exp.Expr:
    """The number an event metric reads from one event row (`value` or a JSON property)."""
    if metric.value == "value":
        return _col("value", table)
    return _json_number(_col("properties", table), metric.value.removeprefix("properties."))


def _quantile_source(metric: Metric, spec: ReadoutSpec) -> exp.Select:
    """SELECT unit_id, ts, x FROM events (or spans) …: a quantile's raw rows, before any join."""
    if metric.span_field is not None:
        spans = _span_source(spec)
        query = exp.select(
            _col("unit_id"),
            _col("ts"),
            _as(exp.cast(_col(metric.span_field), _DOUBLE, copy=False), "x"),
            copy=False,
        ).from_(_subquery(spans, "sp_rows"), copy=False)
        return (
            query.where(_eq(_col("name"), _str(metric.span_name)), copy=False) if metric.span_name else query
        )
    assert metric.event is not None
    return (
        exp.select(_col("unit_id"), _col("ts"), _as(_event_value(metric, None), "x"), copy=False)
        .from_("events", copy=False)
        .where(
            _and(
                _eq(_col("environment"), _str(spec.environment)),
                _eq(_col("name"), _str(metric.event)),
                _eq(_col("assignment_unit"), _str(spec.assignment_unit)),
                _before(spec, _col("ts")),
            ),
            copy=False,
        )
    )


_AGGREGATES = {"count": "SUM", "sum": "SUM", "mean": "AVG", "binary": "MAX", "max": "MAX"}
_SPAN_COLUMNS = ("name", "status", "duration_ms", "input_tokens", "output_tokens", "cost_usd")


def _group(metric: Metric) -> str:
    """Metrics read from the same table share one scan, join and group-by."""
    if metric.type in ("sql", "claim"):
        return f"{metric.type}:{metric.key}"
    return {"event": "events", "eval": "evals"}.get(metric.type, "spans")


def _flag_events(spec: ReadoutSpec) -> exp.Expr:
    """The outcome events that should join this flag: its own, or unflagged ones of its unit."""
    return exp.func(
        "COALESCE",
        _eq(_col("flag_key"), _str(spec.flag_key)),
        _eq(_col("assignment_unit"), _str(spec.assignment_unit)),
    )


def _in(column: exp.Expr, values: Sequence[str]) -> exp.In:
    return exp.In(this=column, expressions=[_str(v) for v in values])


def _group_source(
    group: str, members: Sequence[Metric], spec: ReadoutSpec, quality: bool, quantiles: Sequence[Metric] = ()
) -> exp.Select:
    env = _and(_eq(_col("environment"), _str(spec.environment)), _before(spec, _col("ts")))
    if group == "events":
        names = sorted({m.event or "" for m in [*members, *quantiles]})
        unit = _eq(_col("assignment_unit"), _str(spec.assignment_unit))
        metric_rows = _and(unit, _in(_col("name"), names) if names else None)
        columns: list[exp.Expr] = [_col(c) for c in ("unit_id", "ts", "name", "value", "properties")]
        if not quality:
            return (
                exp.select(*columns, copy=False)
                .from_("events", copy=False)
                .where(_and(env, metric_rows), copy=False)
            )
        # The same scan and join also serve the joinability figures: the flag's outcome events
        # ride along, marked, and the metrics keep to their own rows.
        rows = (
            exp.or_(exp.paren(metric_rows), _flag_events(spec), copy=False) if names else _flag_events(spec)
        )
        own = exp.func("COALESCE", _eq(_col("flag_key"), _str(spec.flag_key)), exp.false())
        columns += [_as(unit.copy(), "metric_row"), _as(_flag_events(spec), "flag_row"), _as(own, "own_row")]
        return (
            exp.select(*columns, copy=False)
            .from_("events", copy=False)
            .where(_and(env, exp.paren(rows)), copy=False)
        )
    if group == "evals":
        return _eval_source(spec, sorted({m.eval or "" for m in members}))
    if group == "spans":
        return _span_source(spec)
    (metric,) = members
    if metric.type == "claim":
        return _claim_source(metric, spec)
    return _user_metric_source(metric, spec)


def _claim_source(metric: Metric, spec: ReadoutSpec) -> exp.Select:
    """SELECT unit_id, ts, value FROM events: the metric's claim events that carry a trace id,
    each 1 when its trace has no span of the named kind (claimed but not done), else 0."""
    backed = (
        exp.select(_as(_col("trace_id"), "backed_trace"), copy=False)
        .from_("spans", copy=False)
        .where(
            _and(
                _eq(_col("environment"), _str(spec.environment)),
                _eq(_col("name"), _str(metric.span_name or "")),
            ),
            copy=False,
        )
        .group_by(_col("trace_id"), copy=False)
    )
    query = exp.select(
        _as(_col("unit_id", "e"), "unit_id"),
        _as(_col("ts", "e"), "ts"),
        _as(_when(_is_null(_col("backed_trace", "b")), _double(1), _double(0)), "value"),
        copy=False,
    ).from_(_table("events", "e"), copy=False)
    query = _join(
        query, _subquery(backed, "b"), _eq(_col("backed_trace", "b"), _col("trace_id", "e")), "LEFT"
    )
    return query.where(
        _and(
            _eq(_col("environment", "e"), _str(spec.environment)),
            _eq(_col("name", "e"), _str(metric.event or "")),
            _eq(_col("assignment_unit", "e"), _str(spec.assignment_unit)),
            _not_null(_col("trace_id", "e")),
            _before(spec, _col("ts", "e")),
        ),
        copy=False,
    )


def _eval_source(spec: ReadoutSpec, names: Sequence[str]) -> exp.Select:
    """SELECT unit_id, ts, name, evaluator, score FROM evals: a score without a unit of its own
    takes its span's (by trace and span id, or by `gen_ai.response.id`), else its trace's — the
    root span's or the exposure's sharing the trace (docs/traces.md)."""
    env = _eq(_col("environment"), _str(spec.environment))
    spans = exp.select(
        _col("trace_id"), _col("span_id"), _col("response_id"), _as(_col("unit_id"), "span_unit"), copy=False
    ).from_("spans", copy=False)
    by_span = spans.where(env.copy(), copy=False)
    by_response = (
        exp.select(
            _col("response_id"),
            _as(exp.Min(this=_col("trace_id")), "response_trace"),
            _as(exp.Min(this=_col("unit_id")), "response_unit"),
            copy=False,
        )
        .from_("spans", copy=False)
        .where(_and(env.copy(), _not_null(_col("response_id"))), copy=False)
        .group_by(_col("response_id"), copy=False)
    )
    trace = exp.func("COALESCE", _col("trace_id", "e"), _col("response_trace", "r"))
    query = exp.select(
        _as(
            exp.func(
                "COALESCE",
                _col("unit_id", "e"),
                _col("span_unit", "b"),
                _col("response_unit", "r"),
                _col("trace_unit", "rt"),
                _col("trace_unit", "xt"),
            ),
            "unit_id",
        ),
        *(_as(_col(c, "e"), c) for c in ("ts", "name", "evaluator", "score")),
        copy=False,
    ).from_(_table("evals", "e"), copy=False)
    query = _join(
        query,
        _subquery(by_span, "b"),
        _and(
            _eq(_col("trace_id", "b"), _col("trace_id", "e")), _eq(_col("span_id", "b"), _col("span_id", "e"))
        ),
        "LEFT",
    )
    query = _join(
        query, _subquery(by_response, "r"), _eq(_col("response_id", "r"), _col("response_id", "e")), "LEFT"
    )
    for alias, table in (("rt", "spans"), ("xt", "exposures")):
        on = _eq(_col("trace_id", alias), trace.copy())
        query = _join(query, _subquery(_trace_units(spec, table), alias), on, "LEFT")
    return query.where(
        _and(
            _eq(_col("environment", "e"), _str(spec.environment)),
            _in(_col("name", "e"), list(names)),
            _before(spec, _col("ts", "e")),
        ),
        copy=False,
    )


def _trace_units(spec: ReadoutSpec, table: str) -> exp.Select:
    """One unit per trace, from `table`: the root spans that name one, or the flag's exposures
    that carry the trace id (the least unit when a trace names several)."""
    own = _and(
        _eq(_col("environment"), _str(spec.environment)),
        _not_null(_col("unit_id")),
        _not_null(_col("trace_id")),
        _is_null(_col("parent_span_id")) if table == "spans" else _eq(_col("flag_key"), _str(spec.flag_key)),
    )
    return (
        exp.select(_col("trace_id"), _as(exp.Min(this=_col("unit_id")), "trace_unit"), copy=False)
        .from_(table, copy=False)
        .where(own, copy=False)
        .group_by(_col("trace_id"), copy=False)
    )


def span_unit(table: str = "sp") -> exp.Expr:
    """A span's unit: its own, else its trace's root span's, else the exposure's sharing its trace."""
    return exp.func("COALESCE", _col("unit_id", table), _col("trace_unit", "rt"), _col("trace_unit", "xt"))


def span_cost(prices: Sequence[tuple[str, float, float]], table: str = "sp") -> exp.Expr:
    """A span's cost: its own, else its tokens at its model's price — the exact name, else the
    longest entry the name starts with; NULL without either (never a silent zero)."""
    model = _col("gen_ai_model", table)
    tokens = (_col("input_tokens", table), _col("output_tokens", table))
    case = exp.Case()
    ordered = sorted(prices, key=lambda p: (-len(p[0]), p[0]))
    for name, per_input, per_output in ordered:
        priced = exp.Add(
            this=_product(exp.func("COALESCE", tokens[0].copy(), _num(0)), _double(per_input / 1e6)),
            expression=_product(exp.func("COALESCE", tokens[1].copy(), _num(0)), _double(per_output / 1e6)),
        )
        matches = exp.or_(
            _eq(model.copy(), _str(name)),
            exp.StartsWith(this=model.copy(), expression=_str(name)),
            copy=False,
        )
        case = case.when(exp.paren(matches), priced, copy=False)
    if not ordered:
        return exp.cast(_col("cost_usd", table), _DOUBLE, copy=False)
    return exp.func("COALESCE", exp.cast(_col("cost_usd", table), _DOUBLE, copy=False), case)


def _span_source(spec: ReadoutSpec, extra: Sequence[str] = ()) -> exp.Select:
    """SELECT unit_id, ts, … FROM spans: a span without a unit id inherits its trace's, and a span
    without a cost is priced by its model (docs/traces.md). `extra`: more span columns.

    A span's `ts` is its end: the span that records the flag evaluation starts just before the
    exposure it contains, and still counts (a span that ended before the exposure does not)."""
    columns = [
        _as(span_unit(), "unit_id"),
        _as(_col("end_ts", "sp"), "ts"),
        *(_col(c, "sp") for c in _SPAN_COLUMNS if c != "cost_usd"),
        _as(span_cost(spec.prices), "cost_usd"),
        # Named explicitly: `trace_id` is also a column of the joined trace units (ClickHouse would
        # otherwise name the column `sp.trace_id`).
        *(_as(_col(c, "sp"), c) for c in extra),
    ]
    query = exp.select(*columns, copy=False).from_(_table("spans", "sp"), copy=False)
    for alias, table in (("rt", "spans"), ("xt", "exposures")):
        on = _eq(_col("trace_id", "sp"), _col("trace_id", alias))
        query = _join(query, _subquery(_trace_units(spec, table), alias), on, "LEFT")
    return query.where(
        _and(_eq(_col("environment", "sp"), _str(spec.environment)), _before(spec, _col("end_ts", "sp"))),
        copy=False,
    )


TRACE_LEVELS = (0.5, 0.95)
"""The latency percentiles a trace summary reports (p50, p95)."""


def _trace_rows(spec: ReadoutSpec) -> exp.Select:
    """The spans of the readout's units from their first exposure on, with their variation."""
    s = "s"
    source = _span_source(spec, extra=("trace_id", "parent_span_id", "gen_ai_model"))
    return _join(
        exp.select(
            _col("variation", "u"),
            _col("name", s),
            _as(_is_null(_col("parent_span_id", s)), "root"),
            *(
                _col(c, s)
                for c in (
                    "trace_id",
                    "duration_ms",
                    "status",
                    "input_tokens",
                    "output_tokens",
                    "cost_usd",
                    "gen_ai_model",
                )
            ),
            copy=False,
        ).from_(_table("units", "u"), copy=False),
        _subquery(source, s),
        _eq(_col("unit_id", s), _col("unit_id", "u")),
    ).where(exp.GTE(this=_col("ts", s), expression=_col("first_ts", "u")), copy=False)


def traced_units_query(spec: ReadoutSpec) -> exp.Select:
    """Per variation, the readout's units with a trace of theirs (a root span, from their first
    exposure on): what per-unit trace figures divide by when traces are sampled."""
    source = _span_source(spec, extra=("parent_span_id",))
    query = _join(
        exp.select(
            _col("variation", "u"), _as(_distinct_count(_col("unit_id", "u")), "traced_units"), copy=False
        ).from_(_table("units", "u"), copy=False),
        _subquery(source, "s"),
        _eq(_col("unit_id", "s"), _col("unit_id", "u")),
    )
    query = (
        query.where(
            _and(
                exp.GTE(this=_col("ts", "s"), expression=_col("first_ts", "u")),
                _is_null(_col("parent_span_id", "s")),
            ),
            copy=False,
        )
        .group_by(_col("variation", "u"), copy=False)
        .order_by(_col("variation", "u"), copy=False)
    )
    return _with(_units_ctes(spec), query)


def route_query(spec: ReadoutSpec) -> exp.Select:
    """Per variation and model (`gen_ai_model`: the route a router or cascade took), in how many
    traces it ran, how many calls, their latency p50/p95, errors and priced cost."""
    levels = exp.Array(expressions=[_num(v) for v in TRACE_LEVELS])
    routes = (
        exp.select(
            _col("variation"),
            _as(_col("gen_ai_model"), "model"),
            _as(_distinct_count(_col("trace_id")), "traces"),
            _as(exp.Count(this=exp.Star()), "calls"),
            _as(exp.PercentileCont(this=_col("duration_ms"), expression=levels), "latency_ms"),
            _as(_count_if(_eq(_col("status"), _str("error"))), "errors"),
            _as(exp.Sum(this=_col("cost_usd")), "cost_usd_total"),
            copy=False,
        )
        .from_(_subquery(_trace_rows(spec), "r"), copy=False)
        .where(_not_null(_col("gen_ai_model")), copy=False)
        .group_by(_col("variation"), _col("gen_ai_model"), copy=False)
        .order_by(_col("variation"), _col("gen_ai_model"), copy=False)
    )
    return _with(_units_ctes(spec), routes)


def trace_summary_query(spec: ReadoutSpec) -> exp.Select:
    """Per variation and span name — root spans apart — the spans of the readout's units from
    their first exposure on: how many, in how many traces, their latency p50 and p95 (interpolated,
    as QUANTILE_CONT), errors, tokens, cost (priced) and the spans whose cost is unknown."""
    rows = _trace_rows(spec)
    unknown_cost = _and(
        exp.paren(exp.or_(_not_null(_col("input_tokens")), _not_null(_col("output_tokens")))),
        _is_null(_col("cost_usd")),
    )
    levels = exp.Array(expressions=[_num(v) for v in TRACE_LEVELS])
    summary = (
        exp.select(
            _col("variation"),
            _col("name"),
            _col("root"),
            _as(exp.Count(this=exp.Star()), "spans"),
            _as(_distinct_count(_col("trace_id")), "traces"),
            _as(exp.PercentileCont(this=_col("duration_ms"), expression=levels), "latency_ms"),
            _as(_count_if(_eq(_col("status"), _str("error"))), "errors"),
            # No alias repeats a column name: ClickHouse would read the alias inside the other aggregates.
            _as(exp.Sum(this=_col("input_tokens")), "input_tokens_total"),
            _as(exp.Sum(this=_col("output_tokens")), "output_tokens_total"),
            _as(exp.Sum(this=_col("cost_usd")), "cost_usd_total"),
            _as(_count_if(unknown_cost), "spans_without_cost"),
            copy=False,
        )
        .from_(_subquery(rows, "r"), copy=False)
        .group_by(_col("variation"), _col("name"), _col("root"), copy=False)
        .order_by(_col("variation"), exp.Ordered(this=_col("root"), desc=True), _col("name"), copy=False)
    )
    return _with(_units_ctes(spec), summary)


def critical_path_query(spec: ReadoutSpec) -> exp.Select:
    """Per variation and span name, how many traces have such a span on their critical path and
    its mean duration there. The critical path starts at the root and goes, level by level, to
    the child that ends last (the least span id among children ending together): the spans that
    set the end-to-end time. Computed in the store, with a recursive CTE."""
    spans = _span_source(spec, extra=("trace_id", "span_id", "parent_span_id", "end_ts"))
    last = (
        exp.select(
            _col("trace_id"),
            _col("parent_span_id"),
            _as(exp.Max(this=_col("end_ts")), "last_end"),
            copy=False,
        )
        .from_("sx", copy=False)
        .where(_not_null(_col("parent_span_id")), copy=False)
        .group_by(_col("trace_id"), _col("parent_span_id"), copy=False)
    )
    last_child = _join(
        exp.select(
            _col("trace_id", "c"),
            _col("parent_span_id", "c"),
            _as(exp.Min(this=_col("span_id", "c")), "span_id"),
            copy=False,
        ).from_(_table("sx", "c"), copy=False),
        _subquery(last, "m"),
        _and(
            _eq(_col("trace_id", "c"), _col("trace_id", "m")),
            _eq(_col("parent_span_id", "c"), _col("parent_span_id", "m")),
            _eq(_col("end_ts", "c"), _col("last_end", "m")),
        ),
    ).group_by(_col("trace_id", "c"), _col("parent_span_id", "c"), copy=False)
    roots = (
        exp.select(_col("trace_id"), _col("span_id"), copy=False)
        .from_("sx", copy=False)
        .where(_is_null(_col("parent_span_id")), copy=False)
    )
    step = _join(
        exp.select(_col("trace_id", "p"), _col("span_id", "lc"), copy=False).from_(
            _table("path", "p"), copy=False
        ),
        _table("lc", "lc"),
        _and(
            _eq(_col("trace_id", "lc"), _col("trace_id", "p")),
            _eq(_col("parent_span_id", "lc"), _col("span_id", "p")),
        ),
    )
    on_path = _join(
        _join(
            exp.select(
                _col("variation", "u"),
                _col("name", "x"),
                _as(_distinct_count(_col("trace_id", "x")), "traces"),
                _as(exp.Avg(this=_col("duration_ms", "x")), "mean_duration_ms"),
                copy=False,
            ).from_(_table("path", "pa"), copy=False),
            _table("sx", "x"),
            _and(
                _eq(_col("trace_id", "x"), _col("trace_id", "pa")),
                _eq(_col("span_id", "x"), _col("span_id", "pa")),
            ),
        ),
        _table("units", "u"),
        _eq(_col("unit_id", "u"), _col("unit_id", "x")),
    )
    query = (
        on_path.where(exp.GTE(this=_col("ts", "x"), expression=_col("first_ts", "u")), copy=False)
        .group_by(_col("variation", "u"), _col("name", "x"), copy=False)
        .order_by(_col("variation", "u"), _col("name", "x"), copy=False)
    )
    ctes = [
        *_units_ctes(spec),
        # Materialized: the recursive step reads `lc` once per tree level, and `lc` and the
        # final join read `sx`; inlined, each level recomputed both over every span (a third
        # of the readout's time at 10 M spans). ClickHouse ignores this inside WITH RECURSIVE.
        _cte("sx", spans, materialized=True),
        _cte("lc", last_child, materialized=True),
        _cte("path", exp.union(roots, step, distinct=False)),
    ]
    query.set("with_", exp.With(expressions=ctes, recursive=True))
    return query


def any_span_query(environment: str) -> exp.Select:
    """One span of the environment, if there is any (whether a trace summary can show anything)."""
    return (
        exp.select(_col("span_id"), copy=False)
        .from_("spans", copy=False)
        .where(_eq(_col("environment"), _str(environment)), copy=False)
        .limit(1, copy=False)
    )


def eval_names_query(environment: str, limit: int = 12) -> exp.Select:
    """The eval scores of the environment by name and evaluator, most scored first: which evals
    the flag page reads out per variation."""
    return (
        exp.select(_col("name"), _col("evaluator"), _as(exp.Count(this=exp.Star()), "scores"), copy=False)
        .from_("evals", copy=False)
        .where(_and(_eq(_col("environment"), _str(environment)), _not_null(_col("score"))), copy=False)
        .group_by(_col("name"), _col("evaluator"), copy=False)
        .order_by(exp.Ordered(this=_col("scores"), desc=True), _col("name"), _col("evaluator"), copy=False)
        .limit(limit, copy=False)
    )


def representative_traces_query(spec: ReadoutSpec, level: float = 0.95) -> exp.Select:
    """Per variation, the root spans of the readout's units ranked by duration (ties by trace id),
    from the one at the `level` quantile up (nearest rank): the first is the variation's
    representative slow trace (what a waterfall shows), the rest ride along to cap nothing."""
    ranked = exp.Window(
        this=exp.RowNumber(),
        partition_by=[_col("variation")],
        order=exp.Order(
            expressions=[exp.Ordered(this=_col("duration_ms")), exp.Ordered(this=_col("trace_id"))]
        ),
    )
    total = exp.Window(this=exp.Count(this=exp.Star()), partition_by=[_col("variation")])
    roots = (
        exp.select(
            _col("variation"),
            _col("trace_id"),
            _col("duration_ms"),
            _as(ranked, "duration_rank"),
            _as(total, "roots"),
            copy=False,
        )
        .from_(_subquery(_trace_rows(spec), "r"), copy=False)
        .where(_and(_col("root"), _not_null(_col("duration_ms"))), copy=False)
    )
    # rank ≥ level × roots, in whole numbers (no dialect's division or rounding involved).
    scale = 10_000
    at_level = exp.GTE(
        this=_product(_col("duration_rank"), _num(scale)),
        expression=_product(_col("roots"), _num(round(level * scale))),
    )
    query = (
        exp.select(
            _col("variation"), _col("trace_id"), _col("duration_ms"), _col("duration_rank"), _col("roots")
        )
        .from_(_subquery(roots, "ranked"), copy=False)
        .where(at_level, copy=False)
        .order_by(_col("variation"), _col("duration_rank"), copy=False)
    )
    return _with(_units_ctes(spec), query)


def trace_spans_query(environment: str, trace_ids: Sequence[str], limit: int = 2000) -> exp.Select:
    """Every span of the given traces (a waterfall's rows), by trace and start."""
    return (
        exp.select(
            *(_col(c) for c in ("trace_id", "span_id", "parent_span_id", "name", "start_ts", "end_ts")),
            *(_col(c) for c in ("duration_ms", "status", "gen_ai_model", "input_tokens", "output_tokens")),
            copy=False,
        )
        .from_("spans", copy=False)
        .where(
            _and(_eq(_col("environment"), _str(environment)), _in(_col("trace_id"), trace_ids)), copy=False
        )
        .order_by(_col("trace_id"), _col("start_ts"), _col("span_id"), copy=False)
        .limit(limit, copy=False)
    )


def eval_run_query(environment: str, run_id: str) -> exp.Select:
    """An offline evaluation run's scores (`evals` rows with its `run_id`) as the eval gate reads
    them: the item (the score's unit, else the judged response, else its trace), the variation
    scored, the score's name and value."""
    item = exp.func("COALESCE", _col("unit_id"), _col("response_id"), _col("trace_id"))
    return (
        exp.select(
            _as(item, "item"),
            _as(_col("variation"), "variation"),
            _as(_col("name"), "name"),
            _as(_col("score"), "score"),
            copy=False,
        )
        .from_("evals", copy=False)
        .where(
            _and(_eq(_col("environment"), _str(environment)), _eq(_col("run_id"), _str(run_id))), copy=False
        )
        .order_by(_col("ts"), _col("event_id"), copy=False)
    )


def _micros(start: exp.Expr, end: exp.Expr) -> exp.Expr:
    """Microseconds from `start` to `end` (PostgreSQL's spelling is its transform's)."""
    return exp.cast(
        exp.DateDiff(this=end, expression=start, unit=exp.var("MICROSECOND")), _DOUBLE, copy=False
    )


def cancellation_query(spec: ReadoutSpec) -> exp.Select:
    """Per variation, the cancellation tax: traces whose caller was cancelled (a span marked
    cancelled; the trace's cancel time is the earliest end of one), and the generations (spans
    with output tokens) of those traces that ended after it — how many, their tokens, the output
    tokens produced after the cancel (pro rata of the generation's time), and their priced cost."""
    spans = _span_source(spec, extra=("trace_id", "start_ts", "end_ts", "cancelled"))
    cancels = (
        exp.select(_col("trace_id"), _as(exp.Min(this=_col("end_ts")), "cancelled_at"), copy=False)
        .from_("sx", copy=False)
        .where(_eq(_col("cancelled"), exp.true()), copy=False)
        .group_by(_col("trace_id"), copy=False)
    )
    x = "x"
    ran_on = _and(
        _not_null(_col("output_tokens", x)),
        exp.GT(this=_col("end_ts", x), expression=_col("cancelled_at", "c")),
    )
    after = exp.Div(
        this=_micros(_col("cancelled_at", "c"), _col("end_ts", x)),
        expression=exp.func("GREATEST", _micros(_col("start_ts", x), _col("end_ts", x)), _double(1)),
    )
    share_after = exp.func("LEAST", _double(1), after)
    query = _join(
        _join(
            exp.select(
                _col("variation", "u"),
                _as(_distinct_count(_col("trace_id", x)), "cancelled_traces"),
                _as(_count_if(ran_on), "generations_ran_on"),
                _as(exp.Sum(this=_when(ran_on.copy(), _col("input_tokens", x))), "input_tokens_ran_on"),
                _as(exp.Sum(this=_when(ran_on.copy(), _col("output_tokens", x))), "output_tokens_ran_on"),
                _as(
                    exp.Sum(
                        this=_when(
                            ran_on.copy(),
                            _product(exp.cast(_col("output_tokens", x), _DOUBLE, copy=False), share_after),
                        )
                    ),
                    "output_tokens_after_cancel",
                ),
                _as(exp.Sum(this=_when(ran_on.copy(), _col("cost_usd", x))), "cost_ran_on"),
                _as(_count_if(_and(ran_on.copy(), _is_null(_col("cost_usd", x)))), "unpriced_ran_on"),
                copy=False,
            ).from_(_table("sx", x), copy=False),
            _table("cx", "c"),
            _eq(_col("trace_id", "c"), _col("trace_id", x)),
        ),
        _table("units", "u"),
        _eq(_col("unit_id", "u"), _col("unit_id", x)),
    )
    query = (
        query.where(exp.GTE(this=_col("ts", x), expression=_col("first_ts", "u")), copy=False)
        .group_by(_col("variation", "u"), copy=False)
        .order_by(_col("variation", "u"), copy=False)
    )
    return _with([*_units_ctes(spec), _cte("sx", spans), _cte("cx", cancels)], query)


def span_joinability_query(
    flag_key: str, environment: str, assignment_unit: str, prices: Sequence[tuple[str, float, float]] = ()
) -> exp.Select:
    """Spans in the environment, those with a unit of their own, and those with one after the
    trace inheritance — and how many of those join an exposed unit of the flag; and the spans with
    tokens but no cost (neither sent nor priced)."""
    spec = ReadoutSpec(
        flag_key=flag_key,
        environment=environment,
        assignment_unit=assignment_unit,
        metrics=(),
        prices=tuple(prices),
    )
    source = _span_source(spec)
    unpriced = _and(
        exp.paren(exp.or_(_not_null(_col("input_tokens", "sp")), _not_null(_col("output_tokens", "sp")))),
        _is_null(span_cost(spec.prices)),
    )
    source.set(
        "expressions",
        [
            _as(span_unit(), "unit_id"),
            _as(_col("unit_id", "sp"), "own_unit"),
            _as(_when(unpriced, _num(1), _num(0)), "unpriced"),
        ],
    )
    exposed = (
        exp.select(_col("unit_id"), copy=False)
        .from_("exposures", copy=False)
        .where(_flag_exposures(flag_key, environment), copy=False)
        .group_by(_col("unit_id"), copy=False)
    )
    joined = _not_null(_col("unit_id", "x"))
    query = exp.select(
        _as(exp.Count(this=exp.Star()), "spans"),
        _as(_count_if(_not_null(_col("own_unit", "s"))), "spans_with_unit"),
        _as(_count_if(_not_null(_col("unit_id", "s"))), "spans_with_inherited_unit"),
        _as(_count_if(joined), "spans_joined"),
        _as(exp.Sum(this=_col("unpriced", "s")), "spans_unpriced"),
        copy=False,
    ).from_(_subquery(source, "s"), copy=False)
    return _join(query, _subquery(exposed, "x"), _eq(_col("unit_id", "s"), _col("unit_id", "x")), "LEFT")


def _value_and_condition(metric: Metric) -> tuple[exp.Expr, exp.Expr | None]:
    """The per-row value a metric aggregates, and which rows of its group are its own (None: all)."""
    counted = metric.aggregation in ("count", "binary")
    if metric.type == "event":
        value = _double(1) if counted else _event_value(metric, "s")
        return value, _eq(_col("name", "s"), _str(metric.event or ""))
    if metric.type == "eval":
        evaluator = _eq(_col("evaluator", "s"), _str(metric.evaluator)) if metric.evaluator else None
        return _col("score", "s"), _and(_eq(_col("name", "s"), _str(metric.eval or "")), evaluator)
    if metric.type == "span":
        field = metric.span_field
        value = (
            _when(_eq(_col("status", "s"), _str("error")), _double(1), _double(0))
            if field == "error"
            else exp.cast(_col(field or "", "s"), _DOUBLE, copy=False)
        )
        condition = _eq(_col("name", "s"), _str(metric.span_name)) if metric.span_name else None
        return (_double(1) if counted else value), condition
    if metric.type == "claim":
        return _col("value", "s"), None
    return (_double(1) if counted else _col("value", "s")), None


def _after(metric: Metric, ts: exp.Expr, first_ts: exp.Expr) -> exp.Expr:
    """ts inside the metric's attribution window: at or after the unit's first exposure and,
    with `window_hours`, before its end."""
    since = exp.GTE(this=ts, expression=first_ts)
    if not metric.window_hours:
        return since
    until = exp.LT(
        this=ts.copy(), expression=exp.Add(this=first_ts.copy(), expression=_interval(metric.window_hours))
    )
    return _and(since, until)


@dataclass(frozen=True, slots=True)
class _PerUnit:
    ctes: list[exp.CTE]
    joins: list[tuple[str, exp.Expr]]
    post: dict[int, exp.Column]
    pre: dict[int, exp.Column]
    quantile_counts: dict[int, exp.Column]
    quality_group: str = ""
    """The CTE that also holds the data-quality counts per exposed unit (with `quality`)."""


def _per_unit(
    metrics: Sequence[Metric], spec: ReadoutSpec, quality: bool = False, quantiles: Sequence[Metric] = ()
) -> _PerUnit:
    """One CTE per source table computing every metric's per-unit post (and CUPED pre) value;
    with `quality`, the events CTE (there is always one then) also counts each exposed unit's
    joinable and pre-exposure outcome events, and joins every exposed unit (`quality_group`),
    and each of `quantiles` its events (the events-per-variation of an event-level quantile)."""
    groups: dict[str, list[int]] = {}
    for i, metric in enumerate(metrics):
        groups.setdefault(_group(metric), []).append(i)
    if quality:
        groups.setdefault("events", [])
    out = _PerUnit([], [], {}, {}, {}, f"g{list(groups).index('events')}" if quality else "")
    s_ts, first_ts = _col("ts", "s"), _col("first_ts", "u")
    for k, (group, indices) in enumerate(groups.items()):
        g = f"g{k}"
        folded = quality and group == "events"
        columns: list[exp.Expr] = [_col(_UID, "u")]
        lookback = 0.0
        for i in indices:
            metric = metrics[i]
            aggregate = "AVG" if metric.type == "eval" else _AGGREGATES[metric.aggregation]
            value, condition = _value_and_condition(metric)
            mine = _and(_col("metric_row", "s"), condition) if folded else condition
            # CASE rather than FILTER: the same value (both skip the other rows), spelled alike in
            # every dialect, and DuckDB evaluates it more cheaply over the joined rows.
            post = _and(mine, _after(metric, s_ts.copy(), first_ts.copy()))
            columns.append(_as(_agg(aggregate, _when(post, value)), f"p{i}"))
            out.post[i] = _col(f"p{i}", g)
            if metric.cuped_days:
                hours = metric.cuped_days * 24
                lookback = max(lookback, hours)
                before = _and(
                    mine.copy() if mine is not None else None,
                    exp.LT(this=s_ts.copy(), expression=first_ts.copy()),
                    exp.GTE(
                        this=s_ts.copy(),
                        expression=exp.Sub(this=first_ts.copy(), expression=_interval(hours)),
                    ),
                )
                columns.append(_as(_agg(aggregate, _when(before, value.copy())), f"r{i}"))
                out.pre[i] = _col(f"r{i}", g)
        members = [metrics[i] for i in indices]
        lower: exp.Expr = (
            exp.Sub(this=first_ts.copy(), expression=_interval(lookback)) if lookback else first_ts.copy()
        )
        where: exp.Expr = exp.GTE(this=s_ts.copy(), expression=lower)
        units = "units"
        if folded:
            # Every exposed unit (also those the metrics leave out) and its whole history: a
            # pre-exposure event counts at any age. An event at or after its unit's first exposure
            # is also after the flag's first exposure, so it is one the readout expects to join.
            units, where = "exposed", exp.or_(_col("flag_row", "s"), where, copy=False)
            flag_row = _col("flag_row", "s")
            # Every outcome event that should join the flag, joined or not (an unexposed unit's land
            # in the NULL unit's group): unflagged ones from the flag's first exposure on.
            first_exposure = (
                exp.select(exp.Min(this=_col("first_ts")), copy=False).from_("exposed", copy=False).subquery()
            )
            expected = exp.paren(
                exp.or_(
                    _col("own_row", "s"), exp.GTE(this=s_ts.copy(), expression=first_exposure), copy=False
                )
            )
            columns += [
                _as(_count_if(_and(flag_row.copy(), expected)), "flag_events"),
                _as(
                    _count_if(_and(flag_row, exp.GTE(this=s_ts.copy(), expression=first_ts.copy()))),
                    "joinable_events",
                ),
                _as(
                    _count_if(_and(flag_row.copy(), exp.LT(this=s_ts.copy(), expression=first_ts.copy()))),
                    "events_before_exposure",
                ),
            ]
            for j, metric in enumerate(quantiles):
                counted = _and(
                    _col("metric_row", "s"),
                    _eq(_col("name", "s"), _str(metric.event or "")),
                    _after(metric, s_ts.copy(), first_ts.copy()),
                    _not_null(_event_value(metric, "s")),
                )
                columns.append(_as(_count_if(counted), f"qn{j}"))
                out.quantile_counts[j] = _col(f"qn{j}", g)
        source = _subquery(_group_source(group, members, spec, folded, quantiles if folded else ()), "s")
        on = _eq(_col("unit_id", "s"), _col("unit_id", "u"))
        if folded:
            query = _join(
                exp.select(*columns, copy=False).from_(source, copy=False), _table(units, "u"), on, "LEFT"
            )
        else:
            query = _join(exp.select(*columns, copy=False).from_(_table(units, "u"), copy=False), source, on)
        # The data-quality group is read twice (statistics and quality): computed once.
        out.ctes.append(
            _cte(g, query.where(where, copy=False).group_by(_col(_UID, "u"), copy=False), materialized=folded)
        )
        out.joins.append((g, _eq(_col(_UID, g), _col(_UID, "u"))))
    return out


def _units_ctes(spec: ReadoutSpec) -> list[exp.CTE]:
    """`exposed`: one row per unit exposed to the flag; `units`: those the readout analyses."""
    ts, assigned, served = _col("ts"), _col("assigned_variation"), _col("served_variation")
    segment: exp.Expr = (
        _json_text(exp.ArgMin(this=_col("attributes"), expression=ts.copy()), spec.segment)
        if spec.segment
        else exp.cast(exp.Null(), exp.DataType.build("VARCHAR"), copy=False)
    )
    # One variation iff its least and greatest agree (the column is NOT NULL): two aggregates in
    # the same pass, where COUNT(DISTINCT …) costs a second group-by of every exposure and a join.
    # `uid` numbers the units so that the per-unit groupings and joins after the events join key
    # on an integer, not the unit_id text; MATERIALIZED so that every reader sees one numbering.
    # No alias repeats a column name: ClickHouse would read the alias inside the other aggregates.
    columns: list[exp.Expr] = [
        _col("unit_id"),
        _as(exp.Window(this=exp.RowNumber()), _UID),
        _as(exp.Min(this=ts.copy()), "first_ts"),
        _as(_eq(exp.Min(this=assigned.copy()), exp.Max(this=assigned.copy())), "one_variation"),
        _as(exp.Min(this=assigned.copy()), "assigned"),
        _as(exp.ArgMin(this=served.copy(), expression=ts.copy()), "served"),
        _as(
            exp.Max(this=_when(exp.NEQ(this=served.copy(), expression=assigned.copy()), _num(1), _num(0))),
            "fell_back",
        ),
        _as(segment, "segment"),
    ]
    # A unit a targeting rule assigned (staff, say) was not randomized by the phase's weights: it
    # is left out of the comparison, like a unit that saw two variations (and counted apart).
    # Only the SDK's `rule` reason marks one; `off` (a kill) and NULL (older SDKs) do not.
    rule = _eq(_col("evaluation_reason"), _str("rule"))
    columns.append(_as(exp.Max(this=_when(rule, _num(1), _num(0))), "rule_assigned"))
    if spec.phase_starts:
        # Exposures stamped before the environment's first phase (their units are excluded below).
        early = exp.LT(this=ts.copy(), expression=_ts(spec.phase_starts[0]))
        columns.append(_as(_count_if(early), "early_exposures"))
    exposed = (
        exp.select(*columns, copy=False)
        .from_("exposures", copy=False)
        .where(
            _and(
                _eq(_col("environment"), _str(spec.environment)),
                _eq(_col("flag_key"), _str(spec.flag_key)),
                _before(spec, ts.copy()),
            ),
            copy=False,
        )
        .group_by(_col("unit_id"), copy=False)
    )
    first_ts = _col("first_ts")
    phase: exp.Expr = _num(0)
    if spec.phase_starts[1:]:
        case = exp.Case()
        for i, start in enumerate(spec.phase_starts[1:]):
            case = case.when(exp.LT(this=first_ts.copy(), expression=_ts(start)), _num(i), copy=False)
        phase = case.else_(_num(len(spec.phase_starts) - 1), copy=False)
    # A unit first exposed before the flag served this environment belongs to no phase: excluded
    # (and counted in the data-quality figures).
    since = exp.GTE(this=first_ts.copy(), expression=_ts(spec.phase_starts[0])) if spec.phase_starts else None
    units = (
        exp.select(
            _col("unit_id"),
            _col(_UID),
            first_ts.copy(),
            _as(_col("served" if spec.served else "assigned"), "variation"),
            _as(_col("assigned"), "assigned_variation"),
            _col("fell_back"),
            _col("segment"),
            _as(phase, "phase"),
            copy=False,
        )
        .from_("exposed", copy=False)
        .where(_and(_col("one_variation"), _eq(_col("rule_assigned"), _num(0)), since), copy=False)
    )
    return [_cte("exposed", exposed, materialized=True), _cte("units", units)]


def _quality_cte(spec: ReadoutSpec, per_unit: _PerUnit) -> exp.CTE:
    """One row of data-quality figures over every exposed unit (docs/readout.md), from the
    relations the sufficient statistics already build."""
    columns: list[exp.Expr] = []
    one = _col("one_variation")
    randomized = _eq(_col("rule_assigned"), _num(0))
    for k, variation in enumerate(spec.variations):
        mine = _and(one.copy(), randomized.copy(), _eq(_col("assigned"), _str(variation)))
        columns += [
            _as(_count_if(mine), f"dq_units_{k}"),
            _as(_count_if(_and(mine.copy(), _eq(_col("fell_back"), _num(1)))), f"dq_fallback_units_{k}"),
        ]
    columns.append(_as(_count_if(exp.Not(this=one.copy())), "dq_multiple_variation_units"))
    columns.append(
        _as(_count_if(_and(one.copy(), exp.Not(this=randomized.copy()))), "dq_rule_assigned_units")
    )
    if spec.phase_starts:
        early = _col("early_exposures")
        columns += [
            _as(exp.func("COALESCE", exp.Sum(this=early), _num(0)), "dq_exposures_before_flag"),
            _as(_count_if(exp.GT(this=early.copy(), expression=_num(0))), "dq_units_before_flag"),
        ]
    else:
        columns += [_as(_num(0), "dq_exposures_before_flag"), _as(_num(0), "dq_units_before_flag")]
    g = per_unit.quality_group
    joined = exp.select(
        _as(exp.func("COALESCE", exp.Sum(this=_col("flag_events", g)), _num(0)), "dq_events"),
        _as(exp.func("COALESCE", exp.Sum(this=_col("joinable_events", g)), _num(0)), "dq_joinable_events"),
        _as(
            exp.func("COALESCE", exp.Sum(this=_col("events_before_exposure", g)), _num(0)),
            "dq_events_before_exposure",
        ),
        copy=False,
    ).from_(g, copy=False)
    query = exp.select(
        exp.column(exp.Star(), "e"),
        exp.column(exp.Star(), "j"),
        copy=False,
    ).from_(_subquery(exp.select(*columns, copy=False).from_("exposed", copy=False), "e"), copy=False)
    return _cte("quality", _join(query, _subquery(joined, "j"), kind="CROSS"))


def _sum(value: exp.Expr, condition: exp.Expr | None = None) -> exp.Sum:
    return exp.Sum(this=_when(condition, value) if condition is not None else value)


def _product(a: exp.Expr, b: exp.Expr) -> exp.Mul:
    return exp.Mul(this=a.copy(), expression=b.copy())


@lru_cache(maxsize=64)
def _readout_tree(spec: ReadoutSpec, metrics: tuple[Metric, ...]) -> exp.Select:
    per_unit = _per_unit(metrics, spec, quality=True, quantiles=spec.quantiles)
    ctes = [*_units_ctes(spec), *per_unit.ctes, _quality_cte(spec, per_unit)]
    u = "u"
    columns: list[exp.Expr] = [
        _col("phase", u),
        _col("variation", u),
        _col("segment", u),
        _as(exp.Count(this=exp.Star()), "units"),
        _as(exp.Sum(this=_col("fell_back", u)), "fallback_units"),
    ]
    index = {m.key: i for i, m in enumerate(metrics)}
    for i, m in enumerate(metrics):
        post = per_unit.post[i]
        v = exp.func("COALESCE", post.copy(), _num(0)) if m.zero_when_missing else post
        n = exp.Count(this=exp.Star()) if m.zero_when_missing else exp.Count(this=post.copy())
        columns += [
            _as(n, f"m{i}_n"),
            _as(_sum(v.copy()), f"m{i}_sum"),
            _as(_sum(_product(v, v)), f"m{i}_sum_sq"),
        ]
        if m.cuped_days:
            # CUPED strata among the units counted in m{i}_n: those with a pre-period value
            # (regression moments) and those without one, which stay missing rather than 0
            # (Deng et al. 2013, "Handling Missing Pre-Experiment Data").
            pre = per_unit.pre[i]
            counted = None if m.zero_when_missing else _not_null(post.copy())
            has = _and(_not_null(pre.copy()), counted)
            lacks = _and(_is_null(pre.copy()), counted.copy() if counted is not None else None)
            columns += [
                _as(_count_if(has), f"m{i}_pre_n"),
                _as(_sum(v.copy(), has.copy()), f"m{i}_pre_post_sum"),
                _as(_sum(_product(v, v), has.copy()), f"m{i}_pre_post_sum_sq"),
                _as(_sum(pre.copy(), has.copy()), f"m{i}_pre_sum"),
                _as(_sum(_product(pre, pre), has.copy()), f"m{i}_pre_sum_sq"),
                _as(_sum(_product(v, pre), has.copy()), f"m{i}_post_pre"),
                _as(_count_if(lacks), f"m{i}_nopre_n"),
                _as(_sum(v.copy(), lacks.copy()), f"m{i}_nopre_sum"),
                _as(_sum(_product(v, v), lacks.copy()), f"m{i}_nopre_sum_sq"),
            ]
    for r, m in enumerate(spec.metrics):
        if m.type == "ratio":
            a, b = per_unit.post[index[m.numerator or ""]], per_unit.post[index[m.denominator or ""]]
            cross = _product(exp.func("COALESCE", a.copy(), _num(0)), exp.func("COALESCE", b.copy(), _num(0)))
            columns.append(_as(_sum(cross), f"r{r}_cross"))
    for j in per_unit.quantile_counts:
        columns.append(_as(_sum(per_unit.quantile_counts[j].copy()), f"q{j}_n"))
    statistics = exp.select(*columns, copy=False).from_(exp.to_table("units").as_(u), copy=False)
    for g, on in per_unit.joins:
        statistics = _join(statistics, exp.to_table(g), on, kind="LEFT")
    statistics = statistics.group_by(_col("phase", u), _col("variation", u), _col("segment", u), copy=False)
    query = _join(
        exp.select(exp.column(exp.Star(), "r"), exp.column(exp.Star(), "q"), copy=False).from_(
            exp.to_table("quality").as_("q"), copy=False
        ),
        _subquery(statistics, "r"),
        exp.true(),
        kind="LEFT",
    ).order_by(_col("phase", "r"), _col("variation", "r"), _col("segment", "r"), copy=False)
    return _with(ctes, query)


def readout_query(spec: ReadoutSpec, known: dict[str, Metric]) -> exp.Select:
    """The readout's statement: its data-quality figures (`dq_…`, the same on every row) beside
    the sufficient statistics, one row per (phase, variation, segment) — or a single row with
    null statistics when no unit is left to analyse. Built once per spec; do not modify it."""
    return _readout_tree(spec, tuple(per_unit_metrics(spec.metrics, known)))


@lru_cache(maxsize=64)
def assigned_counts_query(spec: ReadoutSpec) -> exp.Select:
    """Units per phase and ASSIGNED variation: what the sample-ratio test checks, also when the
    readout groups by the served variation (a fallback is not a split mismatch)."""
    phase, assigned = _col("phase", "u"), _col("assigned_variation", "u")
    query = (
        exp.select(phase, _as(assigned, "variation"), _as(exp.Count(this=exp.Star()), "units"), copy=False)
        .from_(exp.to_table("units").as_("u"), copy=False)
        .group_by(phase.copy(), assigned.copy(), copy=False)
        .order_by(phase.copy(), assigned.copy(), copy=False)
    )
    return _with(_units_ctes(spec), query)


@lru_cache(maxsize=64)
def _per_unit_tree(spec: ReadoutSpec, metrics: tuple[Metric, ...]) -> exp.Select:
    per_unit = _per_unit(metrics, spec)
    columns: list[exp.Expr] = [
        _col(c, "u") for c in ("unit_id", "variation", "phase", "segment", "first_ts", "fell_back")
    ]
    for i, m in enumerate(metrics):
        post = per_unit.post[i]
        value = exp.func("COALESCE", post, _num(0)) if m.zero_when_missing else post
        columns.append(exp.alias_(value, exp.to_identifier(m.key, quoted=True), copy=False))
        if m.cuped_days:
            # NULL: no pre-period value
            columns.append(
                exp.alias_(per_unit.pre[i], exp.to_identifier(m.key + "__pre", quoted=True), copy=False)
            )
    query = exp.select(*columns, copy=False).from_(exp.to_table("units").as_("u"), copy=False)
    for g, on in per_unit.joins:
        query = _join(query, exp.to_table(g), on, kind="LEFT")
    return _with([*_units_ctes(spec), *per_unit.ctes], query.order_by(_col("unit_id", "u"), copy=False))


def per_unit_query(spec: ReadoutSpec, known: dict[str, Metric]) -> exp.Select:
    """The per-unit relation itself, for notebooks and exports: one row per exposed unit."""
    return _per_unit_tree(spec, tuple(per_unit_metrics(spec.metrics, known)))


def quantile_query(spec: ReadoutSpec, metric: Metric, levels: Sequence[float], level: float) -> exp.Select:
    """Per variation, the event-level quantiles of `metric` at `levels` (value and density points,
    `q` in `levels` order, one sort per variation) and the moments of (events ≤ the quantile at
    `level`, events) per unit: the clustered variance, since events of one unit are alike. The
    levels follow the events counted, so the tree is kept while they stay the same."""
    return _quantile_tree(spec, metric, tuple(levels), level)


def _quantile_rows(spec: ReadoutSpec, metric: Metric) -> exp.Select:
    """The quantile's values of the readout's units in their attribution window, with variation."""
    x = _col("x", "src")
    return _join(
        exp.select(_col("variation", "u"), _col(_UID, "u"), x, copy=False).from_(
            exp.to_table("units").as_("u"), copy=False
        ),
        _subquery(_quantile_source(metric, spec), "src"),
        _eq(_col("unit_id", "src"), _col("unit_id", "u")),
    ).where(_and(_after(metric, _col("ts", "src"), _col("first_ts", "u")), _not_null(x.copy())), copy=False)


@lru_cache(maxsize=64)
def quantile_count_query(spec: ReadoutSpec, metric: Metric) -> exp.Select:
    """Per variation, how many values a span-level quantile reads (its density levels follow)."""
    counts = (
        exp.select(_col("variation"), _as(exp.Count(this=exp.Star()), "n"), copy=False)
        .from_(_subquery(_quantile_rows(spec, metric), "r"), copy=False)
        .group_by(_col("variation"), copy=False)
        .order_by(_col("variation"), copy=False)
    )
    return _with(_units_ctes(spec), counts)


@lru_cache(maxsize=64)
def _quantile_tree(spec: ReadoutSpec, metric: Metric, levels: tuple[float, ...], level: float) -> exp.Select:
    s = "s"
    events = _quantile_rows(spec, metric)
    quantiles = (
        exp.select(
            _col("variation"),
            _as(exp.Count(this=exp.Star()), "n"),
            _as(
                exp.PercentileCont(
                    this=_col("x"), expression=exp.Array(expressions=[_num(v) for v in levels])
                ),
                "q",
            ),
            copy=False,
        )
        .from_(s, copy=False)
        .group_by(_col("variation"), copy=False)
    )
    at = exp.Bracket(this=_col("q", "qs"), expressions=[_num(list(levels).index(level))])
    below = _when(exp.LTE(this=_col("x", s), expression=at), _double(1), _double(0))
    per_unit = _join(
        exp.select(
            _col("variation", s),
            _as(exp.Sum(this=below), "below"),
            _as(exp.Mul(this=exp.Count(this=exp.Star()), expression=_double(1)), "total"),
            copy=False,
        ).from_(s, copy=False),
        exp.to_table("qs"),
        _eq(_col("variation", "qs"), _col("variation", s)),
    ).group_by(_col("variation", s), _col(_UID, s), copy=False)
    below_, total = _col("below"), _col("total")
    clusters = (
        exp.select(
            _col("variation"),
            _as(exp.Count(this=exp.Star()), "cluster_n"),
            _as(exp.Sum(this=below_), "below_sum"),
            _as(exp.Sum(this=_product(below_, below_)), "below_sum_sq"),
            _as(exp.Sum(this=total), "total_sum"),
            _as(exp.Sum(this=_product(total, total)), "total_sum_sq"),
            _as(exp.Sum(this=_product(below_, total)), "below_total"),
            copy=False,
        )
        .from_("per_unit", copy=False)
        .group_by(_col("variation"), copy=False)
    )
    query = _join(
        exp.select(
            _col("variation", "qs"),
            _col("n", "qs"),
            _col("q", "qs"),
            *(
                _col(c, "c")
                for c in (
                    "cluster_n",
                    "below_sum",
                    "below_sum_sq",
                    "total_sum",
                    "total_sum_sq",
                    "below_total",
                )
            ),
            copy=False,
        ).from_("qs", copy=False),
        _subquery(clusters, "c"),
        _eq(_col("variation", "c"), _col("variation", "qs")),
    ).order_by(_col("variation", "qs"), copy=False)
    ctes = [
        *_units_ctes(spec),
        _cte(s, events, materialized=True),
        _cte("qs", quantiles),
        _cte("per_unit", per_unit),
    ]
    return _with(ctes, query)


# -- the v1 figures and the timeline -----------------------------------------------------------


def _flag_exposures(flag_key: str, environment: str) -> exp.Expr:
    return _and(_eq(_col("environment"), _str(environment)), _eq(_col("flag_key"), _str(flag_key)))


def _distinct_count(column: exp.Expr) -> exp.Count:
    return exp.Count(this=exp.Distinct(expressions=[column]))


def evidence_bounds_query(flag_key: str, environment: str, assignment_unit: str) -> exp.Select:
    """When the flag's evidence began and last grew: its first and last exposure, and the last
    event of its unit in the environment (where the difference-over-time checkpoints lie)."""

    def scalar(aggregate: type[exp.Min] | type[exp.Max], table: str, where: exp.Expr) -> exp.Expr:
        query = exp.select(aggregate(this=_col("ts")), copy=False).from_(table, copy=False)
        return query.where(where, copy=False).subquery()

    events = _and(
        _eq(_col("environment"), _str(environment)), _eq(_col("assignment_unit"), _str(assignment_unit))
    )
    return exp.select(
        _as(scalar(exp.Min, "exposures", _flag_exposures(flag_key, environment)), "first_exposure"),
        _as(scalar(exp.Max, "exposures", _flag_exposures(flag_key, environment)), "last_exposure"),
        _as(scalar(exp.Max, "events", events), "last_event"),
        copy=False,
    )


def attributes_sample_query(flag_key: str, environment: str, limit: int = 2000) -> exp.Select:
    """The targeting attributes of the flag's latest exposures that carry any (a sample): which
    attributes a segment review can split by."""
    return (
        exp.select(_col("attributes"), copy=False)
        .from_("exposures", copy=False)
        .where(_and(_flag_exposures(flag_key, environment), _not_null(_col("attributes"))), copy=False)
        .order_by(exp.Ordered(this=_col("ts"), desc=True), copy=False)
        .limit(limit, copy=False)
    )


@lru_cache(maxsize=64)
def fallback_reasons_query(flag_key: str, environment: str) -> exp.Select:
    """Units per assigned variation and fallback reason among exposures served something else."""
    assigned, reason = _col("assigned_variation"), _col("fallback_reason")
    fell_back = exp.NEQ(this=_col("served_variation"), expression=assigned.copy())
    return (
        exp.select(assigned, reason, _as(_distinct_count(_col("unit_id")), "units"), copy=False)
        .from_("exposures", copy=False)
        .where(_and(_flag_exposures(flag_key, environment), fell_back), copy=False)
        .group_by(assigned.copy(), reason.copy(), copy=False)
        .order_by(assigned.copy(), reason.copy(), copy=False)
    )


@lru_cache(maxsize=64)
def event_name_metrics_query(flag_key: str, environment: str, assignment_unit: str) -> exp.Select:
    """The v1 readout's metrics: per event name and variation, the moments of each unit's mean
    event value (1 for events without one) after its first exposure."""
    exposures = (
        exp.select(
            _col("unit_id"),
            _as(exp.Min(this=_col("ts")), "first_ts"),
            _as(_distinct_count(_col("assigned_variation")), "n_assigned"),
            _as(exp.ArgMin(this=_col("assigned_variation"), expression=_col("ts")), "variation"),
            copy=False,
        )
        .from_("exposures", copy=False)
        .where(_flag_exposures(flag_key, environment), copy=False)
        .group_by(_col("unit_id"), copy=False)
    )
    flag = _col("flag_key", "e")
    unit_metric = (
        _join(
            exp.select(
                _col("variation", "u"),
                _col("name", "e"),
                _col("unit_id", "e"),
                _as(exp.Avg(this=exp.func("COALESCE", _col("value", "e"), _double(1))), "x"),
                copy=False,
            ).from_(exp.to_table("per_unit").as_("u"), copy=False),
            exp.to_table("events").as_("e"),
            _eq(_col("unit_id", "e"), _col("unit_id", "u")),
        )
        .where(
            _and(
                exp.GTE(this=_col("ts", "e"), expression=_col("first_ts", "u")),
                _eq(_col("n_assigned", "u"), _num(1)),
                _eq(_col("environment", "e"), _str(environment)),
                _eq(_col("assignment_unit", "e"), _str(assignment_unit)),
                exp.paren(exp.or_(_is_null(flag), _eq(flag.copy(), _str(flag_key)), copy=False)),
            ),
            copy=False,
        )
        .group_by(_col("variation", "u"), _col("name", "e"), _col("unit_id", "e"), copy=False)
    )
    x = _col("x")
    query = (
        exp.select(
            _col("name"),
            _col("variation"),
            _as(exp.Count(this=exp.Star()), "n"),
            _as(exp.Sum(this=x), "sum_x"),
            _as(exp.Sum(this=_product(x, x)), "sum_x2"),
            copy=False,
        )
        .from_("unit_metric", copy=False)
        .group_by(_col("name"), _col("variation"), copy=False)
        .order_by(_col("name"), _col("variation"), copy=False)
    )
    return _with([_cte("per_unit", exposures), _cte("unit_metric", unit_metric)], query)


def _timeline_units(flag_key: str, environment: str) -> exp.CTE:
    assigned = _col("assigned_variation")
    exposed = (
        exp.select(
            _col("unit_id"),
            _as(exp.Min(this=_col("ts")), "first_ts"),
            _as(exp.Min(this=assigned), "variation"),
            _as(_distinct_count(assigned.copy()), "n_assigned"),
            copy=False,
        )
        .from_("exposures", copy=False)
        .where(_flag_exposures(flag_key, environment), copy=False)
        .group_by(_col("unit_id"), copy=False)
    )
    return _cte("exposed", exposed)


def _hour(value: exp.Expr) -> exp.TimestampTrunc:
    return exp.TimestampTrunc(this=value, unit=exp.var("HOUR"))


@lru_cache(maxsize=64)
def timeline_units_query(flag_key: str, environment: str) -> exp.Select:
    """Units first exposed per hour and variation (units under one variation only)."""
    hour = _hour(_col("first_ts"))
    query = (
        exp.select(_as(hour, "hour"), _col("variation"), _as(exp.Count(this=exp.Star()), "units"), copy=False)
        .from_("exposed", copy=False)
        .where(_eq(_col("n_assigned"), _num(1)), copy=False)
        .group_by(hour.copy(), _col("variation"), copy=False)
        .order_by(_col("hour"), _col("variation"), copy=False)
    )
    return _with([_timeline_units(flag_key, environment)], query)


TIMELINE_SOURCES = {"events": "value", "evals": "score"}
"""Tables a timeline series reads, and the column it averages."""


@lru_cache(maxsize=64)
def timeline_series_query(flag_key: str, environment: str, table: str, name: str) -> exp.Select:
    """Per hour of the event and variation of its unit: how many values and their mean, counting
    only events after the unit's first exposure (as the readout does)."""
    hour = _hour(_col("ts", "e"))
    query = (
        _join(
            exp.select(
                _as(hour, "hour"),
                # Named: ClickHouse would call it `u.variation`, events having a variation too.
                _as(_col("variation", "u"), "variation"),
                _as(exp.Count(this=exp.Star()), "n"),
                _as(exp.Avg(this=_col(TIMELINE_SOURCES[table], "e")), "mean"),
                copy=False,
            ).from_(exp.to_table(table).as_("e"), copy=False),
            exp.to_table("exposed").as_("u"),
            _eq(_col("unit_id", "u"), _col("unit_id", "e")),
        )
        .where(
            _and(
                _eq(_col("n_assigned", "u"), _num(1)),
                _eq(_col("environment", "e"), _str(environment)),
                _eq(_col("name", "e"), _str(name)),
                exp.GTE(this=_col("ts", "e"), expression=_col("first_ts", "u")),
            ),
            copy=False,
        )
        .group_by(hour.copy(), _col("variation", "u"), copy=False)
        .order_by(_col("hour"), _col("variation"), copy=False)
    )
    return _with([_timeline_units(flag_key, environment)], query)


# -- rendering ---------------------------------------------------------------------------------


def _postgres(tree: exp.Expr) -> exp.Expr:
    """PostgreSQL has no ARG_MIN: the first non-null value of an array ordered by time; and
    `#>>` reads a path from json and jsonb alike."""
    for arg_min in list(tree.find_all(exp.ArgMin)):
        value, order = arg_min.this, arg_min.expression
        aggregate = exp.ArrayAgg(
            this=exp.Order(this=value.copy(), expressions=[exp.Ordered(this=order.copy())])
        )
        first = exp.Filter(this=aggregate, expression=exp.Where(this=_not_null(value.copy())))
        arg_min.replace(exp.Bracket(this=exp.paren(first), expressions=[_num(0)]))
    for diff in list(tree.find_all(exp.DateDiff)):
        # Exact for timestamptz (sqlglot's own spelling casts to a zone-less timestamp first).
        seconds = exp.Extract(
            this=exp.var("EPOCH"),
            expression=exp.paren(exp.Sub(this=diff.this.copy(), expression=diff.expression.copy())),
        )
        diff.replace(_product(seconds, _num(1_000_000)))
    for node in list(tree.find_all(exp.JSONExtractScalar)):
        keys = [k.this for k in node.expression.expressions if isinstance(k, exp.JSONPathKey)]
        node.replace(
            exp.JSONBExtractScalar(this=node.this.copy(), expression=_str("{" + ",".join(keys) + "}"))
        )
    return tree


_CLICKHOUSE_SETTINGS = {
    # A CTE read twice (`exposed`, the data-quality group) is run once (ClickHouse 26.x);
    # without it each reader runs it again, slower but still right (units keyed on unit_id).
    "enable_materialized_cte": 1,
    # A LEFT JOIN's missing side is NULL, not the type's default (0, ''), as in standard SQL.
    "join_use_nulls": 1,
    # JSON_VALUE of an absent path is NULL, as DuckDB's ->> and PostgreSQL's #>>.
    "function_json_value_return_type_allow_nullable": 1,
}


def _clickhouse(tree: exp.Expr) -> exp.Expr:
    """ClickHouse: JSON paths through JSON_VALUE (JSONExtractString reads '' for numbers), exact
    interpolated quantiles (`quantilesExactInclusive`, the same R-7 definition as QUANTILE_CONT),
    UTC timestamp literals, standard join NULLs; and units keyed on unit_id rather than on a
    ROW_NUMBER(), which a server that ignores MATERIALIZED would number anew for each reader."""
    for node in list(tree.find_all(exp.JSONExtractScalar)):
        keys = [k.this for k in node.expression.expressions if isinstance(k, exp.JSONPathKey)]
        node.replace(exp.func("JSON_VALUE", node.this.copy(), _str("$." + ".".join(keys))))
    for quantiles in list(tree.find_all(exp.PercentileCont)):
        levels = quantiles.expression.expressions
        quantiles.replace(
            exp.ParameterizedAgg(
                this="quantilesExactInclusive",
                expressions=[v.copy() for v in levels],
                params=[quantiles.this.copy()],
            )
        )
    for cast in list(tree.find_all(exp.Cast)):
        if cast.to.is_type("timestamptz") and isinstance(cast.this, exp.Literal):
            moment = datetime.fromisoformat(cast.this.this).astimezone(UTC)
            text = moment.strftime("%Y-%m-%d %H:%M:%S.%f")
            cast.replace(exp.func("toDateTime64", _str(text), _num(6), _str("UTC")))
        elif cast.to.is_type("timestamptz"):
            # A column of a source (analysis/sources.py): CAST(… AS DateTime) would drop the
            # microseconds; this reads ISO text and DateTime64 alike, to the microsecond, in UTC.
            as_text = exp.func("toString", cast.this.copy())
            cast.replace(exp.func("parseDateTime64BestEffortOrNull", as_text, _num(6), _str("UTC")))
    for alias in list(tree.find_all(exp.Alias)):
        if alias.alias == _UID and isinstance(alias.this, exp.Window):
            alias.set("this", _col("unit_id"))
    for with_ in tree.find_all(exp.With):
        if with_.args.get("recursive"):  # ClickHouse refuses MATERIALIZED there (units key on unit_id)
            for cte in with_.expressions:
                cte.set("materialized", None)
    if isinstance(tree, exp.Select):
        settings = [exp.EQ(this=exp.var(k), expression=_num(v)) for k, v in _CLICKHOUSE_SETTINGS.items()]
        tree.set("settings", settings)
    return tree


_TRANSFORMS: dict[str, Callable[[exp.Expr], exp.Expr]] = {"postgres": _postgres, "clickhouse": _clickhouse}

_RENDERED: dict[tuple[int, str, bool], tuple[exp.Expr, str]] = {}
_RENDERED_MAX = 256


def render(expression: exp.Expr, dialect: Dialect = "duckdb", pretty: bool = False) -> str:
    """The statement as `dialect` runs it. Trees built once per spec are rendered once, too."""
    key = (id(expression), dialect, pretty)
    cached = _RENDERED.get(key)
    if cached is not None and cached[0] is expression:
        return cached[1]
    tree = expression.copy()
    transform = _TRANSFORMS.get(dialect)
    if transform is not None:
        tree = transform(tree)
    generator = sqlglot.Dialect.get_or_raise(dialect).generator(
        pretty=pretty, unsupported_level=sqlglot.ErrorLevel.RAISE
    )
    text = generator.generate(tree, copy=False)
    if len(_RENDERED) >= _RENDERED_MAX:
        del _RENDERED[next(iter(_RENDERED))]
    _RENDERED[key] = (expression, text)
    return text
