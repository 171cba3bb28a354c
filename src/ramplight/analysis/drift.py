"""Drift: whether a property of the evidence joined to a flag's units (an exposure attribute, an
event's value or property, an eval's score or label, a span's field) has the same distribution
in each variation as in control (within each ramp phase), and in each later period as in the
variation's first.

One statement per property, built as a sqlglot tree and rendered per dialect like the rest of
`analysis.sql`. For a numeric property the store returns, per comparison, the two-sample
Kolmogorov–Smirnov statistic — exact: the largest gap between the two empirical CDFs over every
pooled distinct value, from running sums in a window — and the counts of both samples in ten bins
whose edges are the reference's deciles; for a categorical one, counts per category (the most
frequent `max_categories` over all rows, the rest folded into one). Python turns those counts into
PSI, p-values (scipy) and verdicts (`core.stats.drift`). JSON keys: docs/readout.md#drift.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, date, datetime
from functools import lru_cache
from typing import Any

from sqlglot import exp

from ramplight.analysis.execute import fetch, sql_of
from ramplight.analysis.sql import (
    _DOUBLE,
    ReadoutSpec,
    _and,
    _as,
    _col,
    _cte,
    _eq,
    _join,
    _json_number,
    _json_text,
    _not_null,
    _num,
    _span_source,
    _str,
    _subquery,
    _table,
    _ts,
    _units_ctes,
    _when,
    _with,
)
from ramplight.core.drift import JSON_PATH, MAX_CATEGORIES, DriftProperty
from ramplight.core.stats.drift import (
    PSI_MAJOR,
    PSI_MODERATE,
    DriftTest,
    chi_square_test,
    drift_verdict,
    ks_test,
    psi,
    worst_verdict,
)
from ramplight.store.base import Store

BINS = 10
"""Numeric PSI bins: the reference's deciles are their edges."""
_BIGINT = "BIGINT"


def _source(spec: ReadoutSpec, d: DriftProperty) -> exp.Select:
    """SELECT unit_id, ts, <columns the property reads> FROM the property's source rows."""
    env = _eq(_col("environment"), _str(spec.environment))
    if d.source == "spans":
        query = _span_source(spec, extra=("gen_ai_model", "attributes"))
        if d.span_name:
            query = query.where(_eq(_col("name", "sp"), _str(d.span_name)), copy=False)
        return query
    column = d.property.split(".")[0]
    where: exp.Expr
    if d.source == "exposures":
        where = _and(env, _eq(_col("flag_key"), _str(spec.flag_key)))
    elif d.source == "events":
        where = _and(
            env,
            _eq(_col("name"), _str(d.event or "")),
            _eq(_col("assignment_unit"), _str(spec.assignment_unit)),
        )
    else:
        where = _and(env, _eq(_col("name"), _str(d.eval or "")))
    return (
        exp.select(_col("unit_id"), _col("ts"), _col(column), copy=False)
        .from_(d.source, copy=False)
        .where(where, copy=False)
    )


def _value(d: DriftProperty) -> exp.Expr:
    """The property of one source row (`s`): a number or a label; NULL when absent."""
    if JSON_PATH.match(d.property):
        column, _, path = d.property.partition(".")
        reader = _json_number if d.type == "numeric" else _json_text
        return reader(_col(column, "s"), path)
    own = _col(d.property, "s")
    return exp.cast(own, _DOUBLE, copy=False) if d.type == "numeric" else own


def _period(d: DriftProperty, spec: ReadoutSpec, ts: exp.Expr) -> exp.Expr:
    """The row's period: its UTC day, or the phase its time falls in."""
    if d.over == "day":
        return exp.TimestampTrunc(this=ts, unit=exp.var("DAY"))
    phase: exp.Expr = _num(0)
    if spec.phase_starts[1:]:
        case = exp.Case()
        for i, start in enumerate(spec.phase_starts[1:]):
            case = case.when(exp.LT(this=ts.copy(), expression=_ts(start)), _num(i), copy=False)
        phase = case.else_(_num(len(spec.phase_starts) - 1), copy=False)
    return exp.cast(phase, _BIGINT, copy=False)


