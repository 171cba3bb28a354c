"""What the release room's metric table and timeline show, built from a cached judgement (the
readout, its recommendation and the release timeline): plain data and SVG, no I/O."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from statistics import NormalDist
from typing import Any

from markupsafe import Markup

from ramplight.server import charts

GUARD_VERDICTS = {"breached": "detected", "safe": "ruled_out"}
MAX_SERIES_CHARTS = 3


@dataclass(frozen=True, slots=True)
class MetricRow:
    key: str
    kind: str  # primary, guardrail or secondary
    means: list[tuple[str, float | None, int]]  # (variation, mean, units)
    variation: str | None  # the compared variation
    vs: str | None
    difference: float | None
    fixed: tuple[float, float] | None
    sequential: tuple[float, float] | None
    relative: tuple[float | None, tuple[float, float] | None, tuple[float, float] | None]
    margin: str | None
    verdict: str  # ruled_out, detected, inconclusive
    verdict_text: str
    plot: Markup
    margin_at: float | None = None
    """The margin as a signed value on the plot's axis: where harm begins."""
    unit: str = "%"
    """"%": the plot and the margin are relative differences; "": in the metric's units."""


@dataclass(frozen=True, slots=True)
class TimelineEntry:
    ts: datetime
    kind: str
    what: str
    who: str
    reason: str


def _pair(d: dict[str, Any] | None, lo: str, hi: str) -> tuple[float, float] | None:
    if not d or d.get(lo) is None or d.get(hi) is None:
        return None
    a, b = float(d[lo]), float(d[hi])
    return (a, b) if math.isfinite(a) and math.isfinite(b) else None


def percent_text(value: float, signed: bool = False, digits: int = 3) -> str:
    """A share as a percentage with `digits` significant digits and never an exponent: 0.05 →
    "5 %", 1.0 → "100 %", 12.5 → "1,250 %", 0.000123 → "0.0123 %" (a no-break space before %)."""
    x = value * 100
    sign = "+" if signed and x > 0 else ""
    if not math.isfinite(x):
        return f"{sign}{x}\u00a0%"
    if x == 0 or abs(x) >= 10 ** (digits - 1):
        text = f"{x:,.0f}"
    else:
        decimals = digits - 1 - math.floor(math.log10(abs(x)))
        text = f"{x:,.{decimals}f}".rstrip("0").rstrip(".")
    return f"{sign}{text}\u00a0%"


def _pct(value: float) -> str:
    return percent_text(value)


