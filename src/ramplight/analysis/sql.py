"""Readout SQL, built as sqlglot expressions and rendered per dialect.

One statement computes the per-unit relation (first exposure, assigned and served variation,
phase, segment, each metric's per-unit value inside its attribution window and, for CUPED,
its pre-period value) and aggregates it to sufficient statistics per phase, variation and
segment. User values (names, paths, times) are quoted by sqlglot's literal generator and the
statement is parsed back into one expression before rendering; identifiers are fixed or
positional (`m0`, `m1`, …), never user text.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

import sqlglot
from sqlglot import exp

from ramplight.core.metrics import Metric

Dialect = Literal["duckdb", "postgres", "clickhouse"]
DIALECTS: tuple[Dialect, ...] = ("duckdb", "postgres", "clickhouse")


def _str(value: str) -> str:
    return exp.Literal.string(value).sql("duckdb")


def _num(value: float) -> str:
    return exp.Literal.number(repr(float(value))).sql("duckdb")


def _ts(value: datetime) -> str:
    return f"CAST({_str(value.isoformat())} AS TIMESTAMPTZ)"


def _json_path(path: str) -> str:
    return _str("$." + path)


@dataclass(frozen=True, slots=True)
class ReadoutSpec:
    """Everything the readout query depends on."""

    flag_key: str
    environment: str
    assignment_unit: str
    metrics: tuple[Metric, ...]
    phase_starts: tuple[datetime, ...] = ()
    segment: str | None = None
    served: bool = False
    """Group by the served variation (as-served) instead of the assigned one (intent-to-treat)."""


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


def _source(metric: Metric, spec: ReadoutSpec) -> str:
    """SELECT unit_id, ts, x FROM … : the metric's raw rows, before any join."""
    env = _str(spec.environment)
    if metric.type in ("event", "quantile"):
        assert metric.event is not None
        x = (
            "1.0"
            if metric.aggregation == "count" and metric.type == "event"
            else (
                "value"
                if metric.value == "value"
                else f"CAST(properties ->> {_json_path(metric.value.removeprefix('properties.'))} AS DOUBLE)"
            )
        )
        return (
            f"SELECT unit_id, ts, {x} AS x FROM events WHERE environment = {env} "
            f"AND name = {_str(metric.event)} AND assignment_unit = {_str(spec.assignment_unit)}"
        )
    if metric.type == "eval":
        assert metric.eval is not None
        evaluator = f" AND evaluator = {_str(metric.evaluator)}" if metric.evaluator else ""
        return (
            f"SELECT unit_id, ts, score AS x FROM evals WHERE environment = {env} "
            f"AND name = {_str(metric.eval)}{evaluator}"
        )
    if metric.type == "span":
        field = metric.span_field
        x = (
            "CASE WHEN status = 'error' THEN 1.0 ELSE 0.0 END"
            if field == "error"
            else f"CAST({field} AS DOUBLE)"
        )
        if metric.aggregation == "count":
            x = "1.0"
        name = f" AND name = {_str(metric.span_name)}" if metric.span_name else ""
        return f"SELECT unit_id, start_ts AS ts, {x} AS x FROM spans WHERE environment = {env}{name}"
    assert metric.sql is not None
    user = sqlglot.parse_one(metric.sql, read="duckdb").sql("duckdb")
    x = "1.0" if metric.aggregation == "count" else "CAST(value AS DOUBLE)"
    return f"SELECT CAST(unit_id AS VARCHAR) AS unit_id, ts, {x} AS x FROM ({user}) AS user_metric"


_AGGREGATES = {"count": "SUM", "sum": "SUM", "mean": "AVG", "binary": "MAX", "max": "MAX"}


def _per_unit_cte(index: int, metric: Metric, spec: ReadoutSpec) -> str:
    aggregate = "AVG" if metric.type == "eval" else _AGGREGATES[metric.aggregation]
    x = "1.0" if metric.aggregation == "binary" and metric.type != "eval" else "s.x"
    window = (
        f" AND s.ts < u.first_ts + INTERVAL ({_num(metric.window_hours)}) HOUR" if metric.window_hours else ""
    )
    post = f"{aggregate}({x}) FILTER (WHERE s.ts >= u.first_ts{window}) AS post"
    lower = "u.first_ts"
    pre = ""
    if metric.cuped_days:
        lower = f"u.first_ts - INTERVAL ({_num(metric.cuped_days * 24)}) HOUR"
        pre = f", {aggregate}({x}) FILTER (WHERE s.ts < u.first_ts) AS pre"
    return (
        f"m{index} AS (SELECT u.unit_id, {post}{pre} FROM units AS u "
        f"JOIN ({_source(metric, spec)}) AS s ON s.unit_id = u.unit_id "
        f"WHERE s.ts >= {lower} GROUP BY u.unit_id)"
    )


