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
    variations: tuple[str, ...] = ()
    """The flag's variations: the readout's data-quality figures per variation (`dq_units_0`, …)."""


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
_SPAN_COLUMNS = "unit_id, start_ts AS ts, name, status, duration_ms, input_tokens, output_tokens, cost_usd"


def _group(metric: Metric) -> str:
    """Metrics read from the same table share one scan, join and group-by."""
    if metric.type == "sql":
        return f"sql:{metric.key}"
    return {"event": "events", "eval": "evals"}.get(metric.type, "spans")


def _flag_events(spec: ReadoutSpec) -> str:
    """The outcome events that should join this flag: its own, or unflagged ones of its unit."""
    return f"COALESCE(flag_key = {_str(spec.flag_key)}, assignment_unit = {_str(spec.assignment_unit)})"


def _group_source(group: str, members: Sequence[Metric], spec: ReadoutSpec, quality: bool = False) -> str:
    env = _str(spec.environment)
    if group == "events":
        names = ", ".join(sorted({_str(m.event or "") for m in members}))
        metric_rows = f"assignment_unit = {_str(spec.assignment_unit)}" + (
            f" AND name IN ({names})" if names else ""
        )
        if not quality:
            return f"SELECT unit_id, ts, name, value, properties FROM events WHERE environment = {env} AND {metric_rows}"
        # The same scan and join also serve the joinability figures: the flag's outcome events
        # ride along, marked, and the metrics keep to their own rows.
        rows = f"({metric_rows}) OR {_flag_events(spec)}" if names else _flag_events(spec)
        return (
            f"SELECT unit_id, ts, name, value, properties, assignment_unit = {_str(spec.assignment_unit)} "
            f"AS metric_row, {_flag_events(spec)} AS flag_row FROM events WHERE environment = {env} AND ({rows})"
        )
    if group == "evals":
        names = ", ".join(sorted({_str(m.eval or "") for m in members}))
        return f"SELECT unit_id, ts, name, evaluator, score FROM evals WHERE environment = {env} AND name IN ({names})"
    if group == "spans":
        return f"SELECT {_SPAN_COLUMNS} FROM spans WHERE environment = {env}"
    (metric,) = members
    user = sqlglot.parse_one(metric.sql or "", read="duckdb").sql("duckdb")
    return f"SELECT CAST(unit_id AS VARCHAR) AS unit_id, ts, CAST(value AS DOUBLE) AS value FROM ({user}) AS user_metric"


def _value_and_condition(metric: Metric) -> tuple[str, str]:
    """The per-row value a metric aggregates, and which rows of its group are its own."""
    counted = metric.aggregation in ("count", "binary")
    if metric.type == "event":
        if counted:
            value = "1.0"
        elif metric.value == "value":
            value = "s.value"
        else:
            value = f"CAST(s.properties ->> {_json_path(metric.value.removeprefix('properties.'))} AS DOUBLE)"
        return value, f"s.name = {_str(metric.event or '')}"
    if metric.type == "eval":
        evaluator = f" AND s.evaluator = {_str(metric.evaluator)}" if metric.evaluator else ""
        return "s.score", f"s.name = {_str(metric.eval or '')}{evaluator}"
    if metric.type == "span":
        field = metric.span_field
        value = (
            "CASE WHEN s.status = 'error' THEN 1.0 ELSE 0.0 END"
            if field == "error"
            else f"CAST(s.{field} AS DOUBLE)"
        )
        condition = f"s.name = {_str(metric.span_name)}" if metric.span_name else "TRUE"
        return ("1.0" if counted else value), condition
    return ("1.0" if counted else "s.value"), "TRUE"


@dataclass(frozen=True, slots=True)
class _PerUnit:
    ctes: list[str]
    joins: list[str]
    post: dict[int, str]
    pre: dict[int, str]
    quality_group: str = ""
    """The CTE that also holds the data-quality counts per exposed unit (with `quality`)."""