def _rows(spec: ReadoutSpec, d: DriftProperty, phase: int | None) -> exp.Select:
    """`dx`: the property of each source row of an analysed unit from its first exposure on,
    with the unit's variation, the row's period and the unit's phase (`stratum`)."""
    value = _value(d)
    ts = _col("ts", "s")
    query = _join(
        exp.select(
            _as(_col("variation", "u"), "variation"),
            _as(_period(d, spec, ts), "period"),
            _as(_col("phase", "u"), "stratum"),
            _as(value, "x"),
            copy=False,
        ).from_(_table("units", "u"), copy=False),
        _subquery(_source(spec, d), "s"),
        _eq(_col("unit_id", "s"), _col("unit_id", "u")),
    )
    since = exp.GTE(this=ts.copy(), expression=_col("first_ts", "u"))
    only = _eq(_col("phase", "u"), _num(phase)) if phase is not None else None
    return query.where(_and(since, _not_null(value.copy()), only), copy=False)


def _cells(d: DriftProperty) -> list[exp.CTE]:
    """`cells`: rows per variation, period, stratum and value (`val`); a categorical property
    keeps its `max_categories` most frequent values (ties by value) and folds the others into NULL."""
    # `val`, `rows_n`, `raw_n`: no alias repeats a column it is computed from, which ClickHouse
    # would read inside the other expressions; joined columns are named (else `d.variation`).
    raw = (
        exp.select(
            _col("variation"),
            _col("period"),
            _col("stratum"),
            _as(_col("x"), "val") if d.type == "numeric" else _col("x"),
            _as(exp.Count(this=exp.Star()), "rows_n" if d.type == "numeric" else "raw_n"),
            copy=False,
        )
        .from_("dx", copy=False)
        .group_by(_col("variation"), _col("period"), _col("stratum"), _col("x"), copy=False)
    )
    if d.type == "numeric":
        return [_cte("cells", raw)]
    # Ranked on the grouped rows, so the fold joins a few rows per category, not every row.
    rank = exp.Window(
        this=exp.RowNumber(),
        order=exp.Order(
            expressions=[
                exp.Ordered(this=exp.Sum(this=_col("raw_n")), desc=True),
                exp.Ordered(this=_col("x")),
            ]
        ),
    )
    ranked = (
        exp.select(_col("x"), _as(rank, "category_rank"), copy=False)
        .from_("raw", copy=False)
        .group_by(_col("x"), copy=False)
    )
    cap = _num(d.max_categories or MAX_CATEGORIES)
    kept = _when(exp.LTE(this=_col("category_rank", "r"), expression=cap), _col("x", "d"))
    cells = _join(
        exp.select(
            _as(_col("variation", "d"), "variation"),
            _as(_col("period", "d"), "period"),
            _as(_col("stratum", "d"), "stratum"),
            _as(kept, "val"),
            _as(exp.Sum(this=_col("raw_n", "d")), "rows_n"),
            copy=False,
        ).from_(_table("raw", "d"), copy=False),
        _table("ranked", "r"),
        _eq(_col("x", "r"), _col("x", "d")),
    ).group_by(_col("variation", "d"), _col("period", "d"), _col("stratum", "d"), kept.copy(), copy=False)
    return [_cte("raw", raw), _cte("ranked", ranked), _cte("cells", cells)]


