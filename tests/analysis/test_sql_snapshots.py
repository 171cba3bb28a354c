"""Every analysis statement, rendered for each dialect, is exactly the text in its snapshot file
(`tests/analysis/snapshots/<dialect>/<case>.sql`). A change to the SQL shows as a diff here;
that the text runs, and agrees, on each engine is `test_engines_agree.py`'s job.

Regenerate after an intended change, then review the diff:

    RAMPLIGHT_UPDATE_SNAPSHOTS=1 pytest tests/analysis/test_sql_snapshots.py
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlglot
from sqlglot import exp

from ramplight.analysis import sql as q
from ramplight.analysis.drift import drift_query
from ramplight.analysis.sql import DIALECTS, ReadoutSpec, render
from ramplight.core.drift import DriftProperty
from ramplight.core.metrics import Metric

SNAPSHOTS = Path(__file__).parent / "snapshots"
UPDATE = bool(os.environ.get("RAMPLIGHT_UPDATE_SNAPSHOTS"))

T0 = datetime(2026, 11, 1, tzinfo=UTC)
FLAG, ENV, UNIT = "support_assistant_profile", "production", "conversation"

RESOLVED = Metric(key="resolved", type="event", event="resolution", aggregation="binary")
TURNS = Metric(key="turns", type="event", event="turn", aggregation="count", window_hours=1.5)
LATENCY = Metric(key="latency", type="event", event="latency_ms", aggregation="mean", direction="decrease")
LATENCY_CUPED = Metric(
    key="latency", type="event", event="latency_ms", aggregation="mean", direction="decrease", cuped_days=7
)
TOKENS = Metric(key="tokens", type="event", event="turn", aggregation="sum", value="properties.usage.tokens")
COST = Metric(key="cost", type="event", event="cost_usd", aggregation="sum", cuped_days=0.5)
COST_PER_TURN = Metric(key="cost_per_turn", type="ratio", numerator="cost", denominator="turns")
FAITHFULNESS = Metric(key="faithfulness", type="eval", eval="faithfulness", evaluator="llm_judge")
LLM_ERRORS = Metric(
    key="llm_errors", type="span", span_field="error", aggregation="sum", span_name="llm.call"
)
REFUNDS = Metric(
    key="refunds",
    type="sql",
    sql="SELECT unit_id, ts, value FROM tickets WHERE kind = 'refund'",
    aggregation="sum",
)
P95 = Metric(key="latency_p95", type="quantile", event="latency_ms", quantile=0.95, window_hours=24)
INPUT_CHARS = DriftProperty(
    key="input_chars", source="exposures", property="attributes.input_chars", type="numeric"
)
MODEL = DriftProperty(
    key="model", source="spans", property="gen_ai_model", type="categorical", over="phase", max_categories=5
)
KNOWN = {
    m.key: m
    for m in (RESOLVED, TURNS, LATENCY, TOKENS, COST, COST_PER_TURN, FAITHFULNESS, LLM_ERRORS, REFUNDS)
}


def spec(*metrics: Metric, **options: object) -> ReadoutSpec:
    base: dict[str, object] = {
        "flag_key": FLAG,
        "environment": ENV,
        "assignment_unit": UNIT,
        "metrics": metrics,
        "phase_starts": (T0,),
        "variations": ("control", "candidate"),
    }
    return ReadoutSpec(**{**base, **options})  # type: ignore[arg-type]


PHASES = (T0, T0 + timedelta(days=2), T0 + timedelta(days=4, hours=6))
CASES: dict[str, Callable[[], exp.Expr]] = {
    "binomial": lambda: q.readout_query(spec(RESOLVED), KNOWN),
    "count": lambda: q.readout_query(spec(TURNS), KNOWN),
    "mean": lambda: q.readout_query(spec(LATENCY), KNOWN),
    "ratio": lambda: q.readout_query(spec(COST_PER_TURN), KNOWN),
    "cuped": lambda: q.readout_query(spec(LATENCY_CUPED, COST), {**KNOWN, "latency": LATENCY_CUPED}),
    "json_property": lambda: q.readout_query(spec(TOKENS), KNOWN),
    "eval_span_sql": lambda: q.readout_query(spec(FAITHFULNESS, LLM_ERRORS, REFUNDS), KNOWN),
    "quantile_counts": lambda: q.readout_query(spec(LATENCY, quantiles=(P95,)), KNOWN),
    "quantile_values": lambda: q.quantile_query(spec(LATENCY), P95, [0.9, 0.95, 0.99], 0.95),
    "segment": lambda: q.readout_query(spec(LATENCY, segment="plan"), KNOWN),
    "until": lambda: q.readout_query(
        spec(LATENCY, FAITHFULNESS, LLM_ERRORS, REFUNDS, until=T0 + timedelta(days=3)), KNOWN
    ),
    "served": lambda: q.readout_query(spec(LATENCY, served=True), KNOWN),
    "served_assigned_counts": lambda: q.assigned_counts_query(spec(LATENCY, served=True)),
    "phases": lambda: q.readout_query(spec(LATENCY, phase_starts=PHASES), KNOWN),
    "no_phases": lambda: q.readout_query(spec(LATENCY, phase_starts=()), KNOWN),
    "per_unit": lambda: q.per_unit_query(
        spec(LATENCY_CUPED, COST_PER_TURN), {**KNOWN, "latency": LATENCY_CUPED}
    ),
    "fallback_reasons": lambda: q.fallback_reasons_query(FLAG, ENV),
    "v1_event_name_metrics": lambda: q.event_name_metrics_query(FLAG, ENV, UNIT),
    "timeline_units": lambda: q.timeline_units_query(FLAG, ENV),
    "evidence_bounds": lambda: q.evidence_bounds_query(FLAG, ENV, UNIT),
    "attributes_sample": lambda: q.attributes_sample_query(FLAG, ENV),
    "eval_names": lambda: q.eval_names_query(ENV),
    "any_span": lambda: q.any_span_query(ENV),
    "representative_traces": lambda: q.representative_traces_query(spec(LATENCY)),
    "trace_spans": lambda: q.trace_spans_query(ENV, ["t1", "t2"]),
    "timeline_series": lambda: q.timeline_series_query(FLAG, ENV, "evals", "faithfulness"),
    "drift_numeric_by_day": lambda: drift_query(spec(phase_starts=PHASES), INPUT_CHARS, "control"),
    "drift_categorical_by_phase": lambda: drift_query(spec(phase_starts=PHASES), MODEL, "control", 1),
    "critical_path": lambda: q.critical_path_query(spec(LATENCY)),
    "traced_units": lambda: q.traced_units_query(spec(LATENCY)),
    "routes": lambda: q.route_query(replace(spec(LATENCY), prices=(("gpt-5", 1.25, 10.0),))),
    "cancellation_tax": lambda: q.cancellation_query(replace(spec(LATENCY), prices=(("gpt-5", 1.25, 10.0),))),
    "trace_summary": lambda: q.trace_summary_query(
        replace(spec(LATENCY), prices=(("gpt-5", 1.25, 10.0), ("gpt-5-mini", 0.25, 2.0)))
    ),
}


@pytest.mark.parametrize("dialect", DIALECTS)
@pytest.mark.parametrize("case", list(CASES))
def test_the_rendered_sql_is_exactly_its_snapshot(case: str, dialect: str) -> None:
    text = render(CASES[case](), dialect, pretty=True) + ";\n"
    path = SNAPSHOTS / dialect / f"{case}.sql"
    if UPDATE:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    assert path.exists(), f"no snapshot {path}; write it with RAMPLIGHT_UPDATE_SNAPSHOTS=1"
    assert text == path.read_text(), (
        f"{path} differs; regenerate with RAMPLIGHT_UPDATE_SNAPSHOTS=1 if intended"
    )


def test_every_snapshot_file_belongs_to_a_case() -> None:
    files = {f"{p.parent.name}/{p.stem}" for p in SNAPSHOTS.glob("*/*.sql")}
    assert files == {f"{d}/{c}" for d in DIALECTS for c in CASES}


def test_user_values_are_literals_never_identifiers() -> None:
    hostile = "x'); DROP TABLE exposures; --"
    statement = q.readout_query(
        ReadoutSpec(hostile, hostile, hostile, (LATENCY,), (T0,), segment="plan", variations=(hostile,)),
        KNOWN,
    )
    for dialect in DIALECTS:
        parsed = sqlglot.parse(render(statement, dialect), read=dialect)
        assert len(parsed) == 1
        assert hostile in {lit.this for lit in parsed[0].find_all(exp.Literal)}


def test_the_tree_is_built_once_per_spec() -> None:
    assert q.readout_query(spec(LATENCY), KNOWN) is q.readout_query(spec(LATENCY), KNOWN)