def _per_unit(metrics: Sequence[Metric], spec: ReadoutSpec, quality: bool = False) -> _PerUnit:
    """One CTE per source table computing every metric's per-unit post (and CUPED pre) value;
    with `quality`, the events CTE (there is always one then) also counts each exposed unit's
    joinable and pre-exposure outcome events, and joins every exposed unit (`quality_group`)."""
    groups: dict[str, list[int]] = {}
    for i, metric in enumerate(metrics):
        groups.setdefault(_group(metric), []).append(i)
    if quality:
        groups.setdefault("events", [])
    out = _PerUnit([], [], {}, {}, f"g{list(groups).index('events')}" if quality else "")
    for k, (group, indices) in enumerate(groups.items()):
        folded = quality and group == "events"
        columns = []
        lookback = 0.0
        for i in indices:
            metric = metrics[i]
            aggregate = "AVG" if metric.type == "eval" else _AGGREGATES[metric.aggregation]
            value, condition = _value_and_condition(metric)
            if folded:
                condition = f"s.metric_row AND {condition}"
            window = (
                f" AND s.ts < u.first_ts + INTERVAL ({_num(metric.window_hours)}) HOUR"
                if metric.window_hours
                else ""
            )
            # CASE rather than FILTER: the same value (both skip the other rows), and DuckDB
            # evaluates it more cheaply over the millions of joined rows.
            columns.append(
                f"{aggregate}(CASE WHEN {condition} AND s.ts >= u.first_ts{window} THEN {value} END) AS p{i}"
            )
            out.post[i] = f"g{k}.p{i}"
            if metric.cuped_days:
                hours = metric.cuped_days * 24
                lookback = max(lookback, hours)
                columns.append(
                    f"{aggregate}(CASE WHEN {condition} AND s.ts < u.first_ts "
                    f"AND s.ts >= u.first_ts - INTERVAL ({_num(hours)}) HOUR THEN {value} END) AS r{i}"
                )
                out.pre[i] = f"g{k}.r{i}"
        lower = f"u.first_ts - INTERVAL ({_num(lookback)}) HOUR" if lookback else "u.first_ts"
        source = _group_source(group, [metrics[i] for i in indices], spec, folded)
        units, where = "units", f"s.ts >= {lower}"
        if folded:
            # Every exposed unit (also those the metrics leave out) and its whole history: a
            # pre-exposure event counts at any age. An event at or after its unit's first exposure
            # is also after the flag's first exposure, so it is one the readout expects to join.
            units, where = "exposed", f"s.flag_row OR {where}"
            columns += [
                "COUNT(CASE WHEN s.flag_row AND s.ts >= u.first_ts THEN 1 END) AS joinable_events",
                "COUNT(CASE WHEN s.flag_row AND s.ts < u.first_ts THEN 1 END) AS events_before_exposure",
            ]
        out.ctes.append(
            f"g{k} AS (SELECT u.uid, {', '.join(columns)} FROM {units} AS u JOIN ({source}) AS s "
            f"ON s.unit_id = u.unit_id WHERE {where} GROUP BY u.uid)"
        )
        out.joins.append(f"LEFT JOIN g{k} ON g{k}.uid = u.uid")
    return out


def _units_ctes(spec: ReadoutSpec) -> str:
    segment = (
        f"ARG_MIN(attributes, ts) ->> {_json_path(spec.segment)}" if spec.segment else "CAST(NULL AS VARCHAR)"
    )
    # A unit first exposed before the flag served this environment belongs to no phase: excluded
    # (and counted by `before_flag_query`).
    since = f" AND first_ts >= {_ts(spec.phase_starts[0])}" if spec.phase_starts else ""
    phase = "0"
    if spec.phase_starts[1:]:
        cases = " ".join(
            f"WHEN first_ts < {_ts(start)} THEN {i}" for i, start in enumerate(spec.phase_starts[1:])
        )
        phase = f"CASE {cases} ELSE {len(spec.phase_starts) - 1} END"
    # One variation iff its least and greatest agree (the column is NOT NULL): two aggregates in
    # the same pass, where COUNT(DISTINCT …) costs a second group-by of every exposure and a join.
    # `uid` numbers the units so that the per-unit groupings and joins after the events join key
    # on an integer, not the unit_id text; MATERIALIZED so that every reader sees one numbering.
    return (
        "exposed AS MATERIALIZED (SELECT unit_id, ROW_NUMBER() OVER () AS uid, MIN(ts) AS first_ts, "
        "MIN(assigned_variation) = MAX(assigned_variation) AS one_variation, "
        "MIN(assigned_variation) AS assigned_variation, "
        "ARG_MIN(served_variation, ts) AS served_variation, "
        "MAX(CASE WHEN served_variation <> assigned_variation THEN 1 ELSE 0 END) AS fell_back, "
        f"{segment} AS segment FROM exposures WHERE environment = {_str(spec.environment)} "
        f"AND flag_key = {_str(spec.flag_key)} GROUP BY unit_id), "
        f"units AS (SELECT unit_id, uid, first_ts, {'served_variation' if spec.served else 'assigned_variation'} "
        f"AS variation, assigned_variation, fell_back, segment, {phase} AS phase FROM exposed "
        f"WHERE one_variation{since})"
    )


