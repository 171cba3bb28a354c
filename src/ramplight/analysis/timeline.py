"""The release timeline: what happened to the flag (ramps, kills, plan edits, decisions, guardian
actions) beside hourly series per variation, so "latency rose when the ramp went to 20 %" is one
view. Series are sqlglot statements (`analysis.sql`) read on the store's read-only path."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from ramplight.analysis.execute import fetch
from ramplight.analysis.sql import timeline_series_query, timeline_units_query
from ramplight.core.flags import Flag
from ramplight.core.metrics import Metric
from ramplight.store.base import Store


def _iso(value: Any) -> Any:
    return value.isoformat() if isinstance(value, datetime) else value


def _weights(after: Any, environment: str) -> tuple[dict[str, float] | None, bool | None]:
    if not isinstance(after, dict):
        return None, None
    env = (after.get("environments") or {}).get(environment)
    if not isinstance(env, dict):
        return None, None
    rollout = env.get("rollout") or {}
    return rollout.get("weights"), bool(env.get("enabled", True))


def timeline(store: Store, flag: Flag, environment: str, metrics: Sequence[Metric]) -> dict[str, Any]:
    """Release events, oldest first, and hourly units and metric series per variation."""
    events: list[dict[str, Any]] = []
    for change in store.flag_changes(flag.key):
        if change.environment not in (None, environment):
            continue
        weights, enabled = _weights(change.after, environment)
        events.append(
            {
                "ts": change.ts.isoformat(),
                "kind": "change",
                "action": change.action,
                "actor": change.actor,
                "reason": change.reason,
                "version": change.version,
                "weights": weights if change.action != "plan" else None,
                "enabled": enabled if change.action != "plan" else None,
            }
        )
    for decision in store.decisions(flag.key):
        if decision.environment != environment:
            continue
        recommendation = decision.recommendation or {}
        events.append(
            {
                "ts": decision.ts.isoformat(),
                "kind": "decision",
                "action": decision.state,
                "actor": decision.actor,
                "reason": decision.reason,
                "forced": decision.forced,
                "recommended": recommendation.get("sentence"),
                "decision_id": decision.decision_id,
            }
        )
    for gate in store.eval_gates(flag.key, environment):
        scores = gate.result.get("scores", [])
        verdicts = ", ".join(
            f"{s['name']} {'pass' if s['passed'] else 'FAIL'}" for s in scores if s.get("passed") is not None
        )
        events.append(
            {
                "ts": gate.ts.isoformat(),
                "kind": "eval_gate",
                "action": "passed" if gate.passed else "failed",
                "actor": gate.actor,
                "reason": f"{gate.result.get('candidate')} vs {gate.result.get('control')}: {verdicts}",
                "run_id": gate.run_id,
                "gate_id": gate.gate_id,
            }
        )
    events.sort(key=lambda e: (e["ts"], e["kind"] == "decision"))
    statement = timeline_units_query(flag.key, environment)
    units = [{k: _iso(v) for k, v in row.items()} for row in fetch(store, statement)]
    series: dict[str, list[dict[str, Any]]] = {}
    for metric in metrics:
        table, name = _series_source(metric)
        if table is None or name is None:
            continue
        statement = timeline_series_query(flag.key, environment, table, name)
        rows = fetch(store, statement)
        series[metric.key] = [{k: _iso(v) for k, v in row.items()} for row in rows]
    return {"events": events, "units": units, "series": series}


def _series_source(metric: Metric) -> tuple[str | None, str | None]:
    """Where a metric's hourly values come from: the value of events named like it (event and
    quantile metrics on `value`), or eval scores; other metric types have no hourly series yet."""
    if metric.type in ("event", "quantile") and metric.value == "value":
        return "events", metric.event
    if metric.type == "eval":
        return "evals", metric.eval
    return None, None