def _units_ctes(spec: ReadoutSpec) -> str:
    segment = (
        f"ARG_MIN(attributes, ts) ->> {_json_path(spec.segment)}" if spec.segment else "CAST(NULL AS VARCHAR)"
    )
    phase = "0"
    if spec.phase_starts[1:]:
        cases = " ".join(
            f"WHEN first_ts < {_ts(start)} THEN {i}" for i, start in enumerate(spec.phase_starts[1:])
        )
        phase = f"CASE {cases} ELSE {len(spec.phase_starts) - 1} END"
    return (
        "exposed AS (SELECT unit_id, MIN(ts) AS first_ts, "
        "COUNT(DISTINCT assigned_variation) AS n_assigned, MIN(assigned_variation) AS assigned_variation, "
        "ARG_MIN(served_variation, ts) AS served_variation, "
        "MAX(CASE WHEN served_variation <> assigned_variation THEN 1 ELSE 0 END) AS fell_back, "
        f"{segment} AS segment FROM exposures WHERE environment = {_str(spec.environment)} "
        f"AND flag_key = {_str(spec.flag_key)} GROUP BY unit_id), "
        f"units AS (SELECT unit_id, first_ts, {'served_variation' if spec.served else 'assigned_variation'} "
        f"AS variation, fell_back, segment, {phase} AS phase FROM exposed WHERE n_assigned = 1)"
    )


def readout_query(spec: ReadoutSpec, known: dict[str, Metric]) -> exp.Expr:
    """The sufficient-statistics query: one row per (phase, variation, segment)."""
    metrics = per_unit_metrics(spec.metrics, known)
    ctes = [_units_ctes(spec)] + [_per_unit_cte(i, m, spec) for i, m in enumerate(metrics)]
    columns = [
        "u.phase",
        "u.variation",
        "u.segment",
        "COUNT(*) AS units",
        "SUM(u.fell_back) AS fallback_units",
    ]
    joins = []
    index = {m.key: i for i, m in enumerate(metrics)}
    for i, m in enumerate(metrics):
        joins.append(f"LEFT JOIN m{i} ON m{i}.unit_id = u.unit_id")
        v = f"COALESCE(m{i}.post, 0)" if m.zero_when_missing else f"m{i}.post"
        n = "COUNT(*)" if m.zero_when_missing else f"COUNT(m{i}.post)"
        columns += [f"{n} AS m{i}_n", f"SUM({v}) AS m{i}_sum", f"SUM({v} * {v}) AS m{i}_sum_sq"]
        if m.cuped_days:
            # The pre-period moments must cover exactly the units counted in m{i}_n.
            pre = f"COALESCE(m{i}.pre, 0)"
            only = "" if m.zero_when_missing else f" FILTER (WHERE m{i}.post IS NOT NULL)"
            columns += [
                f"SUM({pre}){only} AS m{i}_pre_sum",
                f"SUM({pre} * {pre}){only} AS m{i}_pre_sum_sq",
                f"SUM({v} * {pre}){only} AS m{i}_post_pre",
            ]
    for r, m in enumerate(spec.metrics):
        if m.type == "ratio":
            a, b = index[m.numerator or ""], index[m.denominator or ""]
            columns.append(f"SUM(COALESCE(m{a}.post, 0) * COALESCE(m{b}.post, 0)) AS r{r}_cross")
    sql = (
        f"WITH {', '.join(ctes)} SELECT {', '.join(columns)} FROM units AS u {' '.join(joins)} "
        "GROUP BY u.phase, u.variation, u.segment ORDER BY u.phase, u.variation, u.segment"
    )
    return sqlglot.parse_one(sql, read="duckdb")


