"""What a readout reads: its options (kept apart from the readout itself, so that the CLI can state
them for a server without importing the statistics)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from ramplight.core.drift import DriftProperty


@dataclass(frozen=True, slots=True)
class ReadoutOptions:
    segment: str | None = None
    phase: int | None = None
    served: bool = False
    bayes: bool = False
    alpha: float = 0.05
    family: tuple[str, ...] | None = None
    """Metric keys whose comparisons are Holm-adjusted together (a plan's goals and guardrails);
    None: every metric of the readout except those only there as a ratio's components."""
    traces: bool = False
    """Add the per-variation trace summary (always there when a span metric is read out)."""
    sequential_tuning: float | None = None
    """n* of the confidence sequence: the total units (both arms) where it is tightest, e.g. the
    units a plan expects at the end of the stage. None: each comparison's current units."""
    drift: tuple[DriftProperty, ...] = ()
    """Properties whose distribution shift is read out (`drift`; a plan's `drift:` list)."""
    until: datetime | None = None
    """Read the evidence as of this moment (the difference-over-time checkpoints): exposures,
    events, evals and spans before it, and the flag's phases begun by then. None: all of it."""