def _quality_cte(spec: ReadoutSpec, per_unit: _PerUnit) -> str:
    """One row of data-quality figures over every exposed unit (docs/readout.md), from the
    relations the sufficient statistics already build."""
    columns = []
    for k, variation in enumerate(spec.variations):
        mine = f"one_variation AND assigned_variation = {_str(variation)}"
        columns += [
            f"COUNT(*) FILTER (WHERE {mine}) AS dq_units_{k}",
            f"COUNT(*) FILTER (WHERE {mine} AND fell_back = 1) AS dq_fallback_units_{k}",
        ]
    columns.append("COUNT(*) FILTER (WHERE NOT one_variation) AS dq_multiple_variation_units")
    g = per_unit.quality_group
    # Unflagged outcomes before the flag's first exposure are not expected to join it.
    events = (
        f"SELECT COUNT(*) FROM events WHERE environment = {_str(spec.environment)} AND {_flag_events(spec)} "
        f"AND (COALESCE(flag_key = {_str(spec.flag_key)}, FALSE) OR ts >= (SELECT MIN(first_ts) FROM exposed))"
    )
    return (
        f"quality AS (SELECT e.*, j.*, ({events}) AS dq_events FROM (SELECT {', '.join(columns)} FROM exposed) AS e "
        f"CROSS JOIN (SELECT COALESCE(SUM({g}.joinable_events), 0) AS dq_joinable_events, "
        f"COALESCE(SUM({g}.events_before_exposure), 0) AS dq_events_before_exposure FROM {g}) AS j)"
    )


