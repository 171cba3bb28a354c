"""One generated dataset for the cross-engine tests: three phases, fallbacks, a unit under two
variations, exposures before the flag served, pre-period events for CUPED, evals and spans."""

from __future__ import annotations

from datetime import timedelta

import numpy as np

from ramplight import control
from ramplight.store.duckdb import DuckDBStore
from tests.analysis.conftest import T0, Evidence, make_flag, save_metrics

METRICS = (
    {"key": "resolved", "type": "event", "event": "resolution", "aggregation": "binary"},
    {"key": "turns", "type": "event", "event": "turn", "aggregation": "count", "window_hours": 1.5},
    {
        "key": "latency",
        "type": "event",
        "event": "latency_ms",
        "aggregation": "mean",
        "direction": "decrease",
        "cuped_days": 7,
    },
    {
        "key": "tokens",
        "type": "event",
        "event": "turn",
        "aggregation": "sum",
        "value": "properties.usage.tokens",
        "cuped_days": 3,
    },
    {"key": "cost", "type": "event", "event": "cost_usd", "aggregation": "sum"},
    {"key": "cost_per_turn", "type": "ratio", "numerator": "cost", "denominator": "turns"},
    {"key": "peak_latency", "type": "event", "event": "latency_ms", "aggregation": "max"},
    {"key": "faithfulness", "type": "eval", "eval": "faithfulness", "evaluator": "llm_judge"},
    {"key": "llm_ms", "type": "span", "span_field": "duration_ms", "aggregation": "mean"},
    {"key": "llm_errors", "type": "span", "span_field": "error", "aggregation": "sum"},
    {
        "key": "refunds",
        "type": "sql",
        "sql": "SELECT unit_id, ts, value FROM events WHERE name = 'refund'",
        "aggregation": "sum",
    },
    {"key": "latency_p90", "type": "quantile", "event": "latency_ms", "quantile": 0.9},
    {
        "key": "llm_p95",
        "type": "quantile",
        "span_field": "duration_ms",
        "span_name": "llm.call",
        "quantile": 0.95,
    },
    {
        "key": "unbacked_refunds",
        "type": "claim",
        "event": "refund_issued",
        "span_name": "execute_tool refund",
    },
)
UNITS = 400
PLANS = ("free", "pro", "team")


def generate(store: DuckDBStore, seed: int = 7) -> None:
    """The flag (50 % → 30 % → 60 % candidate over three phases), its metrics, and evidence."""
    make_flag(store, candidate=50, at=T0)
    control.ramp(
        store,
        "support_assistant_profile",
        "production",
        "candidate",
        30,
        "test",
        clock=lambda: T0 + timedelta(days=2),
    )
    control.ramp(
        store,
        "support_assistant_profile",
        "production",
        "candidate",
        60,
        "test",
        clock=lambda: T0 + timedelta(days=4),
    )
    save_metrics(store, *METRICS)
    rng = np.random.default_rng(seed)
    ev = Evidence()
    for i in range(UNITS):
        unit = f"u{i:04d}"
        # Distinct times per unit (whole microseconds): first-by-time never ties.
        start = T0 + timedelta(minutes=17 * i - 60, microseconds=i)
        candidate = rng.random() < (0.5, 0.3, 0.6)[min(max(int((17 * i - 60) // 2880), 0), 2)]
        variation = "candidate" if candidate else "control"
        served = "control" if candidate and rng.random() < 0.1 else None
        ev.expose(unit, variation, start, served, plan=PLANS[i % 3], tier=i % 5)
        ev.expose(unit, variation, start + timedelta(minutes=3))
        if i % 97 == 5:
            other = "control" if candidate else "candidate"
            ev.expose(unit, other, start + timedelta(minutes=9))  # two variations: left out
        lift = 0.9 if candidate else 1.0
        for k in range(int(rng.integers(0, 5))):
            at = start + timedelta(minutes=20 * k + 1, seconds=int(rng.integers(0, 50)))
            ev.event(unit, "turn", at, None, usage={"tokens": int(rng.integers(50, 400))})
            ev.event(unit, "latency_ms", at + timedelta(seconds=1), float(rng.lognormal(7, 0.4)) * lift)
        for _ in range(int(rng.integers(0, 4))):  # pre-period: the CUPED covariate
            at = start - timedelta(hours=float(rng.uniform(1, 200)))
            ev.event(unit, "latency_ms", at, float(rng.lognormal(7, 0.4)))
            ev.event(unit, "turn", at, None, usage={"tokens": int(rng.integers(50, 400))})
        ev.event(unit, "cost_usd", start + timedelta(seconds=40), round(float(rng.uniform(0, 0.05)), 6))
        if rng.random() < 0.6 + (0.05 if candidate else 0):
            ev.event(unit, "resolution", start + timedelta(minutes=30))
        if i % 11 == 0:
            ev.event(unit, "refund", start + timedelta(hours=2), 5.0 + i % 7)
        ev.score(unit, "faithfulness", start + timedelta(minutes=2), round(float(rng.uniform(0.3, 1)), 4))
        if i % 4:
            ev.score(unit, "faithfulness", start + timedelta(minutes=2), 0.1, evaluator="human")
        ev.span(
            unit,
            start + timedelta(seconds=5),
            float(rng.integers(100, 900)),
            "error" if i % 13 == 0 else "ok",
        )
        ev.spans[-1]["gen_ai_model"] = ("gpt-5-mini", "gpt-5", "claude-sonnet-5")[i % 3]  # the route taken
        if i % 7 in (3, 4):
            # A conversation the user stopped: the root ends (cancelled) before its generation does,
            # which names no unit; a judge scores the generation by its response id (i % 7 == 3) or
            # by its trace and span id (i % 7 == 4), naming no unit either.
            trace, at = f"c{i}", start + timedelta(minutes=1)
            stop = float(rng.integers(200, 2000))
            ev.span(
                unit, at, stop, "error", "conversation", trace_id=trace, span_id=f"{trace}r", cancelled=True
            )
            ev.span(
                None, at + timedelta(milliseconds=50), stop + float(rng.integers(-100, 3000)), "ok", "chat",
                trace_id=trace, span_id=f"{trace}g", parent_span_id=f"{trace}r", response_id=f"resp-{i}",
                gen_ai_model="gpt-5", input_tokens=int(rng.integers(100, 900)),
                output_tokens=int(rng.integers(10, 1500)),
            )  # fmt: skip
            joined_by = (
                {"response_id": f"resp-{i}"} if i % 7 == 3 else {"trace_id": trace, "span_id": f"{trace}g"}
            )
            ev.score(
                None,
                "faithfulness",
                at + timedelta(seconds=9),
                round(float(rng.uniform(0, 1)), 4),
                **joined_by,
            )
        if i % 7 == 3:  # the refund the assistant claims was made by a tool call in its trace
            ev.span(
                None,
                start + timedelta(minutes=1, seconds=3),
                80.0,
                name="execute_tool refund",
                trace_id=f"c{i}",
            )
        if i % 7 in (3, 4, 5):  # claimed with the trace (3: backed; 4, 5: no such tool call)
            ev.event(unit, "refund_issued", start + timedelta(minutes=2))
            ev.events[-1]["trace_id"] = f"c{i}"
        if i % 7 == 6:  # claimed without a trace: cannot be checked, left out
            ev.event(unit, "refund_issued", start + timedelta(minutes=2))
    ev.event("stranger", "turn", T0 + timedelta(days=1), None)  # joins no exposure
    ev.load(store)
