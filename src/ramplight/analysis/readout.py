"""Readout v2: data quality first, then every defined metric per variation against control.

The warehouse returns sufficient statistics (one row per phase, variation and segment, from
`analysis.sql`); the pure stats engine turns them into effects. Phases come from the flag's
change log: SRM is checked on assigned units per phase against that phase's weights (and once
across phases), and effects, CUPED included, are combined across phases with the stratified
estimator so a ramp under a time trend is not biased.
JSON keys: docs/readout.md.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from sqlglot import exp

from ramplight.analysis.drift import drift_section
from ramplight.analysis.execute import check_sql_metrics, fetch, sql_of, user_sql_metrics
from ramplight.analysis.options import ReadoutOptions
from ramplight.analysis.report import DataQuality
from ramplight.analysis.report import readout as readout_v1
from ramplight.analysis.sql import (
    ReadoutSpec,
    assigned_counts_query,
    cancellation_query,
    critical_path_query,
    per_unit_metrics,
    quantile_count_query,
    quantile_query,
    readout_query,
    route_query,
    span_joinability_query,
    trace_summary_query,
    traced_units_query,
)
from ramplight.core.errors import NotFoundError, ValidationError
from ramplight.core.flags import Flag
from ramplight.core.metrics import Metric
from ramplight.core.phases import Phase, phases_from_changes
from ramplight.core.stats import (
    ArmSummary,
    EffectResult,
    QuantileEstimate,
    RatioMoments,
    RegressionMoments,
    SampleMoments,
    bayes_test,
    combined_srm_test,
    density_levels,
    holm_bonferroni,
    minimum_detectable_effect,
    noninferiority_test,
    sample_size,
    sequential_srm_p_value,
    sequential_test,
    srm_test,
    stratified_cuped_summaries,
    welch_test,
)
from ramplight.core.stats.stratified import stratified_summaries
from ramplight.store.base import Store

READOUT_SCHEMA = "ramplight.readout/v2"


def _finite(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None


def _effect_json(result: EffectResult) -> dict[str, Any]:
    rel = result.relative
    return {
        "method": result.method,
        "difference": _finite(result.absolute.estimate),
        "ci_low": _finite(result.absolute.ci_lower),
        "ci_high": _finite(result.absolute.ci_upper),
        "p_value": _finite(result.absolute.p_value),
        "relative": _finite(rel.estimate) if rel else None,
        "relative_ci_low": _finite(rel.ci_lower) if rel else None,
        "relative_ci_high": _finite(rel.ci_upper) if rel else None,
        # The lift has its own test (delta-method variance): its p-value differs from the
        # difference's, so one shown beside a lift must be this one.
        "relative_p_value": _finite(rel.p_value) if rel else None,
    }


Row = Mapping[str, Any]


def _rows(store: Store, statement: exp.Expr) -> list[dict[str, Any]]:
    return fetch(store, statement)


def _summary(
    metric: Metric, i: int, rows: Sequence[Row], index: Mapping[str, int], r: int
) -> ArmSummary | None:
    """Sum the rows' sufficient statistics (one arm, one stratum) into the test's input."""
    if metric.type == "ratio":
        a, b = index[metric.numerator or ""], index[metric.denominator or ""]
        n = sum(int(row["units"]) for row in rows)
        if n < 2:
            return None
        moments = RatioMoments(
            n=n,
            sum_m=sum(row[f"m{a}_sum"] or 0.0 for row in rows),
            sum_sq_m=sum(row[f"m{a}_sum_sq"] or 0.0 for row in rows),
            sum_d=sum(row[f"m{b}_sum"] or 0.0 for row in rows),
            sum_sq_d=sum(row[f"m{b}_sum_sq"] or 0.0 for row in rows),
            sum_md=sum(row[f"r{r}_cross"] or 0.0 for row in rows),
        )
        return moments.summary() if moments.sum_d > 0 else None
    n = sum(int(row[f"m{i}_n"] or 0) for row in rows)
    if n < 2:
        return None
    return SampleMoments(
        n=n,
        sum=sum(row[f"m{i}_sum"] or 0.0 for row in rows),
        sum_sq=sum(row[f"m{i}_sum_sq"] or 0.0 for row in rows),
    ).summary()


def _regression(i: int, rows: Sequence[Row]) -> tuple[RegressionMoments, RegressionMoments]:
    """CUPED's two strata of one arm and phase: units with a pre-period value, and units without
    one (their covariate left at a constant 0, so CUPED leaves that stratum unadjusted)."""

    def total(column: str) -> float:
        return sum(row[column] or 0.0 for row in rows)

    with_pre = RegressionMoments(
        n=int(total(f"m{i}_pre_n")),
        sum_post=total(f"m{i}_pre_post_sum"),
        sum_sq_post=total(f"m{i}_pre_post_sum_sq"),
        sum_pre=total(f"m{i}_pre_sum"),
        sum_sq_pre=total(f"m{i}_pre_sum_sq"),
        sum_post_pre=total(f"m{i}_post_pre"),
    )
    without_pre = RegressionMoments(
        n=int(total(f"m{i}_nopre_n")),
        sum_post=total(f"m{i}_nopre_sum"),
        sum_sq_post=total(f"m{i}_nopre_sum_sq"),
        sum_pre=0.0,
        sum_sq_pre=0.0,
        sum_post_pre=0.0,
    )
    return with_pre, without_pre


def _family(metrics: Sequence[Metric], options: ReadoutOptions) -> tuple[str, ...]:
    """The metric keys whose comparisons form the multiple-comparison family.

    Given: as given (each must be in the readout). Otherwise every metric of the readout except
    those that are a numerator or denominator of a ratio in it (helpers feeding the ratio).
    """
    keys = [m.key for m in metrics]
    if options.family is not None:
        missing = [k for k in options.family if k not in keys]
        if missing:
            raise ValidationError.at(
                "family", f"metric {missing[0]!r} is not in this readout; select it as a metric too"
            )
        return tuple(dict.fromkeys(options.family))
    components = {ref for m in metrics if m.type == "ratio" for ref in (m.numerator, m.denominator)}
    return tuple(k for k in keys if k not in components)


def _adjust_family(entries: Sequence[dict[str, Any]], family: tuple[str, ...]) -> None:
    """Holm-adjust the fixed p-values of every comparison (arm, segment) of the family's metrics;
    comparisons outside the family get `p_value_holm` null."""
    members = set(family)
    tested: list[dict[str, Any]] = []
    for entry in entries:
        for comparison in entry["comparisons"]:
            fixed = comparison["fixed"]
            fixed["p_value_holm"] = None
            if entry["key"] in members and fixed["p_value"] is not None:
                tested.append(fixed)
    if tested:
        for fixed, adjusted in zip(tested, holm_bonferroni([f["p_value"] for f in tested]), strict=True):
            fixed["p_value_holm"] = adjusted


def _srm_overall(strata: Sequence[tuple[int, list[int], list[float]]]) -> dict[str, Any] | None:
    """One sample-ratio test over every phase that has one: the phases' chi-squares added."""
    if not strata:
        return None
    result = combined_srm_test([(observed, weights) for _, observed, weights in strata])
    return {
        "p_value": result.p_value,
        "chi_square": _finite(result.chi_square),
        "df": result.df,
        "mismatch": result.mismatch,
        "phases": [index for index, _, _ in strata],
    }


