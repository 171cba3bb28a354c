"""Readout v1: exposure, fallback and joinability figures, and per-metric effects vs control.

All row-level work happens in SQL in the store; Python receives counts and sufficient statistics
(n, sum, sum of squares per variation and metric) only. The exposure and joinability counts come
from the v2 readout's statement (`analysis.sql.readout_query`), which builds the relations they
need anyway. Keys of the JSON shape are documented in docs/readout.md.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from ramplight.core.errors import NotFoundError
from ramplight.core.flags import Flag
from ramplight.core.stats import SampleMoments, welch_test
from ramplight.store.base import Store

READOUT_SCHEMA = "ramplight.readout/v1"


@dataclass(frozen=True, slots=True)
class DataQuality:
    """Counts over every exposed unit and the outcome events that should join the flag."""

    units: Mapping[str, int]
    """Units exposed to exactly this one assigned variation, per variation of the flag."""
    fallback_units: Mapping[str, int]
    multiple_variation_units: int
    events: int
    joinable_events: int
    events_before_exposure: int


_FALLBACK_REASONS_SQL = """
SELECT assigned_variation, fallback_reason, count(DISTINCT unit_id)
FROM exposures
WHERE environment = $environment AND flag_key = $flag_key
  AND served_variation <> assigned_variation
GROUP BY ALL
ORDER BY 1, 2
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
    store: Store,
    flag: Flag,
    environment: str,
    quality: DataQuality,
    now: datetime | None = None,
    include_metrics: bool = True,
) -> dict[str, Any]:
    """Build the v1 readout of `flag` in `environment` (JSON-ready dict) around `quality`;
    `include_metrics=False` skips the per-event-name metrics (the v2 readout computes defined
    metrics instead)."""
    if environment not in flag.environments:
        raise NotFoundError(f"flag {flag.key!r} is not configured in environment {environment!r}")
    control = flag.environments[environment].default_variation
    base = {"environment": environment, "flag_key": flag.key}
    reasons: dict[str, dict[str, int]] = {}
    for variation, reason, units in _rows(store, _FALLBACK_REASONS_SQL, base):
        reasons.setdefault(variation, {})[reason or "unspecified"] = int(units)
    variations: list[dict[str, Any]] = []
    for key in flag.variation_keys():
        units = quality.units.get(key, 0)
        fallback = quality.fallback_units.get(key, 0)
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
            "multiple_variation_units": quality.multiple_variation_units,
            "events": quality.events,
            "joinable_events": quality.joinable_events,
            "joinable_fraction": quality.joinable_events / quality.events if quality.events else None,
            "events_before_exposure": quality.events_before_exposure,
        },
        "variations": variations,
        "metrics": list(metrics.values()),
    }
