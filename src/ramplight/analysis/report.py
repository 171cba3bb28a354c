"""Readout v1: exposure, fallback and joinability figures, and per-metric effects vs control.

All row-level work happens in SQL in the store; Python receives counts and sufficient statistics
(n, sum, sum of squares per variation and metric) only. The exposure and joinability counts come
from the v2 readout's statement (`analysis.sql.readout_query`), which builds the relations they
need anyway. Keys of the JSON shape are documented in docs/readout.md.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from ramplight.analysis.execute import fetch
from ramplight.analysis.sql import event_name_metrics_query, fallback_reasons_query
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
    rule_assigned_units: int
    """Units a targeting rule assigned (not randomized): left out of the comparison."""
    events: int
    joinable_events: int
    events_before_exposure: int


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
    reasons: dict[str, dict[str, int]] = {}
    for row in fetch(store, fallback_reasons_query(flag.key, environment)):
        reasons.setdefault(row["assigned_variation"], {})[row["fallback_reason"] or "unspecified"] = int(
            row["units"]
        )
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
    metrics: dict[str, dict[str, Any]] = {}
    moments: dict[str, dict[str, SampleMoments]] = {}
    statement = event_name_metrics_query(flag.key, environment, flag.assignment_unit)
    for row in fetch(store, statement) if include_metrics else []:
        name, variation = row["name"], row["variation"]
        sample = SampleMoments(n=int(row["n"]), sum=float(row["sum_x"]), sum_sq=float(row["sum_x2"]))
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
            "rule_assigned_units": quality.rule_assigned_units,
            "events": quality.events,
            "joinable_events": quality.joinable_events,
            "joinable_fraction": quality.joinable_events / quality.events if quality.events else None,
            "events_before_exposure": quality.events_before_exposure,
        },
        "variations": variations,
        "metrics": list(metrics.values()),
    }