def _per(total: float | None, count: int) -> float | None:
    return total / count if total is not None and count else None


def _trace_summary(store: Store, spec: ReadoutSpec, units: Mapping[str, int]) -> dict[str, Any]:
    """Per variation: each span name's latency p50/p95, errors, tokens and cost, per unit and per
    request (trace) totals, the routes taken, the span names on the traces' critical paths and
    the cancellation tax — from the store, one statement each (docs/traces.md)."""
    out: dict[str, Any] = {}
    for row in fetch(store, trace_summary_query(spec)):
        variation = out.setdefault(
            row["variation"], {"units": int(units.get(row["variation"], 0)), "traces": 0, "cost_usd": None,
                               "spans_without_cost": 0, "spans": []}
        )  # fmt: skip
        p50, p95 = (float(v) for v in row["latency_ms"]) if row["latency_ms"] else (None, None)
        cost = float(row["cost_usd_total"]) if row["cost_usd_total"] is not None else None
        variation["spans"].append(
            {
                "name": row["name"],
                "root": bool(row["root"]),
                "spans": int(row["spans"]),
                "traces": int(row["traces"]),
                "latency_p50_ms": p50,
                "latency_p95_ms": p95,
                "error_rate": int(row["errors"]) / int(row["spans"]),
                "input_tokens": int(row["input_tokens_total"] or 0),
                "output_tokens": int(row["output_tokens_total"] or 0),
                "cost_usd": cost,
                "cost_per_trace": _per(cost, int(row["traces"])),
                "spans_without_cost": int(row["spans_without_cost"]),
            }
        )
        if row["root"]:
            variation["traces"] += int(row["traces"])
        if cost is not None:
            variation["cost_usd"] = (variation["cost_usd"] or 0.0) + cost
        variation["spans_without_cost"] += int(row["spans_without_cost"])
    traced = {row["variation"]: int(row["traced_units"]) for row in fetch(store, traced_units_query(spec))}
    for name, variation in out.items():
        variation["traced_units"] = traced.get(name, 0)
        variation["cost_per_unit"] = _per(variation["cost_usd"], variation["units"])
        # Under head sampling the cost is of the sampled traces: per unit with a trace.
        variation["cost_per_traced_unit"] = _per(variation["cost_usd"], variation["traced_units"])
        variation["cost_per_trace"] = _per(variation["cost_usd"], variation["traces"])
        variation["critical_path"] = []
        variation["routes"] = []
        variation["cancellation"] = {
            "cancelled_traces": 0, "cancelled_share": 0.0 if variation["traces"] else None,
            "generations_ran_on": 0, "input_tokens": 0, "output_tokens": 0,
            "output_tokens_after_cancel": 0.0, "cost_usd": None, "cost_share": None, "unpriced": 0,
        }  # fmt: skip
    for row in fetch(store, route_query(spec)):
        if row["variation"] not in out:
            continue
        variation = out[row["variation"]]
        p50, p95 = (float(v) for v in row["latency_ms"]) if row["latency_ms"] else (None, None)
        variation.setdefault("routes", []).append(
            {
                "model": row["model"],
                "traces": int(row["traces"]),
                "share": _per(float(row["traces"]), variation["traces"]),
                "calls": int(row["calls"]),
                "latency_p50_ms": p50,
                "latency_p95_ms": p95,
                "error_rate": int(row["errors"]) / int(row["calls"]),
                "cost_usd": float(row["cost_usd_total"]) if row["cost_usd_total"] is not None else None,
            }
        )
    for row in fetch(store, critical_path_query(spec)):
        if row["variation"] not in out:
            continue
        variation = out[row["variation"]]
        variation["critical_path"].append(
            {
                "name": row["name"],
                "traces": int(row["traces"]),
                "share": _per(float(row["traces"]), variation["traces"]),
                "mean_duration_ms": float(row["mean_duration_ms"]),
            }
        )
    for row in fetch(store, cancellation_query(spec)):
        if row["variation"] not in out:
            continue
        variation = out[row["variation"]]
        cost = float(row["cost_ran_on"]) if row["cost_ran_on"] is not None else None
        variation["cancellation"] = {
            "cancelled_traces": int(row["cancelled_traces"]),
            "cancelled_share": _per(float(row["cancelled_traces"]), variation["traces"]),
            "generations_ran_on": int(row["generations_ran_on"]),
            "input_tokens": int(row["input_tokens_ran_on"] or 0),
            "output_tokens": int(row["output_tokens_ran_on"] or 0),
            "output_tokens_after_cancel": float(row["output_tokens_after_cancel"] or 0.0),
            "cost_usd": cost,
            "cost_share": cost / variation["cost_usd"]
            if cost is not None and variation["cost_usd"]
            else None,
            "unpriced": int(row["unpriced_ran_on"]),
        }
    return out