def metric_rows(
    readout: dict[str, Any], recommendation: dict[str, Any] | None, candidate: str | None
) -> list[MetricRow]:
    """One row per metric of the readout: the candidate's comparison (the first otherwise)."""
    rec = recommendation or {}
    guards = {g["metric"]: g for g in rec.get("guardrails", [])}
    goals = {g["metric"] for g in rec.get("goals", [])}
    rows = []
    for metric in readout.get("metrics", []):
        key = metric.get("key") or metric["name"]  # v1 readouts (no metric defined) name them
        comparisons = metric.get("comparisons") or []
        comp = next(
            (c for c in comparisons if c.get("variation") == candidate), comparisons[0] if comparisons else {}
        )
        fixed_d, seq_d = comp.get("fixed"), comp.get("sequential")
        guard = guards.get(key)
        kind = "guardrail" if guard else "primary" if key in goals else "secondary"
        relative = guard is None or guard.get("margin_type", "relative") == "relative"
        lo, hi = ("relative_ci_low", "relative_ci_high") if relative else ("ci_low", "ci_high")
        point_key = "relative" if relative else "difference"
        point = (fixed_d or seq_d or {}).get(point_key)
        margin_at: float | None = None
        margin_text = None
        if guard is not None:
            sign = -1.0 if metric.get("direction") == "increase" else 1.0
            harm = guard.get("harm")
            if harm is not None and point is not None and point != 0:
                sign = 1.0 if math.isclose(harm, point, rel_tol=1e-6) else -1.0
            margin_at = sign * float(guard["margin"])
            margin_text = (_pct(guard["margin"]) if relative else f"{guard['margin']:g}") + (
                " (harm above)" if sign > 0 else " (harm below)"
            )
        status = (guard or {}).get("status")
        verdict = GUARD_VERDICTS.get(status or "", "inconclusive") if guard else "none"
        verdict_text = {
            "breached": "harm detected: beyond the margin",
            "safe": "harm ruled out: within the margin",
            "no_harm_found": "inconclusive: no harm found at adequate power",
            "unproven": "inconclusive: not yet shown within the margin",
            "no_data": "inconclusive: no data yet",
        }.get(status or "", "inconclusive" if guard else "no guardrail")
        fixed_r, seq_r = _pair(fixed_d, lo, hi), _pair(seq_d, lo, hi)
        plot = charts.interval_plot(
            key,
            estimate=float(point) if point is not None else None,
            fixed=fixed_r,
            sequential=seq_r,
            margin=margin_at,
            unit="%" if relative else "",
            verdict=verdict,
        )
        rows.append(
            MetricRow(
                key=key,
                kind=kind,
                means=[
                    (v["variation"], v.get("mean"), v.get("units", 0))
                    for v in metric.get("variations", [])
                    if v.get("units")
                ],
                variation=comp.get("variation"),
                vs=comp.get("vs"),
                difference=(fixed_d or {}).get("difference"),
                fixed=_pair(fixed_d, "ci_low", "ci_high"),
                sequential=_pair(seq_d, "ci_low", "ci_high"),
                relative=(
                    (fixed_d or {}).get("relative"),
                    _pair(fixed_d, "relative_ci_low", "relative_ci_high"),
                    _pair(seq_d, "relative_ci_low", "relative_ci_high"),
                ),
                margin=margin_text,
                verdict=verdict,
                verdict_text=verdict_text,
                plot=plot,
                margin_at=margin_at,
                unit="%" if relative else "",
            )
        )
    return rows


def _ts(value: str) -> datetime:
    moment = datetime.fromisoformat(value)
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _describe(event: dict[str, Any]) -> tuple[str, str]:
    """(marker kind, what happened in words)."""
    kind, action = event.get("kind"), event.get("action")
    if kind == "change":
        weights = event.get("weights")
        ramp = " · ".join(f"{k} {v:g} %" for k, v in (weights or {}).items() if v)
        if action == "kill":
            return "kill", "killed"
        what = f"{action}: {ramp}" if ramp and action != "plan" else str(action)
        if action == "plan":
            what = "plan edited"
        return "change", what
    if kind == "decision":
        forced = " (forced)" if event.get("forced") else ""
        marker = "guardian" if str(event.get("actor", "")).startswith("guardian") else "decision"
        return marker, f"decision: {action}{forced}"
    if kind == "eval_gate":
        return "eval_gate", f"eval gate {action}"
    return str(kind), str(action)


def timeline_view(timeline: dict[str, Any] | None) -> dict[str, Any]:
    """The timeline chart, its events as a list (newest first), and up to three series charts."""
    if not timeline:
        return {"entries": [], "chart": None, "series": []}
    entries = []
    for event in timeline.get("events", []):
        marker, what = _describe(event)
        reason = event.get("reason") or event.get("recommended") or ""
        entries.append(
            TimelineEntry(_ts(event["ts"]), marker, what, str(event.get("actor") or ""), str(reason))
        )
    points: dict[str, dict[str, list[tuple[datetime, float]]]] = {}
    for metric, rows in (timeline.get("series") or {}).items():
        per: dict[str, list[tuple[datetime, float]]] = {}
        for row in rows:
            if row.get("mean") is not None:
                per.setdefault(str(row["variation"]), []).append((_ts(row["hour"]), float(row["mean"])))
        if per:
            points[metric] = per
        if len(points) == MAX_SERIES_CHARTS:
            break
    moments = [e.ts for e in entries] + [t for per in points.values() for pts in per.values() for t, _ in pts]
    if not moments:
        return {"entries": [], "chart": None, "series": []}
    start, end = charts.time_range(moments)
    events = [charts.Event(e.ts, e.kind, f"{e.ts:%Y-%m-%d %H:%M} UTC: {e.what} by {e.who}") for e in entries]
    return {
        "entries": entries[::-1],
        "chart": charts.timeline_chart(events, start, end) if events else None,
        "series": [
            (metric, charts.series_chart(metric, per, start, end, events)) for metric, per in points.items()
        ],
    }


