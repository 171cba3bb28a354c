"""Phases: spans of one environment's release state with constant rollout weights, from the change log.

Effects are estimated within phases and combined with the stratified estimator
(`ramplight.core.stats.stratified`), so a 5 % → 20 % ramp under a time trend is not biased.
"""

from __future__ import annotations

import bisect
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from ramplight.core.audit import FlagChange
from ramplight.core.errors import ValidationError


@dataclass(frozen=True, slots=True)
class Phase:
    """Constant weights and kill state from `start` to `end` (the next phase's start; None: now).

    `enabled` is False while the environment is killed, removed from the flag or the flag is
    archived: such a phase is reported but excluded from effect estimation.
    """

    index: int
    start: datetime
    end: datetime | None
    weights: dict[str, float]
    enabled: bool


_State = tuple[dict[str, float], bool]
"""What an environment serves after a change: rollout weights in percent, and enabled."""

_UNCONFIGURED: _State = ({}, False)


def _state(after: Any, environment: str) -> _State | None:
    """The environment's state in a flag document; None when the document does not configure it."""
    if not isinstance(after, Mapping):
        return None
    environments = after.get("environments")
    env = environments.get(environment) if isinstance(environments, Mapping) else None
    if not isinstance(env, Mapping):
        return None
    rollout = env.get("rollout")
    # No rollout: everyone not matched by a rule gets the default variation.
    raw = rollout["weights"] if isinstance(rollout, Mapping) else {env["default_variation"]: 100.0}
    weights = {str(variation): float(percent) for variation, percent in raw.items()}
    enabled = bool(env.get("enabled", True)) and not bool(after.get("archived", False))
    return weights, enabled


def _traffic(state: _State) -> tuple[frozenset[tuple[str, float]], bool]:
    """What units experience: zero weights serve no one, so adding or dropping them is no change."""
    weights, enabled = state
    return frozenset((v, w) for v, w in weights.items() if w > 0), enabled


def phases_from_changes(changes: Sequence[FlagChange], environment: str) -> list[Phase]:
    """One flag's phases in `environment`, from its changes in log order; contiguous, 0-based.

    A phase begins at the first change whose flag document configures the environment, and at
    every later change that alters its positive weights or whether it serves them. Changes at
    the same instant collapse into one boundary; a change timestamped before its predecessor
    (clock skew) takes the predecessor's time.
    """
    flag_keys = sorted({change.flag_key for change in changes})
    if len(flag_keys) > 1:
        raise ValidationError(f"phases are per flag; got changes of {', '.join(map(repr, flag_keys))}")
    starts: list[tuple[datetime, _State]] = []
    for change in changes:
        if change.action == "plan":
            continue  # a measurement plan's row, not a flag document
        # Every row carries the whole flag: flag-wide rows (environment None) can change this
        # environment too, and rows for other environments simply leave it as it was.
        state = _state(change.after, environment)
        if state is None:
            if not starts:
                continue
            state = _UNCONFIGURED
        if starts and _traffic(starts[-1][1]) == _traffic(state):
            continue
        ts = max(change.ts, starts[-1][0]) if starts else change.ts
        if starts and starts[-1][0] == ts:
            starts.pop()
            if starts and _traffic(starts[-1][1]) == _traffic(state):
                continue
        starts.append((ts, state))
    return [
        Phase(
            index=i,
            start=start,
            end=starts[i + 1][0] if i + 1 < len(starts) else None,
            weights=dict(weights),
            enabled=enabled,
        )
        for i, (start, (weights, enabled)) in enumerate(starts)
    ]


def phase_of(ts: datetime, phases: Sequence[Phase]) -> int | None:
    """Index of the phase containing `ts` (start inclusive, end exclusive); None outside all."""
    position = bisect.bisect_right([phase.start for phase in phases], ts) - 1
    if position < 0:
        return None
    phase = phases[position]
    if phase.end is not None and ts >= phase.end:
        return None
    return phase.index


def phase_bounds(phases: Sequence[Phase]) -> list[tuple[int, datetime, datetime | None]]:
    """`(index, start, end)` rows, ready to bind as parameters or join as a values table in SQL."""
    return [(phase.index, phase.start, phase.end) for phase in phases]