def price_table(store: Store) -> tuple[tuple[str, float, float], ...]:
    """The store's price table as the readout spec holds it (none without a control plane)."""
    lister = getattr(store, "list_prices", None)
    prices = lister() if callable(lister) else []
    return tuple((p.model, p.input_per_million, p.output_per_million) for p in prices)


def _ratio_parts(metrics: Sequence[Metric]) -> list[str]:
    return [ref for m in metrics if m.type == "ratio" for ref in (m.numerator, m.denominator) if ref]


def _data_quality(row: Row, variations: Sequence[str]) -> DataQuality:
    """The `dq_…` columns of the readout statement (the same on each of its rows)."""
    return DataQuality(
        units={v: int(row[f"dq_units_{k}"]) for k, v in enumerate(variations)},
        fallback_units={v: int(row[f"dq_fallback_units_{k}"]) for k, v in enumerate(variations)},
        multiple_variation_units=int(row["dq_multiple_variation_units"]),
        rule_assigned_units=int(row["dq_rule_assigned_units"]),
        events=int(row["dq_events"]),
        joinable_events=int(row["dq_joinable_events"]),
        events_before_exposure=int(row["dq_events_before_exposure"]),
    )


def _phase_weights(phase: Phase) -> dict[str, float]:
    return {k: v for k, v in phase.weights.items() if v > 0}