def _pairs(control: str) -> exp.Query:
    """`pairs`: per comparison and value, the reference's rows (`na`) and the compared rows (`nb`).
    Each variation against control within each ramp phase of the units (`phase`; `period` NULL),
    and each variation's later periods against its first (`ref_period`; `phase` NULL). Within a
    phase the split is fixed, so both arms sample the same times; pooled over phases, a candidate
    whose share grew would be compared with older control traffic."""
    c = "c"
    rows_n, val = _col("rows_n", c), _col("val", c)

    def side(condition: exp.Expr) -> exp.Expr:
        return exp.Sum(this=_when(condition, rows_n.copy(), _num(0)))

    is_control = _eq(_col("variation", c), _str(control))
    is_arm = _eq(_col("variation", c), _col("variation", "a"))
    arms = (
        exp.select(_col("variation"), _col("stratum"), copy=False)
        .from_("cells", copy=False)
        .where(exp.NEQ(this=_col("variation"), expression=_str(control)), copy=False)
        .group_by(_col("variation"), _col("stratum"), copy=False)
    )
    between = (
        _join(
            exp.select(
                _as(_col("variation", "a"), "variation"),
                _as(exp.Null(), "period"),
                _as(exp.Null(), "ref_period"),
                _as(_col("stratum", "a"), "phase"),
                _as(val, "val"),
                _as(side(is_control), "na"),
                _as(side(is_arm), "nb"),
                copy=False,
            ).from_(_subquery(arms, "a"), copy=False),
            _table("cells", c),
            _eq(_col("stratum", c), _col("stratum", "a")),
        )
        .where(exp.paren(exp.or_(is_control.copy(), is_arm.copy(), copy=False)), copy=False)
        .group_by(_col("variation", "a"), _col("stratum", "a"), val.copy(), copy=False)
    )
    firsts = (
        exp.select(_col("variation"), _as(exp.Min(this=_col("period")), "first_period"), copy=False)
        .from_("cells", copy=False)
        .group_by(_col("variation"), copy=False)
    )
    later = (
        _join(
            exp.select(
                _as(_col("variation", "pc"), "variation"),
                _as(_col("period", "pc"), "period"),
                _col("first_period", "f"),
                copy=False,
            ).from_(_table("cells", "pc"), copy=False),
            _subquery(firsts, "f"),
            _eq(_col("variation", "f"), _col("variation", "pc")),
        )
        .where(exp.GT(this=_col("period", "pc"), expression=_col("first_period", "f")), copy=False)
        .group_by(_col("variation", "pc"), _col("period", "pc"), _col("first_period", "f"), copy=False)
    )
    in_first = _eq(_col("period", c), _col("first_period", "p"))
    in_period = _eq(_col("period", c), _col("period", "p"))
    over_time = (
        _join(
            exp.select(
                _as(_col("variation", "p"), "variation"),
                _as(_col("period", "p"), "period"),
                _as(_col("first_period", "p"), "ref_period"),
                _as(exp.Null(), "phase"),
                _as(val.copy(), "val"),
                _as(side(in_first), "na"),
                _as(side(in_period), "nb"),
                copy=False,
            ).from_(_subquery(later, "p"), copy=False),
            _table("cells", c),
            _eq(_col("variation", c), _col("variation", "p")),
        )
        .where(exp.paren(exp.or_(in_first.copy(), in_period.copy(), copy=False)), copy=False)
        .group_by(
            _col("variation", "p"), _col("period", "p"), _col("first_period", "p"), val.copy(), copy=False
        )
    )
    # A bare NULL takes the other branch's type in all three engines (a day or a phase number).
    return exp.union(between, over_time, distinct=False)


def _window(value: exp.Expr, running: bool = False) -> exp.Window:
    """`value` over one comparison (variation, period, phase), or its running total in value order."""
    partition = [_col("variation"), _col("period"), _col("phase")]
    if not running:
        return exp.Window(this=value, partition_by=partition)
    spec = exp.WindowSpec(kind="ROWS", start="UNBOUNDED", start_side="PRECEDING", end="CURRENT ROW")
    return exp.Window(
        this=value,
        partition_by=partition,
        order=exp.Order(expressions=[exp.Ordered(this=_col("val"))]),
        spec=spec,
    )


def _ratio(count: exp.Expr, total: exp.Expr) -> exp.Div:
    return exp.Div(this=exp.cast(count, _DOUBLE, copy=False), expression=exp.cast(total, _DOUBLE, copy=False))