@dataclass(frozen=True, slots=True)
class DifferencePoint:
    ts: datetime
    units: int
    estimate: float | None
    fixed: tuple[float, float] | None
    sequential: tuple[float, float] | None


@dataclass(frozen=True, slots=True)
class DifferenceView:
    """One goal or guardrail over time: the chart, the same figures as rows, and the smallest
    harm the current stage could detect."""

    key: str
    kind: str
    unit: str
    chart: Markup
    points: list[DifferencePoint]
    detectable: str


def _tuple(pair: list[float] | None) -> tuple[float, float] | None:
    if not pair or not all(math.isfinite(v) for v in pair):
        return None
    return (pair[0], pair[1])


def _detectable(
    row: MetricRow, guard: dict[str, Any] | None, latest: dict[str, Any] | None, alpha: float
) -> str:
    """The smallest harm the stage could detect now: the decision engine's figure for a guardrail
    (the readout's minimum detectable effect in the margin's units), else the readout's MDE."""
    if guard is not None:
        mde = guard.get("smallest_detectable_harm")
    else:
        mde = abs(latest["mde_relative"]) if latest and latest.get("mde_relative") is not None else None
    if mde is None or not math.isfinite(mde):
        return "The smallest detectable harm is not known yet (too few units to compare)."
    size = _pct(mde) if row.unit == "%" else f"{mde:.4g}"
    units = f"the {latest['units']:,}" if latest else "the"
    text = (
        f"Smallest {'harm' if guard is not None else 'effect'} this stage could detect now: {size} "
        f"(80\u00a0% power, two-sided α = {alpha:g}, fixed-horizon, at {units} units compared)"
    )
    if guard is not None and guard.get("margin") is not None:
        margin = float(guard["margin"])
        margin_text = _pct(margin) if row.unit == "%" else f"{margin:g}"
        text += (
            f"; the margin is {margin_text}: "
            + ("a harm the size of the margin would likely be seen." if mde <= margin else
               "a harm the size of the margin could still go unseen.")
        )  # fmt: skip
    else:
        text += "."
    return text


def difference_views(
    series: dict[str, Any] | None,
    rows: list[MetricRow],
    recommendation: dict[str, Any] | None,
    events: list[TimelineEntry],
    alpha: float,
) -> list[DifferenceView]:
    """A chart per goal and guardrail of `series` (`release.difference_series`) with the
    release's events as markers on the same time axis."""
    if not series or not series.get("checkpoints"):
        return []
    guards = {g["metric"]: g for g in (recommendation or {}).get("guardrails", [])}
    by_key = {r.key: r for r in rows}
    marks = [charts.Event(e.ts, e.kind, f"{e.ts:%Y-%m-%d %H:%M:%S} UTC: {e.what} by {e.who}") for e in events]
    moments = [_ts(c["ts"]) for c in series["checkpoints"]] + [_ts(series["first"])]
    moments += [e.ts for e in events]
    start, end = min(moments), max(moments)
    pad = max((end - start) * 0.02, timedelta(seconds=1))  # the first and last points stay inside
    start, end = start - pad, end + pad
    views = []
    for key, raw in series.get("metrics", {}).items():
        row = by_key.get(key)
        if row is None or row.kind not in ("guardrail", "primary"):
            continue
        relative = row.unit == "%"
        points = [
            DifferencePoint(
                _ts(p["ts"]),
                int(p["units"]),
                p["relative"] if relative else p["difference"],
                _tuple(p["relative_fixed"] if relative else p["fixed"]),
                _tuple(p["relative_sequential"] if relative else p["sequential"]),
            )
            for p in raw
        ]
        chart = charts.difference_chart(
            key,
            [charts.DiffPoint(p.ts, p.estimate, p.fixed, p.sequential, p.units) for p in points],
            start,
            end,
            margin=row.margin_at,
            events=marks,
            unit=row.unit,
        )
        views.append(
            DifferenceView(
                key,
                row.kind,
                row.unit,
                chart,
                points,
                _detectable(row, guards.get(key), raw[-1] if raw else None, alpha),
            )
        )
    return views


