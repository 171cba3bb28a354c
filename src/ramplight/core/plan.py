"""Measurement plans: what a release must show before it grows, and what stops it.

One plan per flag and environment, decoded once at the edge (YAML through `ramplight apply`,
JSON through the admin API) with `convert_plan`; `check_plan` reports every problem with its
field. A flag without a plan is judged by `default_plan`, and its recommendation says so.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal

import msgspec

from ramplight.core.drift import DriftProperty, check_drift
from ramplight.core.errors import FieldProblem, ValidationError
from ramplight.core.metrics import Direction, Metric

GateKind = Literal["srm", "joinability", "multiple_exposures", "no_traffic"]
GateAction = Literal["pause", "hold", "rollback", "warn"]
GuardrailAction = Literal["rollback", "pause", "warn"]
Predicate = Literal[
    "goal_won",
    "goal_lost",
    "goal_futile",
    "goal_inconclusive",
    "guardrails_safe",
    "guardrails_unproven",
    "stage_complete",
    "final_stage",
]
Verdict = Literal["rollback", "pause", "continue", "expand", "promote", "cleanup"]
SafetyRule = Literal["shown_safe", "no_harm_found"]
Preset = Literal["clear_signals", "do_no_harm"]

ACTIONS: tuple[Verdict, ...] = ("rollback", "pause", "continue", "expand", "promote", "cleanup")


class Goal(msgspec.Struct, frozen=True, forbid_unknown_fields=True, omit_defaults=True):
    """A primary metric: which way is better (default: the metric's own) and the smallest
    relative effect that matters (0.02: a 2 % improvement)."""

    metric: str
    minimum_effect: float = 0.01
    direction: Direction | None = None


class Guardrail(msgspec.Struct, frozen=True, forbid_unknown_fields=True, omit_defaults=True):
    """A metric that must not get worse than `margin` (relative: 0.05 is 5 %; absolute: in the
    metric's units), and what to do when it is shown to."""

    metric: str
    margin: float
    margin_type: Literal["relative", "absolute"] = "relative"
    action: GuardrailAction = "rollback"
    direction: Direction | None = None


class Gate(msgspec.Struct, frozen=True, forbid_unknown_fields=True, omit_defaults=True):
    """A data-quality check that blocks actions when it fails.

    - srm: sample-ratio mismatch in the current phase, p-value below `threshold`
    - joinability: fraction of outcome events joinable to an exposure below `threshold`
    - multiple_exposures: fraction of units seen in two variations above `threshold`
    - no_traffic: no exposed unit in the current phase `threshold` hours after it started
    """

    kind: GateKind
    action: GateAction = "pause"
    threshold: float | None = None


class Stage(msgspec.Struct, frozen=True, forbid_unknown_fields=True, omit_defaults=True):
    """One step of the ramp: the candidate's share, and how long and how wide it must run."""

    percent: float
    min_units: int = 0
    min_hours: float = 0.0


class Condition(msgspec.Struct, frozen=True, forbid_unknown_fields=True, omit_defaults=True):
    all: list[Predicate] = msgspec.field(default_factory=list)
    any: list[Predicate] = msgspec.field(default_factory=list)
    none: list[Predicate] = msgspec.field(default_factory=list)


class DecisionRule(msgspec.Struct, frozen=True, forbid_unknown_fields=True, omit_defaults=True):
    """`then` when `when` holds; rules are tried in order, the first that holds wins."""

    when: Condition
    then: Verdict
    name: str = ""


class Guardian(msgspec.Struct, frozen=True, forbid_unknown_fields=True, omit_defaults=True):
    """What the guardian may do by itself."""

    rollback: bool = True
    pause: bool = True
    expand: bool = False


class Plan(msgspec.Struct, frozen=True, forbid_unknown_fields=True, omit_defaults=True):
    flag_key: str
    environment: str = "production"
    candidate: str | None = None
    goals: list[Goal] = msgspec.field(default_factory=list)
    guardrails: list[Guardrail] = msgspec.field(default_factory=list)
    gates: list[Gate] | None = None
    stages: list[Stage] | None = None
    preset: Preset = "do_no_harm"
    rules: list[DecisionRule] | None = None
    safety: SafetyRule = "shown_safe"
    guardian: Guardian = Guardian()
    approvers: int = 0
    alpha: float = 0.05
    expected_units: int | None = None
    cleanup_after_days: float = 14.0
    drift: list[DriftProperty] = msgspec.field(default_factory=list)
    """Properties whose distribution the readout compares between variations and over time."""
    segments: list[str] = msgspec.field(default_factory=list)
    """Exposure attributes the release room reviews the metrics by (the first is shown first);
    exploratory: no decision reads them."""
    version: int = 0

    def effective_gates(self) -> list[Gate]:
        return DEFAULT_GATES if self.gates is None else self.gates

    def effective_stages(self) -> list[Stage]:
        return DEFAULT_STAGES if self.stages is None else self.stages

    def effective_rules(self) -> list[DecisionRule]:
        return PRESETS[self.preset] if self.rules is None else self.rules

    def sequential_tuning(self) -> float | None:
        """The sample size (units, both arms) the always-valid intervals are tuned for:
        `expected_units`, else the largest stage minimum; None leaves it to the readout."""
        minimums = [s.min_units for s in self.effective_stages() if s.min_units > 0]
        return float(self.expected_units or (max(minimums) if minimums else 0)) or None


DEFAULT_GATES = [
    Gate("srm", "pause", 0.001),
    Gate("joinability", "warn", 0.5),
    Gate("multiple_exposures", "pause", 0.02),
    Gate("no_traffic", "hold", 24.0),
]
DEFAULT_STAGES = [
    Stage(1, 200, 1),
    Stage(5, 1_000, 12),
    Stage(20, 5_000, 24),
    Stage(50, 10_000, 24),
    Stage(100, 0, 0),
]


def _rule(then: Verdict, name: str, **when: list[Predicate]) -> DecisionRule:
    return DecisionRule(when=Condition(**when), then=then, name=name)


PRESETS: dict[Preset, list[DecisionRule]] = {
    # Ship what is shown to help; stop what is shown to hurt or can no longer help enough.
    "clear_signals": [
        _rule("rollback", "the goal got worse", any=["goal_lost"]),
        _rule("rollback", "the goal can no longer reach the minimum effect", any=["goal_futile"]),
        _rule("promote", "won at the final stage", all=["final_stage", "goal_won", "guardrails_safe"]),
        _rule(
            "expand",
            "winning and safe, stage complete",
            all=["stage_complete", "goal_won", "guardrails_safe"],
        ),
        _rule(
            "expand",
            "safe and not losing, stage complete",
            all=["stage_complete", "guardrails_safe"],
            none=["final_stage", "goal_lost"],
        ),
    ],
    # Ship what is shown to do no harm; the goal informs but does not gate.
    "do_no_harm": [
        _rule("rollback", "the goal got worse", any=["goal_lost"]),
        _rule("promote", "safe at the final stage", all=["final_stage", "guardrails_safe", "stage_complete"]),
        _rule(
            "expand", "safe, stage complete", all=["stage_complete", "guardrails_safe"], none=["final_stage"]
        ),
    ],
}


def convert_plan(doc: Mapping[str, Any]) -> Plan:
    try:
        return msgspec.convert(doc, Plan)
    except msgspec.ValidationError as exc:
        reason, _, path = str(exc).partition(" - at `")
        problem = FieldProblem(field=path.rstrip("`").removeprefix("$").lstrip("."), reason=reason)
        raise ValidationError(f"invalid plan: {problem.render()}", (problem,)) from exc


def check_plan(plan: Plan, metrics: Mapping[str, Metric], variations: Sequence[str], default: str) -> None:
    """Raise one ValidationError listing every problem (unknown metrics, margins, stage order)."""
    problems: list[FieldProblem] = []
    if plan.candidate is not None and plan.candidate not in variations:
        problems.append(FieldProblem("candidate", f"no variation {plan.candidate!r}"))
    if plan.candidate is not None and plan.candidate == default:
        problems.append(FieldProblem("candidate", "is the default variation; name the one being released"))
    for i, goal in enumerate(plan.goals):
        if goal.metric not in metrics:
            problems.append(FieldProblem(f"goals[{i}].metric", f"no metric {goal.metric!r}"))
        if not 0 < goal.minimum_effect < 10:
            problems.append(
                FieldProblem(f"goals[{i}].minimum_effect", "a relative effect, e.g. 0.02 for 2 %")
            )
    for i, guard in enumerate(plan.guardrails):
        if guard.metric not in metrics:
            problems.append(FieldProblem(f"guardrails[{i}].metric", f"no metric {guard.metric!r}"))
        if guard.margin < 0 or (guard.margin_type == "relative" and guard.margin >= 10):
            problems.append(FieldProblem(f"guardrails[{i}].margin", "0 or more (relative: 0.05 for 5 %)"))
    stages = plan.effective_stages()
    if not stages:
        problems.append(FieldProblem("stages", "at least one stage"))
    percents = [s.percent for s in stages]
    if any(not 0 < p <= 100 for p in percents) or percents != sorted(set(percents)):
        problems.append(FieldProblem("stages", "percents must rise strictly within (0, 100]"))
    for i, stage in enumerate(stages):
        if stage.min_units < 0 or stage.min_hours < 0:
            problems.append(FieldProblem(f"stages[{i}]", "min_units and min_hours are 0 or more"))
    for i, gate in enumerate(plan.effective_gates()):
        if gate.threshold is not None and gate.threshold < 0:
            problems.append(FieldProblem(f"gates[{i}].threshold", "0 or more"))
    if not 0 < plan.alpha < 0.5:
        problems.append(FieldProblem("alpha", "within (0, 0.5)"))
    if plan.approvers < 0:
        problems.append(FieldProblem("approvers", "0 or more"))
    if plan.rules is not None and not plan.rules:
        problems.append(FieldProblem("rules", "omit it for the preset's rules, or give at least one"))
    problems.extend(check_drift(plan.drift))
    if problems:
        summary = "; ".join(p.render() for p in problems[:5])
        raise ValidationError(f"invalid plan for {plan.flag_key!r}: {summary}", tuple(problems))


def default_plan(flag_key: str, environment: str, metrics: Sequence[Metric]) -> Plan:
    """What a flag without a plan is judged by: every metric with a `guardrail_margin` is a
    guardrail (rollback on breach), the default gates and stages, the `do_no_harm` preset,
    and a guardian that may only roll back or pause."""
    guardrails = [
        Guardrail(metric=m.key, margin=m.guardrail_margin)
        for m in metrics
        if m.guardrail_margin is not None and m.type != "quantile"
    ]
    return Plan(flag_key=flag_key, environment=environment, guardrails=guardrails)