def _numeric_result() -> tuple[list[exp.CTE], exp.Select]:
    """`ecdf` (running counts of both samples), then per comparison and bin: the counts, the
    sample sizes, the KS statistic, sums and medians (the lower one: the least value at which the
    ECDF reaches one half)."""
    na, nb = _col("na"), _col("nb")
    ecdf = exp.select(
        *(_col(c) for c in ("variation", "period", "ref_period", "phase", "val", "na", "nb")),
        _as(_window(exp.Sum(this=na.copy()), running=True), "cum_a"),
        _as(_window(exp.Sum(this=nb.copy()), running=True), "cum_b"),
        _as(_window(exp.Sum(this=na.copy())), "n_a"),
        _as(_window(exp.Sum(this=nb.copy())), "n_b"),
        copy=False,
    ).from_("pairs", copy=False)
    cum_a, cum_b, n_a, n_b, val = _col("cum_a"), _col("cum_b"), _col("n_a"), _col("n_b"), _col("val")
    gap = exp.Abs(this=exp.Sub(this=_ratio(cum_a, n_a), expression=_ratio(cum_b.copy(), n_b.copy())))
    # Reference rows strictly below the value, in tenths of the reference: the decile bin.
    below = exp.Mul(this=exp.paren(exp.Sub(this=cum_a.copy(), expression=na.copy())), expression=_num(BINS))
    top = exp.GTE(this=below.copy(), expression=exp.Mul(this=_num(BINS - 1), expression=n_a.copy()))
    decile = exp.cast(exp.Floor(this=_ratio(below, n_a.copy())), _BIGINT, copy=False)

    def median(cum: exp.Column, n: exp.Column) -> exp.Expr:
        reached = exp.GTE(this=exp.Mul(this=_num(2), expression=cum.copy()), expression=n.copy())
        return exp.Min(this=_when(reached, val.copy()))

    binned = (
        exp.select(
            *(_col(c) for c in ("variation", "period", "ref_period", "phase", "na", "nb", "n_a", "n_b")),
            _as(_when(top, _num(BINS - 1), decile), "decile"),
            _as(_window(exp.Max(this=gap)), "w_ks"),
            _as(_window(exp.Sum(this=exp.Mul(this=val.copy(), expression=na.copy()))), "w_ref_sum"),
            _as(_window(exp.Sum(this=exp.Mul(this=val.copy(), expression=nb.copy()))), "w_cmp_sum"),
            _as(_window(median(cum_a, n_a)), "w_ref_median"),
            _as(_window(median(cum_b, n_b)), "w_cmp_median"),
            copy=False,
        )
        .from_("ecdf", copy=False)
        .where(_and(exp.GT(this=n_a.copy(), expression=_num(0)), exp.GT(this=n_b.copy(), expression=_num(0))))
    )
    keys = [_col(c) for c in ("variation", "period", "ref_period", "phase", "decile")]
    result = (
        exp.select(
            *keys,
            _as(exp.Sum(this=_col("na")), "ref_count"),
            _as(exp.Sum(this=_col("nb")), "cmp_count"),
            _as(exp.Max(this=_col("n_a")), "ref_n"),
            _as(exp.Max(this=_col("n_b")), "cmp_n"),
            _as(exp.Max(this=_col("w_ks")), "ks"),
            _as(exp.Max(this=_col("w_ref_sum")), "ref_sum"),
            _as(exp.Max(this=_col("w_cmp_sum")), "cmp_sum"),
            _as(exp.Max(this=_col("w_ref_median")), "ref_median"),
            _as(exp.Max(this=_col("w_cmp_median")), "cmp_median"),
            copy=False,
        )
        .from_("binned", copy=False)
        .group_by(*(k.copy() for k in keys), copy=False)
        .order_by(*(k.copy() for k in keys), copy=False)
    )
    return [_cte("ecdf", ecdf), _cte("binned", binned)], result


def _categorical_result() -> exp.Select:
    keys = [_col(c) for c in ("variation", "period", "ref_period", "phase")]
    return (
        exp.select(
            *keys,
            _as(_col("val"), "category"),
            _as(_col("na"), "ref_count"),
            _as(_col("nb"), "cmp_count"),
            copy=False,
        )
        .from_("pairs", copy=False)
        .order_by(*(k.copy() for k in keys), _col("val"), copy=False)
    )


@lru_cache(maxsize=64)
def drift_query(spec: ReadoutSpec, d: DriftProperty, control: str, phase: int | None = None) -> exp.Select:
    """The statement behind one drift property (rows documented in the module docstring);
    `phase`: only units first exposed in that phase."""
    ctes = [*_units_ctes(spec), _cte("dx", _rows(spec, d, phase)), *_cells(d)]
    ctes.append(_cte("pairs", _pairs(control)))
    if d.type == "numeric":
        more, result = _numeric_result()
        return _with([*ctes, *more], result)
    return _with(ctes, _categorical_result())


# -- the readout's `drift` section -------------------------------------------------------------


def _period_json(d: DriftProperty, value: Any) -> str | int:
    """A period as the readout shows it: a phase number, or a UTC day `YYYY-MM-DD`."""
    if d.over == "phase":
        return int(value)
    moment = value if isinstance(value, datetime | date) else datetime.fromisoformat(str(value))
    if isinstance(moment, datetime):
        return (moment.astimezone(UTC) if moment.tzinfo else moment).date().isoformat()
    return moment.isoformat()


