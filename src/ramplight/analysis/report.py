"""Readout v1: exposure, fallback and joinability figures, and per-metric effects vs control.

All row-level work happens in one SQL statement per section in the store; Python receives
sufficient statistics (n, sum, sum of squares per variation and metric) only.
Keys of the JSON shape are documented in docs/readout.md.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from ramplight.core.errors import NotFoundError
from ramplight.core.flags import Flag
from ramplight.core.stats import SampleMoments, welch_test
from ramplight.store.base import Store

READOUT_SCHEMA = "ramplight.readout/v1"

_UNITS_SQL = """
WITH per_unit AS (
    SELECT unit_id,
           -- Not count(DISTINCT …): that costs a second group-by of every exposure and a join.
           CASE WHEN min(assigned_variation) = max(assigned_variation) THEN 1 ELSE 2 END AS n_assigned,
           arg_min(assigned_variation, ts) AS variation,
           bool_or(served_variation <> assigned_variation) AS fell_back,
           arg_min(fallback_reason, CASE WHEN fallback_reason IS NULL THEN NULL ELSE ts END)
               AS first_fallback_reason
    FROM exposures
    WHERE environment = $environment AND flag_key = $flag_key
    GROUP BY unit_id
)
SELECT variation,
       count(*) FILTER (WHERE n_assigned = 1) AS units,
       count(*) FILTER (WHERE n_assigned = 1 AND fell_back) AS fallback_units,
       count(*) FILTER (WHERE n_assigned > 1) AS multiple_variation_units
FROM per_unit
GROUP BY variation
ORDER BY variation
"""

_FALLBACK_REASONS_SQL = """
SELECT assigned_variation, fallback_reason, count(DISTINCT unit_id)
FROM exposures
WHERE environment = $environment AND flag_key = $flag_key
  AND served_variation <> assigned_variation
GROUP BY ALL
ORDER BY 1, 2
"""

_JOIN_SQL = """
WITH units AS (
    SELECT unit_id, min(ts) AS first_ts
    FROM exposures
    WHERE environment = $environment AND flag_key = $flag_key
    GROUP BY unit_id
),
candidates AS (
    SELECT e.unit_id, e.ts,
           -- Outcomes that should join: this flag's, or unflagged ones after its first exposure.
           coalesce(e.flag_key = $flag_key, false)
               OR e.ts >= (SELECT min(first_ts) FROM units) AS relevant
    FROM events e
    WHERE e.environment = $environment
      AND (e.flag_key = $flag_key OR (e.flag_key IS NULL AND e.assignment_unit = $assignment_unit))
)
SELECT count(*) FILTER (WHERE c.relevant) AS events,
       count(*) FILTER (WHERE c.relevant AND u.unit_id IS NOT NULL AND c.ts >= u.first_ts) AS joinable,
       -- Not limited to `relevant`: pre-exposure events of exposed units predate the first
       -- exposure by definition, and the earliest units' would all fall outside it.
       count(*) FILTER (WHERE u.unit_id IS NOT NULL AND c.ts < u.first_ts) AS before_exposure