def build_readout(
    store: Store,
    flag: Flag,
    environment: str,
    metrics: Sequence[Metric],
    known: Mapping[str, Metric],
    options: ReadoutOptions = ReadoutOptions(),
    now: datetime | None = None,
) -> dict[str, Any]:
    """The v2 readout; without metric definitions the v1 per-event-name metrics are used."""
    if environment not in flag.environments:
        raise NotFoundError(f"flag {flag.key!r} is not configured in environment {environment!r}")
    changes = store.flag_changes(flag.key)
    if options.until is not None:
        changes = [c for c in changes if c.ts <= options.until]
        now = now or options.until
    phases = phases_from_changes(changes, environment)
    if options.sequential_tuning is not None and not (
        math.isfinite(options.sequential_tuning) and options.sequential_tuning > 0
    ):
        raise ValidationError.at("sequential_tuning", "a positive number of units (both arms)")
    if options.phase is not None and not 0 <= options.phase < len(phases):
        raise ValidationError.at(
            "phase", f"flag {flag.key!r} has phases 0..{len(phases) - 1} in {environment}"
        )
    control = flag.environments[environment].default_variation
    spec = ReadoutSpec(
        flag_key=flag.key,
        environment=environment,
        assignment_unit=flag.assignment_unit,
        metrics=tuple(m for m in metrics if m.type != "quantile"),
        phase_starts=tuple(p.start for p in phases),
        segment=options.segment,
        served=options.served,
        variations=tuple(flag.variation_keys()),
        quantiles=tuple(m for m in metrics if m.type == "quantile" and m.span_field is None),
        prices=price_table(store),
        until=options.until,
    )
    statement = readout_query(spec, dict(known))
    user = user_sql_metrics(per_unit_metrics(spec.metrics, dict(known)))
    check_sql_metrics(store, user)
    rows = fetch(store, statement, user)
    quality = rows[0]
    quality_figures = _data_quality(rows[0], spec.variations)
    base = readout_v1(store, flag, environment, quality_figures, now, not metrics)
    rows = [row for row in rows if row["phase"] is not None]  # none: no unit to analyse
    selected = [p for p in phases if options.phase is None or p.index == options.phase]
    estimable = [p.index for p in selected if p.enabled]
    by_key: dict[tuple[int, str, Any], list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        by_key[(int(row["phase"]), row["variation"], row["segment"])].append(row)
    segments = sorted({row["segment"] for row in rows}, key=lambda s: (s is None, str(s))) or [None]
    variations = flag.variation_keys()

    # -- data quality per phase ----------------------------------------------------------
    # The split is tested on ASSIGNED variations; as-served rows group fallbacks elsewhere.
    assigned: dict[tuple[int, str], int] = defaultdict(int)
    for row in _rows(store, assigned_counts_query(spec)) if options.served else rows:
        assigned[(int(row["phase"]), row["variation"])] += int(row["units"])
    phase_json = []
    srm_strata: list[tuple[int, list[int], list[float]]] = []
    for phase in phases:
        counts = {
            v: sum(int(r["units"]) for s in segments for r in by_key.get((phase.index, v, s), []))
            for v in variations
        }
        weights = _phase_weights(phase)
        srm = None
        observed = [assigned[(phase.index, v)] for v in weights]
        if phase.enabled and sum(observed) > 0 and len(weights) > 1:
            result = srm_test(observed, list(weights.values()))
            srm = {
                "p_value": result.p_value,
                "sequential_p_value": sequential_srm_p_value(observed, list(weights.values())),
                "chi_square": result.chi_square,
                "mismatch": result.mismatch,
                "observed": dict(zip(weights, observed, strict=True)),
                "expected_weights": weights,
            }
            srm_strata.append((phase.index, observed, list(weights.values())))
        phase_json.append(
            {
                "phase": phase.index,
                "start": phase.start.isoformat(),
                "end": phase.end.isoformat() if phase.end else None,
                "weights": phase.weights,
                "enabled": phase.enabled,
                "units": counts,
                "srm": srm,
            }
        )

    # -- metrics --------------------------------------------------------------------------
    moment = now or datetime.now(UTC)
    elapsed_days = (moment - phases[0].start).total_seconds() / 86400 if phases else 0.0
    per_unit = per_unit_metrics(spec.metrics, dict(known))
    index = {m.key: i for i, m in enumerate(per_unit)}
    ratio_index = {m.key: r for r, m in enumerate(spec.metrics) if m.type == "ratio"}
    out_metrics: list[dict[str, Any]] = []
    quantile_index = {m.key: j for j, m in enumerate(spec.quantiles)}
    for metric in metrics:
        if metric.type == "quantile":
            events: dict[str, int] = defaultdict(int)
            if metric.span_field is not None:  # counted by a statement of its own
                for row in fetch(store, quantile_count_query(spec, metric)):
                    events[row["variation"]] = int(row["n"])
            else:
                j = quantile_index[metric.key]
                for row in rows:
                    events[row["variation"]] += int(row[f"q{j}_n"] or 0)
            out_metrics.append(_quantile_metric(store, spec, metric, events, control, variations, options))
            continue
        i = index.get(metric.key, -1)
        r = ratio_index.get(metric.key, -1)
        for segment in segments:
            entry = _metric_entry(
                metric, i, r, index, by_key, segment, estimable, variations, control, options, elapsed_days
            )
            if options.segment is not None:
                entry["segment"] = segment
            out_metrics.append(entry)
    family = _family(metrics, options)
    _adjust_family(out_metrics, family)
    spans: dict[str, dict[str, int]] = {}
    span_metrics = any(
        m.type == "span" or m.span_field is not None
        for m in (*metrics, *(known[r] for r in _ratio_parts(metrics)))
    )
    traces = _trace_summary(store, spec, quality_figures.units) if span_metrics or options.traces else None
    if span_metrics:
        # How far span metrics can be trusted: spans that reach a unit, directly or through their trace.
        joinability = span_joinability_query(flag.key, environment, flag.assignment_unit, spec.prices)
        (found,) = fetch(store, joinability)
        spans = {"spans": {k: int(v or 0) for k, v in found.items()}}
    drift = (
        drift_section(store, spec, options.drift, control, variations, options.alpha, options.phase)
        if options.drift
        else None
    )
    return {
        **base,
        "data_quality": {
            **base["data_quality"],
            "exposures_before_flag": int(quality["dq_exposures_before_flag"]),
            "units_exposed_before_flag": int(quality["dq_units_before_flag"]),
            **spans,
        },
        **({"traces": traces} if traces is not None else {}),
        **({"drift": drift} if drift is not None else {}),
        "schema": READOUT_SCHEMA,
        "generated_at": (now or datetime.now(UTC)).isoformat(),
        "analysis": "as_served" if options.served else "intent_to_treat",
        "segment": options.segment,
        "phase": options.phase,
        "phases": phase_json,
        "metrics": out_metrics if metrics else base["metrics"],
        "correction": {"method": "holm", "family": list(family)} if metrics else None,
        "srm_overall": _srm_overall(srm_strata),
        "sql": sql_of(store, statement, pretty=True) if metrics else None,
    }


def _metric_entry(
    metric: Metric,
    i: int,
    r: int,
    index: Mapping[str, int],
    by_key: Mapping[tuple[int, str, Any], list[dict[str, Any]]],
    segment: Any,
    estimable: Sequence[int],
    variations: Sequence[str],
    control: str,
    options: ReadoutOptions,
    elapsed_days: float,
) -> dict[str, Any]:
    def strata(variation: str) -> list[ArmSummary | None]:
        return [_summary(metric, i, by_key.get((p, variation, segment), []), index, r) for p in estimable]

    def pooled_rows(variation: str) -> list[dict[str, Any]]:
        return [row for p in estimable for row in by_key.get((p, variation, segment), [])]

    entry: dict[str, Any] = {
        "key": metric.key,
        "type": metric.type,
        "direction": metric.direction,
        "description": metric.description,
        "variations": [],
        "comparisons": [],
    }
    control_strata = strata(control)
    for variation in variations:
        arm_strata = strata(variation)
        summaries = [s for s in arm_strata if s is not None]
        pooled = _summary(metric, i, pooled_rows(variation), index, r)
        entry["variations"].append(
            {
                "variation": variation,
                "units": pooled.n if pooled else sum(s.n for s in summaries),
                "mean": _finite(pooled.mean) if pooled else None,
                "stddev": _finite(math.sqrt(pooled.variance)) if pooled else None,
            }
        )
        if variation == control:
            continue
        pairs = [
            (c, t) for c, t in zip(control_strata, arm_strata, strict=True) if c is not None and t is not None
        ]
        if not pairs:
            continue
        c_sum, t_sum = stratified_summaries(pairs)
        # No plan carries an expected stage size yet, so the fallback applies: the units compared
        # now (docs/statistics.md §5 on what a tuning read from the data costs).
        tuning = options.sequential_tuning or float(c_sum.n + t_sum.n)
        tuning_source = "option" if options.sequential_tuning else "current_units"
        comparison: dict[str, Any] = {
            "variation": variation,
            "vs": control,
            "fixed": _effect_json(welch_test(c_sum, t_sum, alpha=options.alpha)),
            "sequential": {
                **_effect_json(sequential_test(c_sum, t_sum, alpha=options.alpha, tuning=tuning)),
                "tuning": tuning,
                "tuning_source": tuning_source,
            },
            "per_phase": [
                {"phase": p, **_effect_json(welch_test(c, t, alpha=options.alpha))}
                for p, c, t in zip(estimable, control_strata, arm_strata, strict=True)
                if c is not None and t is not None
            ],
        }
        if metric.cuped_days and i >= 0:
            # Stratified like the other effects, per phase and pre-period presence; pooling the
            # phases would credit a time trend in both pre and post to the treatment.
            cuped_strata = [
                stratum
                for p in estimable
                for stratum in zip(
                    _regression(i, by_key.get((p, control, segment), [])),
                    _regression(i, by_key.get((p, variation, segment), [])),
                    strict=True,
                )
            ]
            if any(c.n >= 2 and t.n >= 2 for c, t in cuped_strata):
                c_adj, t_adj = stratified_cuped_summaries(cuped_strata)
                comparison["cuped"] = _effect_json(welch_test(c_adj, t_adj, alpha=options.alpha))
        if options.bayes:
            bayes = bayes_test(c_sum, t_sum, alpha=options.alpha, direction=metric.direction)
            rel = bayes.relative
            comparison["bayes"] = {
                "chance_to_win": _finite(rel.chance_to_win) if rel else None,
                "expected_loss": _finite(rel.risk_treatment) if rel else None,
            }
        if metric.guardrail_margin is not None:
            ni = noninferiority_test(
                c_sum, t_sum, margin=metric.guardrail_margin, direction=metric.direction, alpha=options.alpha
            )
            comparison["guardrail"] = {
                "margin": metric.guardrail_margin,
                "holds": ni.non_inferior,
                "breached": ni.inferior,
                "p_value": _finite(ni.p_value),
                "bound": _finite(ni.bound),
            }
        mde = minimum_detectable_effect(
            n_control=c_sum.n,
            n_treatment=t_sum.n,
            mean=c_sum.unadjusted_mean,
            variance=c_sum.variance,
            alpha=options.alpha,
            direction=metric.direction,
        )
        comparison["mde_relative"] = _finite(mde.relative)
        comparison["power"] = _time_to_decision(
            c_sum, t_sum, comparison["fixed"]["relative"], elapsed_days, options
        )
        entry["comparisons"].append(comparison)
    return entry


def _time_to_decision(
    control: ArmSummary,
    treatment: ArmSummary,
    observed: float | None,
    elapsed_days: float,
    options: ReadoutOptions,
) -> dict[str, Any] | None:
    """Units (and days at the traffic seen so far) until the observed lift would be detected with
    80 % power; None when there is no lift to aim at."""
    if observed is None or observed == 0 or not math.isfinite(observed) or control.unadjusted_mean == 0:
        return None
    current = control.n + treatment.n
    try:
        estimate = sample_size(
            relative_effect=abs(observed),
            mean=control.unadjusted_mean,
            variance=control.variance,
            treatment_share=treatment.n / current,
            alpha=options.alpha,
            current_units=current,
            units_per_day=current / elapsed_days if elapsed_days > 0 else None,
        )
    except ValidationError:
        return None
    return {
        "target_relative": abs(observed),
        "units_needed": estimate.units_needed,
        "units_remaining": estimate.units_remaining,
        "days_remaining": _finite(estimate.days_remaining),
    }


def _quantile_metric(
    store: Store,
    spec: ReadoutSpec,
    metric: Metric,
    counts: Mapping[str, int],
    control: str,
    variations: Sequence[str],
    options: ReadoutOptions,
) -> dict[str, Any]:
    """Event-level quantile per variation, with the unit-clustered variance. `counts` (events per
    variation, from the readout's statement) set the density levels; one more statement takes
    every level's quantile in one sort per variation and the clustered moments."""
    assert metric.quantile is not None
    level = metric.quantile
    bands = {v: density_levels(n, level, alpha=options.alpha) for v, n in counts.items() if n > 0}
    levels = sorted({level, *(x for band in bands.values() for x in band)})
    estimates: dict[str, tuple[int, float, float, float, float, float]] = {}
    clusters = {}
    for row in _rows(store, quantile_query(spec, metric, levels, level)) if bands else []:
        variation = row["variation"]
        at = dict(zip(levels, row["q"], strict=True))
        lo, hi = bands[variation]
        estimates[variation] = (counts[variation], at[level], lo, at[lo], hi, at[hi])
        clusters[variation] = RatioMoments(
            int(row["cluster_n"]),
            *(
                float(row[c])
                for c in ("below_sum", "below_sum_sq", "total_sum", "total_sum_sq", "below_total")
            ),
        )
    summaries: dict[str, ArmSummary] = {}
    entry: dict[str, Any] = {
        "key": metric.key,
        "type": "quantile",
        "quantile": level,
        "direction": metric.direction,
        "description": metric.description,
        "variations": [],
        "comparisons": [],
    }
    for variation in variations:
        if variation not in estimates:
            entry["variations"].append({"variation": variation, "events": 0, "value": None})
            continue
        n, value, lo, lo_v, hi, hi_v = estimates[variation]
        estimate = QuantileEstimate(
            n=n,
            level=level,
            value=value,
            lower_level=lo,
            lower_value=lo_v,
            upper_level=hi,
            upper_value=hi_v,
            at_or_below=clusters.get(variation),
        )
        summaries[variation] = estimate.summary()
        entry["variations"].append({"variation": variation, "events": n, "value": value})
    for variation, summary in summaries.items():
        if variation != control and control in summaries:
            entry["comparisons"].append(
                {
                    "variation": variation,
                    "vs": control,
                    "fixed": _effect_json(welch_test(summaries[control], summary, alpha=options.alpha)),
                }
            )
    return entry
