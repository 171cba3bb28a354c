"""What the flags page says about one flag in one environment, from state already computed: its
release status (from the flag and its decisions) and a data-quality mark (from its readout).
Pure: no store, no SQL."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from ramplight.core.audit import Decision
from ramplight.core.flags import Flag

Status = Literal["killed", "paused", "stale", "rolled back", "promoted", "ramping", "fully on", "not started"]
STATUSES: tuple[Status, ...] = (
    "ramping", "paused", "rolled back", "promoted", "stale", "killed", "fully on", "not started",
)  # fmt: skip
Mark = Literal["ok", "warn", "fail", "none"]

FALLBACK_WARN = 0.05
"""A variation served its fallback to more than this share of its units: worth a look."""
JOINABLE_WARN = 0.95
"""Fewer of the events than this share join an exposed unit: outcomes are being lost."""


def release_status(
    flag: Flag, environment: str, candidate: str | None, decisions: Sequence[Decision], stale: bool
) -> Status:
    """Killed and paused first (they act now), then stale (cleanup is due), then what the last
    acting decision did, then the ramp itself."""
    env = flag.environments[environment]
    if not env.enabled:
        return "killed"
    if env.paused:
        return "paused"
    if stale:
        return "stale"
    weights = env.rollout.weights if env.rollout else {env.default_variation: 100.0}
    share = weights.get(candidate, 0.0) if candidate else 0.0
    acted = [d for d in decisions if d.environment == environment and d.state not in ("continue", "pause")]
    last = acted[-1].state if acted else None
    if last == "rollback" and share == 0:
        return "rolled back"
    if last == "promote":
        return "promoted"
    if 0 < share < 100:
        return "ramping"
    return "fully on" if share >= 100 else "not started"


@dataclass(frozen=True, slots=True)
class QualityMark:
    mark: Mark
    note: str
    """One line: the first problem found, or what was checked."""


def quality_mark(readout: Mapping[str, Any]) -> QualityMark:
    """Sample ratio first (a mismatch makes every figure suspect), then units seen in two
    variations, events that join no exposure, and fallbacks."""
    quality = readout.get("data_quality") or {}
    if not quality.get("exposed_units"):
        return QualityMark("none", "no exposures yet")
    for phase in readout.get("phases") or []:
        srm = phase.get("srm") or {}
        if srm.get("mismatch"):
            return QualityMark(
                "fail", f"sample ratio mismatch in phase {phase.get('phase')} (p = {srm.get('p_value'):.2g})"
            )
    overall = readout.get("srm_overall") or {}
    if overall.get("mismatch"):
        return QualityMark("fail", f"sample ratio mismatch (p = {overall.get('p_value'):.2g})")
    problems = []
    if quality.get("multiple_variation_units"):
        problems.append(f"{quality['multiple_variation_units']:,} units saw two variations")
    joinable = quality.get("joinable_fraction")
    if quality.get("events") and joinable is not None and joinable < JOINABLE_WARN:
        problems.append(f"only {joinable:.0%} of events join an exposure")
    for variation in readout.get("variations") or []:
        rate = variation.get("fallback_rate")
        if rate is not None and rate > FALLBACK_WARN:
            problems.append(f"{variation['variation']} fell back for {rate:.1%} of its units")
    # Not a problem (rules place people on purpose), but the reader should know who is compared.
    ruled = quality.get("rule_assigned_units") or 0
    aside = f"; {ruled:,} units a targeting rule assigned are not compared" if ruled else ""
    if problems:
        return QualityMark("warn", "; ".join(problems) + aside)
    return QualityMark("ok", f"sample ratio as planned; {quality['exposed_units']:,} units{aside}")