MAX_SEGMENT_ROWS = 20


@dataclass(frozen=True, slots=True)
class SegmentRow:
    value: str
    units: int
    estimate: float | None
    fixed: tuple[float, float] | None
    sequential: tuple[float, float] | None
    p_holm: float | None
    plot: Markup


@dataclass(frozen=True, slots=True)
class SegmentView:
    """One goal or guardrail split by a targeting attribute: a row per value (most units first)."""

    key: str
    kind: str
    unit: str
    rows: list[SegmentRow]
    hidden: int
    """Values left out (beyond the first MAX_SEGMENT_ROWS by units)."""


def segment_views(
    readout: dict[str, Any] | None, metric_rows_: list[MetricRow], candidate: str | None
) -> list[SegmentView]:
    """Per goal and guardrail of the page's metric table, the candidate's difference in each
    segment of a segmented readout (`release.segment_review`), in the table's units (relative
    when its margin is), each with an interval plot on one scale shared by the metric's segments."""
    if not readout:
        return []
    by_key = {r.key: r for r in metric_rows_ if r.kind in ("guardrail", "primary")}
    entries: dict[str, list[dict[str, Any]]] = {}
    for entry in readout.get("metrics", []):
        if entry.get("key") in by_key:
            entries.setdefault(entry["key"], []).append(entry)
    views = []
    for key, row in by_key.items():
        relative = row.unit == "%"
        lo, hi = ("relative_ci_low", "relative_ci_high") if relative else ("ci_low", "ci_high")
        found = []
        for entry in entries.get(key, []):
            comparisons = entry.get("comparisons") or []
            comp = next((c for c in comparisons if c.get("variation") == candidate), None)
            fixed_d, seq_d = (comp or {}).get("fixed") or {}, (comp or {}).get("sequential") or {}
            compared = {candidate, (comp or {}).get("vs")}
            units = sum(
                int(v.get("units") or 0) for v in entry.get("variations", []) if v["variation"] in compared
            )
            value = entry.get("segment")
            found.append(
                (
                    "(not set)" if value is None else str(value),
                    units,
                    fixed_d.get("relative" if relative else "difference"),
                    _pair(fixed_d, lo, hi),
                    _pair(seq_d, lo, hi),
                    fixed_d.get("p_value_holm"),
                )
            )
        found.sort(key=lambda f: -f[1])
        shown = found[:MAX_SEGMENT_ROWS]
        bounds = [v for f in shown for pair in (f[3], f[4]) if pair for v in pair]
        domain = (min(bounds), max(bounds)) if bounds else None
        rows = [
            SegmentRow(
                value,
                units,
                estimate,
                fixed,
                seq,
                p_holm,
                charts.interval_plot(
                    f"{key} where {value}",
                    estimate=estimate,
                    fixed=fixed,
                    sequential=seq,
                    margin=row.margin_at,
                    unit=row.unit,
                    verdict="exploratory",
                    width=300,
                    domain=domain,
                ),
            )
            for value, units, estimate, fixed, seq, p_holm in shown
        ]
        views.append(SegmentView(key, row.kind, row.unit, rows, len(found) - len(shown)))
    return views


@dataclass(frozen=True, slots=True)
class EvalVariation:
    variation: str
    units: int
    mean: float | None
    interval: tuple[float, float] | None
    """The mean's normal (z) interval at the plan's alpha."""


@dataclass(frozen=True, slots=True)
class EvalView:
    key: str
    description: str
    variations: list[EvalVariation]
    relative: float | None
    relative_interval: tuple[float, float] | None
    """The candidate vs the control, fixed-horizon (the readout's comparison)."""