def per_unit_query(spec: ReadoutSpec, known: dict[str, Metric]) -> exp.Expr:
    """The per-unit relation itself, for notebooks and exports: one row per exposed unit."""
    metrics = per_unit_metrics(spec.metrics, known)
    ctes = [_units_ctes(spec)] + [_per_unit_cte(i, m, spec) for i, m in enumerate(metrics)]
    columns = ["u.unit_id", "u.variation", "u.phase", "u.segment", "u.first_ts", "u.fell_back"]
    joins = []
    for i, m in enumerate(metrics):
        joins.append(f"LEFT JOIN m{i} ON m{i}.unit_id = u.unit_id")
        value = f"COALESCE(m{i}.post, 0)" if m.zero_when_missing else f"m{i}.post"
        columns.append(f"{value} AS {exp.to_identifier(m.key, quoted=True).sql('duckdb')}")
        if m.cuped_days:
            pre = exp.to_identifier(m.key + "__pre", quoted=True).sql("duckdb")
            columns.append(f"COALESCE(m{i}.pre, 0) AS {pre}")
    sql = f"WITH {', '.join(ctes)} SELECT {', '.join(columns)} FROM units AS u {' '.join(joins)} ORDER BY u.unit_id"
    return sqlglot.parse_one(sql, read="duckdb")


def quantile_count_query(spec: ReadoutSpec, metric: Metric) -> exp.Expr:
    """Events per variation that enter an event-level quantile (sets the density bandwidth)."""
    window = (
        f" AND s.ts < u.first_ts + INTERVAL ({_num(metric.window_hours)}) HOUR" if metric.window_hours else ""
    )
    sql = (
        f"WITH {_units_ctes(spec)} SELECT u.variation, COUNT(*) AS n "
        f"FROM units AS u JOIN ({_source(metric, spec)}) AS s ON s.unit_id = u.unit_id "
        f"WHERE s.ts >= u.first_ts{window} AND s.x IS NOT NULL GROUP BY u.variation ORDER BY u.variation"
    )
    return sqlglot.parse_one(sql, read="duckdb")


def quantile_query(spec: ReadoutSpec, metric: Metric, levels: Sequence[float]) -> exp.Expr:
    """Event-level quantiles of `metric` per variation at `levels` (value and density points),
    one sort per variation: `q` is the list of quantiles in `levels` order."""
    columns = f"QUANTILE_CONT(s.x, [{', '.join(_num(level) for level in levels)}]) AS q"
    window = (
        f" AND s.ts < u.first_ts + INTERVAL ({_num(metric.window_hours)}) HOUR" if metric.window_hours else ""
    )
    sql = (
        f"WITH {_units_ctes(spec)} SELECT u.variation, COUNT(*) AS n, COUNT(DISTINCT u.unit_id) AS units, {columns} "
        f"FROM units AS u JOIN ({_source(metric, spec)}) AS s ON s.unit_id = u.unit_id "
        f"WHERE s.ts >= u.first_ts{window} AND s.x IS NOT NULL GROUP BY u.variation ORDER BY u.variation"
    )
    return sqlglot.parse_one(sql, read="duckdb")


def quantile_cluster_query(spec: ReadoutSpec, metric: Metric, thresholds: dict[str, float]) -> exp.Expr:
    """Per variation, moments of (events ≤ the variation's quantile, events) per unit: the
    clustered variance of an event-level quantile (events of one unit are not independent)."""
    cases = " ".join(f"WHEN {_str(v)} THEN {_num(q)}" for v, q in thresholds.items())
    window = (
        f" AND s.ts < u.first_ts + INTERVAL ({_num(metric.window_hours)}) HOUR" if metric.window_hours else ""
    )
    sql = (
        f"WITH {_units_ctes(spec)}, per_unit AS (SELECT u.variation, u.unit_id, "
        f"SUM(CASE WHEN s.x <= CASE u.variation {cases} END THEN 1.0 ELSE 0.0 END) AS below, COUNT(*) * 1.0 AS total "
        f"FROM units AS u JOIN ({_source(metric, spec)}) AS s ON s.unit_id = u.unit_id "
        f"WHERE s.ts >= u.first_ts{window} AND s.x IS NOT NULL GROUP BY u.variation, u.unit_id) "
        "SELECT variation, COUNT(*) AS n, SUM(below), SUM(below * below), SUM(total), SUM(total * total), "
        "SUM(below * total) FROM per_unit GROUP BY variation ORDER BY variation"
    )
    return sqlglot.parse_one(sql, read="duckdb")


def render(expression: exp.Expr, dialect: Dialect = "duckdb", pretty: bool = False) -> str:
    return expression.sql(dialect=dialect, pretty=pretty)