def readout_query(spec: ReadoutSpec, known: dict[str, Metric]) -> exp.Expr:
    """The readout's statement: its data-quality figures (`dq_…`, the same on every row) beside
    the sufficient statistics, one row per (phase, variation, segment) — or a single row with
    null statistics when no unit is left to analyse."""
    metrics = per_unit_metrics(spec.metrics, known)
    per_unit = _per_unit(metrics, spec, quality=True)
    ctes = [_units_ctes(spec), *per_unit.ctes, _quality_cte(spec, per_unit)]
    columns = [
        "u.phase",
        "u.variation",
        "u.segment",
        "COUNT(*) AS units",
        "SUM(u.fell_back) AS fallback_units",
    ]
    index = {m.key: i for i, m in enumerate(metrics)}
    for i, m in enumerate(metrics):
        post = per_unit.post[i]
        v = f"COALESCE({post}, 0)" if m.zero_when_missing else post
        n = "COUNT(*)" if m.zero_when_missing else f"COUNT({post})"
        columns += [f"{n} AS m{i}_n", f"SUM({v}) AS m{i}_sum", f"SUM({v} * {v}) AS m{i}_sum_sq"]
        if m.cuped_days:
            # CUPED strata among the units counted in m{i}_n: those with a pre-period value
            # (regression moments) and those without one, which stay missing rather than 0
            # (Deng et al. 2013, "Handling Missing Pre-Experiment Data").
            pre = per_unit.pre[i]
            counted = "" if m.zero_when_missing else f" AND {post} IS NOT NULL"
            has, lacks = f"{pre} IS NOT NULL{counted}", f"{pre} IS NULL{counted}"
            columns += [
                f"COUNT(*) FILTER (WHERE {has}) AS m{i}_pre_n",
                f"SUM({v}) FILTER (WHERE {has}) AS m{i}_pre_post_sum",
                f"SUM({v} * {v}) FILTER (WHERE {has}) AS m{i}_pre_post_sum_sq",
                f"SUM({pre}) FILTER (WHERE {has}) AS m{i}_pre_sum",
                f"SUM({pre} * {pre}) FILTER (WHERE {has}) AS m{i}_pre_sum_sq",
                f"SUM({v} * {pre}) FILTER (WHERE {has}) AS m{i}_post_pre",
                f"COUNT(*) FILTER (WHERE {lacks}) AS m{i}_nopre_n",
                f"SUM({v}) FILTER (WHERE {lacks}) AS m{i}_nopre_sum",
                f"SUM({v} * {v}) FILTER (WHERE {lacks}) AS m{i}_nopre_sum_sq",
            ]
    for r, m in enumerate(spec.metrics):
        if m.type == "ratio":
            a, b = per_unit.post[index[m.numerator or ""]], per_unit.post[index[m.denominator or ""]]
            columns.append(f"SUM(COALESCE({a}, 0) * COALESCE({b}, 0)) AS r{r}_cross")
    statistics = (
        f"SELECT {', '.join(columns)} FROM units AS u {' '.join(per_unit.joins)} "
        "GROUP BY u.phase, u.variation, u.segment"
    )
    sql = (
        f"WITH {', '.join(ctes)} SELECT r.*, q.* FROM quality AS q LEFT JOIN ({statistics}) AS r ON TRUE "
        "ORDER BY r.phase, r.variation, r.segment"
    )
    return sqlglot.parse_one(sql, read="duckdb")


def assigned_counts_query(spec: ReadoutSpec) -> exp.Expr:
    """Units per phase and ASSIGNED variation: what the sample-ratio test checks, also when the
    readout groups by the served variation (a fallback is not a split mismatch)."""
    sql = (
        f"WITH {_units_ctes(spec)} SELECT u.phase, u.assigned_variation AS variation, COUNT(*) AS units "
        "FROM units AS u GROUP BY u.phase, u.assigned_variation ORDER BY u.phase, u.assigned_variation"
    )
    return sqlglot.parse_one(sql, read="duckdb")


def before_flag_query(spec: ReadoutSpec) -> exp.Expr | None:
    """Exposures stamped before the environment's first phase, and their units (which the
    readout excludes); None without phases."""
    if not spec.phase_starts:
        return None
    sql = (
        "SELECT COUNT(*) AS exposures, COUNT(DISTINCT unit_id) AS units FROM exposures "
        f"WHERE environment = {_str(spec.environment)} AND flag_key = {_str(spec.flag_key)} "
        f"AND ts < {_ts(spec.phase_starts[0])}"
    )
    return sqlglot.parse_one(sql, read="duckdb")


def per_unit_query(spec: ReadoutSpec, known: dict[str, Metric]) -> exp.Expr:
    """The per-unit relation itself, for notebooks and exports: one row per exposed unit."""
    metrics = per_unit_metrics(spec.metrics, known)
    per_unit = _per_unit(metrics, spec)
    columns = ["u.unit_id", "u.variation", "u.phase", "u.segment", "u.first_ts", "u.fell_back"]
    for i, m in enumerate(metrics):
        post = per_unit.post[i]
        column = f"COALESCE({post}, 0)" if m.zero_when_missing else post
        columns.append(f"{column} AS {exp.to_identifier(m.key, quoted=True).sql('duckdb')}")
        if m.cuped_days:
            pre = exp.to_identifier(m.key + "__pre", quoted=True).sql("duckdb")
            columns.append(f"{per_unit.pre[i]} AS {pre}")  # NULL: no pre-period value
    sql = (
        f"WITH {', '.join([_units_ctes(spec), *per_unit.ctes])} SELECT {', '.join(columns)} "
        f"FROM units AS u {' '.join(per_unit.joins)} ORDER BY u.unit_id"
    )
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