@dataclass(frozen=True, slots=True)
class TraceRow:
    variation: str
    units: int
    traced_units: int
    traces: int
    p50_ms: float | None
    p95_ms: float | None
    input_tokens: int
    output_tokens: int
    cost_usd: float | None
    cost_per_trace: float | None
    unpriced_spans: int
    cancelled_share: float | None
    cancelled_cost_share: float | None
    critical_path: list[tuple[str, float | None]]
    """Span names most often on the critical path, with the share of traces."""


@dataclass(frozen=True, slots=True)
class WaterfallView:
    variation: str
    trace_id: str
    duration_ms: float
    rank: int
    roots: int
    chart: Markup
    spans: list[Any]
    truncated: bool = False
    """Only the first `release.WATERFALL_SPANS` spans (by start) are drawn."""


def evidence_views(found: dict[str, Any] | None, candidate: str | None) -> dict[str, Any]:
    """The eval scores, trace summary and waterfalls per variation (`release.evals_and_traces`)."""
    if not found:
        return {"evals": [], "traces": [], "waterfalls": []}
    z = NormalDist().inv_cdf(1 - float(found.get("alpha", 0.05)) / 2)
    evals = []
    for metric in found.get("evals", []):
        variations = []
        for v in metric.get("variations", []):
            units, mean, sd = int(v.get("units") or 0), v.get("mean"), v.get("stddev")
            if not units:
                continue
            half = z * sd / math.sqrt(units) if sd is not None and units > 1 else None
            interval = (mean - half, mean + half) if mean is not None and half is not None else None
            variations.append(EvalVariation(v["variation"], units, mean, interval))
        if not variations:
            continue  # scores of the environment none of which joins this flag's units
        comparisons = metric.get("comparisons") or []
        comp = next((c for c in comparisons if c.get("variation") == candidate), None)
        fixed = (comp or {}).get("fixed") or {}
        evals.append(
            EvalView(
                metric["key"],
                metric.get("description") or "",
                variations,
                fixed.get("relative"),
                _pair(fixed, "relative_ci_low", "relative_ci_high"),
            )
        )
    traces = []
    for variation, t in (found.get("traces") or {}).items():
        root: dict[str, Any] = next((s for s in t.get("spans", []) if s.get("root")), {})
        cancel = t.get("cancellation") or {}
        traces.append(
            TraceRow(
                variation=variation,
                units=int(t.get("units") or 0),
                traced_units=int(t.get("traced_units") or 0),
                traces=int(t.get("traces") or 0),
                p50_ms=root.get("latency_p50_ms"),
                p95_ms=root.get("latency_p95_ms"),
                input_tokens=sum(int(s.get("input_tokens") or 0) for s in t.get("spans", [])),
                output_tokens=sum(int(s.get("output_tokens") or 0) for s in t.get("spans", [])),
                cost_usd=t.get("cost_usd"),
                cost_per_trace=t.get("cost_per_trace"),
                unpriced_spans=int(t.get("spans_without_cost") or 0),
                cancelled_share=cancel.get("cancelled_share"),
                cancelled_cost_share=cancel.get("cost_share"),
                critical_path=[
                    (c["name"], c.get("share"))
                    for c in sorted(t.get("critical_path", []), key=lambda c: -(c.get("share") or 0))[:4]
                ],
            )
        )
    waterfalls = []
    for variation, w in (found.get("waterfalls") or {}).items():
        spans = w.get("spans") or []
        bars = [
            charts.Bar(s.name, s.depth, s.start_ms, s.end_ms, s.on_critical_path, s.status == "error")
            for s in spans
        ]
        title = f"{variation}: trace {w['trace_id']} ({w['duration_ms']:,.0f} ms, slower than {w['rank'] - 1:,} of {w['roots']:,} traces)"
        waterfalls.append(
            WaterfallView(
                variation,
                str(w["trace_id"]),
                float(w["duration_ms"]),
                int(w["rank"]),
                int(w["roots"]),
                charts.waterfall_chart(title, bars),
                spans,
                bool(w.get("truncated")),
            )
        )
    return {"evals": evals, "traces": traces, "waterfalls": waterfalls}
