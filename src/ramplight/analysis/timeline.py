"""The release timeline: what happened to the flag (ramps, kills, plan edits, decisions, guardian
actions) beside hourly series per variation, so "latency rose when the ramp went to 20 %" is one
view. Series are read with bound parameters on the store's read-only path."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from ramplight.analysis.execute import fetch
from ramplight.core.flags import Flag
from ramplight.core.metrics import Metric
from ramplight.store.base import Store

_UNITS = """
WITH exposed AS (
    SELECT unit_id, MIN(ts) AS first_ts, MIN(assigned_variation) AS variation,
           COUNT(DISTINCT assigned_variation) AS n_assigned
    FROM exposures WHERE environment = $environment AND flag_key = $flag_key GROUP BY unit_id
)
SELECT date_trunc('hour', first_ts) AS hour, variation, COUNT(*) AS units
FROM exposed WHERE n_assigned = 1 GROUP BY ALL ORDER BY hour, variation
"""

# Per hour of the event, per variation of the unit: how many values and their mean, counting only
# events after the unit's first exposure (as the readout does). `{table}` and `{value}` come from
# the fixed `_SERIES_SOURCES` below, never from input.
_SERIES = """
WITH exposed AS (
    SELECT unit_id, MIN(ts) AS first_ts, MIN(assigned_variation) AS variation,
           COUNT(DISTINCT assigned_variation) AS n_assigned
    FROM exposures WHERE environment = $environment AND flag_key = $flag_key GROUP BY unit_id
)
SELECT date_trunc('hour', e.ts) AS hour, u.variation, COUNT(*) AS n, AVG(e.{value}) AS mean
FROM {table} AS e JOIN exposed AS u ON u.unit_id = e.unit_id AND u.n_assigned = 1
WHERE e.environment = $environment AND e.name = $name AND e.ts >= u.first_ts
GROUP BY ALL ORDER BY hour, u.variation
"""
_SERIES_SOURCES = {"events": "value", "evals": "score"}


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
    events.sort(key=lambda e: (e["ts"], e["kind"] == "decision"))
    params = {"environment": environment, "flag_key": flag.key}
    units = [{k: _iso(v) for k, v in row.items()} for row in fetch(store, _UNITS, params=params)]
    series: dict[str, list[dict[str, Any]]] = {}
    for metric in metrics:
        table, name = _series_source(metric)
        if table is None or name is None:
            continue
        sql = _SERIES.format(table=table, value=_SERIES_SOURCES[table])
        rows = fetch(store, sql, params={**params, "name": name})
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