def _judged(
    ref: list[int], cmp: list[int], test: DriftTest, alpha: float, figures: dict[str, Any]
) -> dict[str, Any]:
    """A comparison's JSON: its figures (`figures`), sizes, PSI, test and verdict."""
    index = psi(ref, cmp)
    return {
        "rows": sum(cmp),
        "vs_rows": sum(ref),
        "psi": index,
        "test": test.method,
        "statistic": test.statistic,
        "p_value": test.p_value,
        "verdict": drift_verdict(index, test.p_value, alpha),
        **figures,
    }


def _numeric(group: list[dict[str, Any]], alpha: float) -> dict[str, Any]:
    """A numeric comparison from its rows (one per decile bin with rows)."""
    ref, cmp = [0] * BINS, [0] * BINS
    for row in group:
        ref[int(row["decile"])] += int(row["ref_count"])
        cmp[int(row["decile"])] += int(row["cmp_count"])
    first = group[0]
    n_ref, n_cmp = int(first["ref_n"]), int(first["cmp_n"])
    figures = {
        "mean": float(first["cmp_sum"]) / n_cmp,
        "vs_mean": float(first["ref_sum"]) / n_ref,
        "median": float(first["cmp_median"]),
        "vs_median": float(first["ref_median"]),
        "bins": [{"vs_share": r / n_ref, "share": c / n_cmp} for r, c in zip(ref, cmp, strict=True)],
    }
    return _judged(ref, cmp, ks_test(float(first["ks"]), n_ref, n_cmp), alpha, figures)


def _categorical(group: list[dict[str, Any]], alpha: float) -> dict[str, Any] | None:
    """A categorical comparison from its rows (one per category), None without reference rows."""
    # Categories in a fixed order (the folded rest last), so the table tested is reproducible.
    group = sorted(group, key=lambda r: (r["category"] is None, str(r["category"])))
    ref = [int(r["ref_count"]) for r in group]
    cmp = [int(r["cmp_count"]) for r in group]
    if not sum(ref):
        return None
    categories = [
        {"category": r["category"], "vs_share": a / sum(ref), "share": b / sum(cmp)}
        for r, a, b in zip(group, ref, cmp, strict=True)
    ]
    return _judged(ref, cmp, chi_square_test(ref, cmp), alpha, {"categories": categories})


def drift_property(
    store: Store,
    spec: ReadoutSpec,
    d: DriftProperty,
    control: str,
    variations: Sequence[str],
    alpha: float,
    phase: int | None = None,
) -> dict[str, Any]:
    """One property's entry of the readout's `drift` section (docs/readout.md#drift)."""
    statement = drift_query(spec, d, control, phase)
    groups: dict[tuple[str, Any, Any], list[dict[str, Any]]] = {}
    for row in fetch(store, statement):
        groups.setdefault((row["variation"], row["period"], row["phase"]), []).append(row)
    between: list[dict[str, Any]] = []
    over_time: list[dict[str, Any]] = []
    order = {v: i for i, v in enumerate(variations)}  # then any variation the flag no longer has

    def reading_order(key: tuple[str, Any, Any]) -> tuple[Any, ...]:
        variation, period, stratum = key
        return (order.get(variation, len(order)), variation, period is not None, period, stratum)

    for (variation, period, stratum), group in sorted(groups.items(), key=lambda g: reading_order(g[0])):
        judged = _numeric(group, alpha) if d.type == "numeric" else _categorical(group, alpha)
        if judged is None:
            continue
        if period is None:
            between.append({"variation": variation, "vs": control, "phase": int(stratum), **judged})
        else:
            when = {"period": _period_json(d, period), "vs_period": _period_json(d, group[0]["ref_period"])}
            over_time.append({"variation": variation, **when, **judged})
    return {
        "key": d.key,
        "source": d.source,
        "property": d.property,
        "type": d.type,
        "over": d.over,
        "verdict": worst_verdict([c["verdict"] for c in (*between, *over_time)]),
        "between_variations": between,
        "over_time": over_time,
        "sql": sql_of(store, statement, pretty=True),
    }


def drift_section(
    store: Store,
    spec: ReadoutSpec,
    properties: Sequence[DriftProperty],
    control: str,
    variations: Sequence[str],
    alpha: float,
    phase: int | None = None,
) -> dict[str, Any]:
    """The readout's `drift` section: the thresholds its verdicts use, then each property."""
    return {
        "thresholds": {"moderate": PSI_MODERATE, "major": PSI_MAJOR, "alpha": alpha},
        "properties": [drift_property(store, spec, d, control, variations, alpha, phase) for d in properties],
    }
