"""The difference over time: when to read a flag's comparison out again (checkpoints), and what of
each readout the chart keeps. Pure functions; `release.difference_series` runs the readouts."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

MAX_CHECKPOINTS = 12


def checkpoint_times(
    first: datetime, last: datetime, steps: Sequence[datetime] = (), max_points: int = MAX_CHECKPOINTS
) -> list[datetime]:
    """Up to `max_points` moments in (first, last], oldest first: every ramp step (phase start)
    inside the range (as many as fit, the latest kept), then evenly spaced moments filling the
    rest, and always `last`. Two moments closer than 1 % of the range count as one (the step wins).
    """
    if max_points < 1:
        raise ValueError("max_points must be at least 1")
    if last <= first:
        return [last]
    span = last - first
    close = span / 100
    inside = sorted({s for s in steps if first < s < last and last - s > close})
    kept = inside[-(max_points - 1) :] if max_points > 1 else []
    chosen = [*kept, last]
    free = max_points - len(chosen)
    # Evenly spaced candidates at a finer grid than needed, skipped where a step already stands.
    for k in range(1, free + 1):
        moment = first + span * k / (free + 1)
        if all(abs(moment - c) > close for c in chosen):
            chosen.append(moment)
    return sorted(chosen)


def _pair(d: Mapping[str, Any] | None, lo: str, hi: str) -> list[float] | None:
    if not d or d.get(lo) is None or d.get(hi) is None:
        return None
    return [float(d[lo]), float(d[hi])]


def comparison_point(
    readout: Mapping[str, Any], metric_key: str, candidate: str | None
) -> dict[str, Any] | None:
    """One metric's candidate-vs-control comparison in `readout` as a point of the series: units
    compared, the relative and absolute differences with their fixed-horizon and always-valid
    intervals, and the minimum detectable effect then. None: no comparison yet."""
    metric = next((m for m in readout.get("metrics", []) if m.get("key") == metric_key), None)
    if metric is None:
        return None
    comparisons = metric.get("comparisons") or []
    comp = next(
        (c for c in comparisons if c.get("variation") == candidate), comparisons[0] if comparisons else None
    )
    if comp is None:
        return None
    fixed, seq = comp.get("fixed") or {}, comp.get("sequential") or {}
    units = sum(
        int(v.get("units") or 0)
        for v in metric.get("variations", [])
        if v.get("variation") in (comp.get("variation"), comp.get("vs"))
    )
    return {
        "units": units,
        "relative": fixed.get("relative"),
        "relative_fixed": _pair(fixed, "relative_ci_low", "relative_ci_high"),
        "relative_sequential": _pair(seq, "relative_ci_low", "relative_ci_high"),
        "difference": fixed.get("difference"),
        "fixed": _pair(fixed, "ci_low", "ci_high"),
        "sequential": _pair(seq, "ci_low", "ci_high"),
        "mde_relative": comp.get("mde_relative"),
    }


def after(moment: datetime) -> datetime:
    """A cutoff that includes evidence stamped at `moment` (the cutoff is exclusive)."""
    return moment + timedelta(microseconds=1)