FROM candidates c LEFT JOIN units u USING (unit_id)
"""

_METRICS_SQL = """
WITH per_unit AS (
    SELECT unit_id,
           min(ts) AS first_ts,
           count(DISTINCT assigned_variation) AS n_assigned,
           arg_min(assigned_variation, ts) AS variation
    FROM exposures
    WHERE environment = $environment AND flag_key = $flag_key
    GROUP BY unit_id
),
unit_metric AS (
    SELECT u.variation, e.name, e.unit_id, avg(coalesce(e.value, 1.0)) AS x
    FROM per_unit u
    JOIN events e ON e.unit_id = u.unit_id AND e.ts >= u.first_ts
    WHERE u.n_assigned = 1
      AND e.environment = $environment AND e.assignment_unit = $assignment_unit
      AND (e.flag_key IS NULL OR e.flag_key = $flag_key)
    GROUP BY ALL
)
SELECT name, variation, count(*) AS n, sum(x) AS sum_x, sum(x * x) AS sum_x2
FROM unit_metric
GROUP BY ALL
ORDER BY name, variation
"""


def _finite(value: float) -> float | None:
    return value if math.isfinite(value) else None


def _comparison(treatment: SampleMoments, control: SampleMoments) -> dict[str, float | None]:
    """The stats engine's Welch test, in the v1 readout's flat keys (null when not estimable)."""
    result = welch_test(control.summary(), treatment.summary())
    return {
        "difference": result.absolute.estimate,
        "ci_low": _finite(result.absolute.ci_lower),
        "ci_high": _finite(result.absolute.ci_upper),
        "p_value": _finite(result.absolute.p_value) if math.isfinite(result.absolute.ci_lower) else None,
        "relative": result.relative.estimate if result.relative else None,
    }


def _rows(store: Store, sql: str, params: dict[str, Any]) -> Sequence[tuple[Any, ...]]:
    result: Sequence[tuple[Any, ...]] = store.connection().execute(sql, params).fetchall()
    return result


def readout(
    store: Store, flag: Flag, environment: str, now: datetime | None = None, include_metrics: bool = True
) -> dict[str, Any]:
    """Build the v1 readout of `flag` in `environment` (JSON-ready dict); `include_metrics=False`
    skips the per-event-name metrics (the v2 readout computes defined metrics instead)."""
    if environment not in flag.environments:
        raise NotFoundError(f"flag {flag.key!r} is not configured in environment {environment!r}")
    control = flag.environments[environment].default_variation
    base = {"environment": environment, "flag_key": flag.key}
    unit_rows = _rows(store, _UNITS_SQL, base)
    reasons: dict[str, dict[str, int]] = {}
    for variation, reason, units in _rows(store, _FALLBACK_REASONS_SQL, base):
        reasons.setdefault(variation, {})[reason or "unspecified"] = int(units)
    multiple = sum(int(r[3]) for r in unit_rows)
    by_variation = {r[0]: r for r in unit_rows}
    variations: list[dict[str, Any]] = []
    for key in flag.variation_keys():
        row = by_variation.get(key)
        units = int(row[1]) if row else 0
        fallback = int(row[2]) if row else 0
        variations.append(
            {
                "variation": key,
                "units": units,
                "fallback_units": fallback,
                "fallback_rate": fallback / units if units else None,
                "fallback_reasons": reasons.get(key, {}),
            }
        )
    params = {**base, "assignment_unit": flag.assignment_unit}
    events, joinable, before = _rows(store, _JOIN_SQL, params)[0]
    metrics: dict[str, dict[str, Any]] = {}
    moments: dict[str, dict[str, SampleMoments]] = {}
    for name, variation, n, sum_x, sum_x2 in _rows(store, _METRICS_SQL, params) if include_metrics else []:
        sample = SampleMoments(n=int(n), sum=float(sum_x), sum_sq=float(sum_x2))
        moments.setdefault(name, {})[variation] = sample
        entry = metrics.setdefault(name, {"name": name, "variations": [], "comparisons": []})
        entry["variations"].append(
            {
                "variation": variation,
                "units": sample.n,
                "mean": sample.mean,
                "stddev": math.sqrt(sample.variance) if sample.n > 1 else None,
            }
        )
    for name, entry in metrics.items():
        by_variation_moments = moments[name]
        c = by_variation_moments.get(control)
        for variation, sample in by_variation_moments.items():
            if c is None or variation == control:
                continue
            entry["comparisons"].append({"variation": variation, "vs": control, **_comparison(sample, c)})
    exposed = sum(int(v["units"]) for v in variations)
    return {
        "schema": READOUT_SCHEMA,
        "flag_key": flag.key,
        "flag_version": flag.version,
        "environment": environment,
        "assignment_unit": flag.assignment_unit,
        "control": control,
        "generated_at": (now or datetime.now(UTC)).isoformat(),
        "data_quality": {
            "exposed_units": exposed,
            "multiple_variation_units": multiple,
            "events": int(events),
            "joinable_events": int(joinable),
            "joinable_fraction": int(joinable) / int(events) if events else None,
            "events_before_exposure": int(before),
        },
        "variations": variations,
        "metrics": list(metrics.values()),
    }
