"""The decision engine: from a readout, a plan and the release's state, what to do next and why.

Pure: plain values in, a `Recommendation` out. The order is fixed where safety is at stake —
data-quality gates, then breached guardrails — and declarative after that (the plan's rules,
first match wins). Intervals are the readout's always-valid (sequential) ones wherever the
readout has them, because a ramp is watched continuously; see docs/decisions.md.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from ramplight.core.plan import (
    Condition,
    Gate,
    Guardrail,
    Plan,
    Predicate,
    Stage,
    Verdict,
)

IntervalMethod = Literal["always_valid", "fixed"]
GuardStatus = Literal["breached", "safe", "no_harm_found", "unproven", "no_data"]
GoalStatus = Literal["won", "lost", "futile", "inconclusive", "no_data"]

STALE_AFTER_SECONDS = 900.0
"""A readout older than this cannot advance a stage (it may still roll back or pause)."""


@dataclass(frozen=True, slots=True)
class Interval:
    """candidate − control: absolute difference and relative lift, each with its interval."""

    difference: float
    low: float
    high: float
    relative: float | None
    relative_low: float | None
    relative_high: float | None
    method: IntervalMethod


@dataclass(frozen=True, slots=True)
class MetricEvidence:
    key: str
    direction: Literal["increase", "decrease"]
    control_mean: float | None
    units: int
    interval: Interval | None
    mde_relative: float | None = None


@dataclass(frozen=True, slots=True)
class Evidence:
    """What the engine reads off a readout."""

    readout_at: datetime
    metrics: Mapping[str, MetricEvidence]
    srm_p_value: float | None = None
    joinable_fraction: float | None = None
    multiple_exposure_fraction: float | None = None
    phase_units: int = 0
    phase_start: datetime | None = None


@dataclass(frozen=True, slots=True)
class ReleaseState:
    """The flag in this environment, as the engine needs it."""

    control: str
    candidate: str | None
    candidate_percent: float
    enabled: bool = True
    archived: bool = False
    paused: bool = False
    stage_started: datetime | None = None
    last_decision: str | None = None
    last_decision_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class Reason:
    code: str
    message: str
    metric: str | None = None
    data: Mapping[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.metric is not None:
            out["metric"] = self.metric
        if self.data:
            out["data"] = dict(self.data)
        return out


@dataclass(frozen=True, slots=True)
class GuardCheck:
    metric: str
    status: GuardStatus
    action: str
    margin: float
    margin_type: str
    harm: float | None
    harm_low: float | None
    harm_high: float | None
    smallest_detectable_harm: float | None
    method: IntervalMethod | None


@dataclass(frozen=True, slots=True)
class GoalCheck:
    metric: str
    status: GoalStatus
    minimum_effect: float
    benefit: float | None
    benefit_low: float | None
    benefit_high: float | None


@dataclass(frozen=True, slots=True)
class Recommendation:
    action: Verdict
    sentence: str
    reasons: tuple[Reason, ...]
    rule: str
    plan_source: Literal["plan", "default"]
    safety_rule: str
    stage: int | None
    next_percent: float | None
    guardrails: tuple[GuardCheck, ...]
    goals: tuple[GoalCheck, ...]
    blockers: tuple[Reason, ...]
    """Why the ramp may not grow now (empty: it may); what `ramp` and `decide expand` check."""

    def to_json(self) -> dict[str, Any]:
        return {
            "action": self.action,
            "sentence": self.sentence,
            "reasons": [r.to_json() for r in self.reasons],
            "rule": self.rule,
            "plan_source": self.plan_source,
            "safety_rule": self.safety_rule,
            "stage": self.stage,
            "next_percent": self.next_percent,
            "guardrails": [_plain(g) for g in self.guardrails],
            "goals": [_plain(g) for g in self.goals],
            "blockers": [r.to_json() for r in self.blockers],
        }


def _plain(value: GuardCheck | GoalCheck) -> dict[str, Any]:
    return {name: getattr(value, name) for name in value.__slots__}


# -- reading a readout ----------------------------------------------------------------------


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and math.isfinite(value) else None


def _interval(raw: Any, method: IntervalMethod) -> Interval | None:
    if not isinstance(raw, Mapping):
        return None
    difference, low, high = (_number(raw.get(k)) for k in ("difference", "ci_low", "ci_high"))
    if difference is None or low is None or high is None:
        return None
    return Interval(
        difference,
        low,
        high,
        _number(raw.get("relative")),
        _number(raw.get("relative_ci_low")),
        _number(raw.get("relative_ci_high")),
        method,
    )


def evidence_from_readout(readout: Mapping[str, Any], candidate: str | None) -> Evidence:
    """The figures the engine needs, from a readout's JSON (segment-free entries only)."""
    metrics: dict[str, MetricEvidence] = {}
    for entry in readout.get("metrics", []):
        key = entry.get("key")
        if key is None or entry.get("segment") is not None:
            continue
        arms = {v.get("variation"): v for v in entry.get("variations", [])}
        comparison = next((c for c in entry.get("comparisons", []) if c.get("variation") == candidate), None)
        interval = None
        if comparison is not None:
            interval = _interval(comparison.get("sequential"), "always_valid") or _interval(
                comparison.get("fixed"), "fixed"
            )
        control_arm = arms.get(comparison.get("vs")) if comparison else None
        units = sum(int(a.get("units") or a.get("events") or 0) for a in arms.values())
        metrics[key] = MetricEvidence(
            key=key,
            direction="decrease" if entry.get("direction") == "decrease" else "increase",
            control_mean=_number((control_arm or {}).get("mean", (control_arm or {}).get("value"))),
            units=units,
            interval=interval,
            mde_relative=_number(comparison.get("mde_relative")) if comparison else None,
        )
    phases = [p for p in readout.get("phases", []) if isinstance(p, Mapping)]
    current = phases[-1] if phases else {}
    srm = current.get("srm") if isinstance(current.get("srm"), Mapping) else None
    quality = readout.get("data_quality") or {}
    exposed = quality.get("exposed_units") or 0
    multiple = quality.get("multiple_variation_units") or 0
    return Evidence(
        readout_at=datetime.fromisoformat(readout["generated_at"]),
        metrics=metrics,
        srm_p_value=_number(srm.get("sequential_p_value", srm.get("p_value"))) if srm else None,
        joinable_fraction=_number(quality.get("joinable_fraction")),
        multiple_exposure_fraction=multiple / (exposed + multiple) if exposed + multiple else None,
        phase_units=sum(int(u) for u in (current.get("units") or {}).values()),
        phase_start=datetime.fromisoformat(current["start"]) if current.get("start") else None,
    )


# -- checks ---------------------------------------------------------------------------------


def _pct(value: float) -> str:
    return f"{value * 100:+.1f} %"


def _num(value: float) -> str:
    return f"{value:,.4g}"


def _on_scale(interval: Interval, relative: bool) -> tuple[float, float, float] | None:
    if not relative:
        return interval.difference, interval.low, interval.high
    if interval.relative is None or interval.relative_low is None or interval.relative_high is None:
        return None
    return interval.relative, interval.relative_low, interval.relative_high


def check_guardrail(guard: Guardrail, evidence: MetricEvidence | None, safety: str) -> GuardCheck:
    """breached: the interval shows harm beyond the margin; safe: it shows harm within it
    (non-inferiority); no_harm_found: the weaker rule — no significant harm, at a sample size
    that could have detected a harm of the margin's size."""
    relative = guard.margin_type == "relative"
    base: dict[str, Any] = {
        "metric": guard.metric,
        "action": guard.action,
        "margin": guard.margin,
        "margin_type": guard.margin_type,
    }
    if evidence is None or evidence.interval is None:
        return GuardCheck(
            **base, status="no_data", harm=None, harm_low=None, harm_high=None,
            smallest_detectable_harm=None, method=None,
        )  # fmt: skip
    direction = guard.direction or evidence.direction
    scaled = _on_scale(evidence.interval, relative)
    # The smallest detectable effect is a size: its sign follows the metric's direction.
    mde = abs(evidence.mde_relative) if evidence.mde_relative is not None else None
    if mde is not None and not relative and evidence.control_mean is not None:
        mde = mde * abs(evidence.control_mean)
    if scaled is None:
        return GuardCheck(
            **base, status="no_data", harm=None, harm_low=None, harm_high=None,
            smallest_detectable_harm=mde, method=evidence.interval.method,
        )  # fmt: skip
    estimate, low, high = scaled
    harm, harm_low, harm_high = (estimate, low, high) if direction == "decrease" else (-estimate, -high, -low)
    status: GuardStatus
    if harm_low > guard.margin:
        status = "breached"
    elif harm_high < guard.margin:
        status = "safe"
    elif safety == "no_harm_found" and harm_low <= 0 and mde is not None and mde <= guard.margin:
        status = "no_harm_found"
    else:
        status = "unproven"
    return GuardCheck(
        **base, status=status, harm=harm, harm_low=harm_low, harm_high=harm_high,
        smallest_detectable_harm=mde, method=evidence.interval.method,
    )  # fmt: skip


def check_goal(
    metric: str, minimum_effect: float, direction: str | None, evidence: MetricEvidence | None
) -> GoalCheck:
    if evidence is None or evidence.interval is None or evidence.interval.relative_low is None:
        return GoalCheck(metric, "no_data", minimum_effect, None, None, None)
    i = evidence.interval
    assert i.relative is not None and i.relative_high is not None and i.relative_low is not None
    sign = 1.0 if (direction or evidence.direction) == "increase" else -1.0
    benefit = sign * i.relative
    low, high = sorted((sign * i.relative_low, sign * i.relative_high))
    status: GoalStatus
    if low > 0:
        status = "won"
    elif high < 0:
        status = "lost"
    elif high < minimum_effect:
        status = "futile"
    else:
        status = "inconclusive"
    return GoalCheck(metric, status, minimum_effect, benefit, low, high)


@dataclass(frozen=True, slots=True)
class _GateResult:
    gate: Gate
    reason: Reason


def _failed_gates(plan: Plan, evidence: Evidence, now: datetime) -> list[_GateResult]:
    failed = []
    for gate in plan.effective_gates():
        if gate.kind == "srm":
            limit = gate.threshold if gate.threshold is not None else 0.001
            p = evidence.srm_p_value
            if p is not None and p < limit:
                failed.append(_GateResult(gate, Reason(
                    "gate_srm",
                    f"sample ratio mismatch in the current phase (always-valid p = {p:.2g} < {limit:g})",
                    data={"p_value": p, "threshold": limit},
                )))  # fmt: skip
        elif gate.kind == "joinability":
            limit = gate.threshold if gate.threshold is not None else 0.5
            f = evidence.joinable_fraction
            if f is not None and f < limit:
                failed.append(_GateResult(gate, Reason(
                    "gate_joinability", f"only {f:.0%} of outcome events join an exposure (< {limit:.0%})",
                    data={"joinable_fraction": f, "threshold": limit},
                )))  # fmt: skip
        elif gate.kind == "multiple_exposures":
            limit = gate.threshold if gate.threshold is not None else 0.02
            f = evidence.multiple_exposure_fraction
            if f is not None and f > limit:
                failed.append(_GateResult(gate, Reason(
                    "gate_multiple_exposures", f"{f:.1%} of units saw two variations (> {limit:.1%})",
                    data={"fraction": f, "threshold": limit},
                )))  # fmt: skip
        elif gate.kind == "no_traffic":
            hours = gate.threshold if gate.threshold is not None else 24.0
            start = evidence.phase_start
            if (
                start is not None
                and evidence.phase_units == 0
                and (now - start).total_seconds() >= hours * 3600
            ):
                failed.append(_GateResult(gate, Reason(
                    "gate_no_traffic", f"no exposed unit in the current phase after {hours:g} h",
                    data={"hours": hours},
                )))  # fmt: skip
    return failed


# -- stages ---------------------------------------------------------------------------------


def stage_index(stages: Sequence[Stage], percent: float) -> int | None:
    """The stage the ramp is at: the last whose percent is at most the candidate's (None: below
    the first stage, i.e. not started)."""
    at = None
    for i, stage in enumerate(stages):
        if stage.percent <= percent + 1e-9:
            at = i
    return at


def _stage_progress(
    stage: Stage, state: ReleaseState, evidence: Evidence, now: datetime
) -> tuple[bool, list[Reason]]:
    missing = []
    started = state.stage_started or evidence.phase_start
    hours = (now - started).total_seconds() / 3600 if started else 0.0
    if evidence.phase_units < stage.min_units:
        missing.append(Reason(
            "stage_units", f"{evidence.phase_units:,} of {stage.min_units:,} units at {stage.percent:g} %",
            data={"units": evidence.phase_units, "min_units": stage.min_units},
        ))  # fmt: skip
    if hours < stage.min_hours:
        missing.append(Reason(
            "stage_hours", f"{hours:.1f} of {stage.min_hours:g} h at {stage.percent:g} %",
            data={"hours": hours, "min_hours": stage.min_hours},
        ))  # fmt: skip
    if started is not None and (evidence.readout_at - started).total_seconds() < stage.min_hours * 3600:
        missing.append(Reason("stage_stale", "the readout does not cover the whole stage yet"))
    elif (now - evidence.readout_at).total_seconds() > STALE_AFTER_SECONDS:
        missing.append(Reason("stale_readout", "the readout is more than 15 minutes old; read it again"))
    return not missing, missing


def _eta(check: GuardCheck, units: int, units_per_hour: float | None) -> str:
    """Units (and hours at current traffic) until the interval would clear the margin, if the
    estimate holds: widths shrink as 1/√n."""
    if check.harm is None or check.harm_low is None or check.harm_high is None or check.harm >= check.margin:
        return ""
    half = (check.harm_high - check.harm_low) / 2
    room = check.margin - check.harm
    if half <= 0 or room <= 0 or units <= 0:
        return ""
    needed = math.ceil(units * (half / room) ** 2)
    more = max(needed - units, 0)
    if units_per_hour and units_per_hour > 0:
        return f"; ≈{more:,} more units (≈{more / units_per_hour:.0f} h at current traffic)"
    return f"; ≈{more:,} more units"


# -- the engine -----------------------------------------------------------------------------


def _holds(condition: Condition, facts: Mapping[Predicate, bool]) -> bool:
    return (
        all(facts[p] for p in condition.all)
        and (not condition.any or any(facts[p] for p in condition.any))
        and not any(facts[p] for p in condition.none)
    )


def _guard_sentence(check: GuardCheck) -> str:
    scale = _pct if check.margin_type == "relative" else _num
    margin = f"{check.margin:.0%}" if check.margin_type == "relative" else _num(check.margin)
    interval = "always-valid" if check.method == "always_valid" else "fixed-horizon"
    assert check.harm is not None and check.harm_low is not None and check.harm_high is not None
    return (
        f"{check.metric} is worse by {scale(check.harm)} [{scale(check.harm_low)}, {scale(check.harm_high)}] "
        f"under the {interval} interval, beyond the {margin} margin"
    )


def decide(
    plan: Plan,
    evidence: Evidence,
    state: ReleaseState,
    now: datetime,
    plan_source: Literal["plan", "default"] = "plan",
) -> Recommendation:
    stages = plan.effective_stages()
    at = stage_index(stages, state.candidate_percent)
    next_stage = (
        stages[at + 1] if at is not None and at + 1 < len(stages) else (stages[0] if at is None else None)
    )
    guards = tuple(check_guardrail(g, evidence.metrics.get(g.metric), plan.safety) for g in plan.guardrails)
    goals = tuple(
        check_goal(g.metric, g.minimum_effect, g.direction, evidence.metrics.get(g.metric))
        for g in plan.goals
    )
    common: dict[str, Any] = {
        "plan_source": plan_source,
        "safety_rule": plan.safety,
        "stage": at,
        "guardrails": guards,
        "goals": goals,
    }
    default_note = (
        [
            Reason(
                "default_plan", "no measurement plan: judged by the defaults (guardrails from metric margins)"
            )
        ]
        if plan_source == "default"
        else []
    )

    def result(action: Verdict, sentence: str, reasons: list[Reason], rule: str,
               blockers: list[Reason], next_percent: float | None = None) -> Recommendation:  # fmt: skip
        return Recommendation(
            action=action, sentence=sentence, reasons=tuple(reasons + default_note), rule=rule,
            next_percent=next_percent, blockers=tuple(blockers), **common,
        )  # fmt: skip

    if state.archived:
        return result(
            "continue",
            "nothing to decide: the flag is archived",
            [],
            "archived",
            [Reason("archived", "archived")],
        )
    if not state.enabled:
        why = Reason("killed", "the kill switch is on in this environment; restore it to resume")
        return result("pause", "pause: the kill switch is on", [why], "killed", [why])
    if state.candidate is None:
        return result(
            "continue", "nothing to release: no candidate variation", [], "no_candidate",
            [Reason("no_candidate", "name the variation being released in the plan (candidate)")],
        )  # fmt: skip

    # Lifecycle: a promoted or rolled-back release is cleaned up once it has settled.
    if state.last_decision in ("promote", "rollback") and state.last_decision_at is not None:
        due = state.last_decision_at.timestamp() + plan.cleanup_after_days * 86400
        loser = state.control if state.last_decision == "promote" else state.candidate
        if now.timestamp() >= due:
            why = Reason("cleanup_due", f"{state.last_decision} settled {plan.cleanup_after_days:g} days ago",
                         data={"losing_variation": loser})  # fmt: skip
            return result("cleanup", f"clean up: remove the losing branch {loser!r} and archive the flag",
                          [why], "lifecycle", [why])  # fmt: skip
        days = (due - now.timestamp()) / 86400
        why = Reason("cleanup_pending", f"{state.last_decision} recorded; cleanup due in {days:.1f} days",
                     data={"losing_variation": loser})  # fmt: skip
        return result("continue", f"continue: {state.last_decision} done, cleanup due in {days:.1f} days",
                      [why], "lifecycle", [why])  # fmt: skip

    blockers: list[Reason] = []
    if state.paused:
        blockers.append(Reason("paused", "the release is paused; resume it with a decision or a forced ramp"))

    # Data-quality gates block actions; they are not footnotes.
    failed = _failed_gates(plan, evidence, now)
    order = {"rollback": 0, "pause": 1, "hold": 2, "warn": 3}
    failed.sort(key=lambda f: order[f.gate.action])
    warnings = [f.reason for f in failed if f.gate.action == "warn"]
    for f in failed:
        if f.gate.action in ("rollback", "pause"):
            verdict: Verdict = "rollback" if f.gate.action == "rollback" else "pause"
            return result(verdict, f"{'roll back' if verdict == 'rollback' else 'pause'}: {f.reason.message}",
                          [f.reason, *warnings], f"gate:{f.gate.kind}", [f.reason])  # fmt: skip
        if f.gate.action == "hold":
            blockers.append(f.reason)

    # Breached guardrails act on their own, whatever the rules say.
    breached = sorted((g for g in guards if g.status == "breached"), key=lambda g: order[g.action])
    for g in breached:
        why = Reason("guardrail_breached", _guard_sentence(g), g.metric,
                     {"harm": g.harm, "harm_low": g.harm_low, "harm_high": g.harm_high, "margin": g.margin})  # fmt: skip
        if g.action == "warn":
            warnings.append(why)
            continue
        verdict = "rollback" if g.action == "rollback" else "pause"
        label = "roll back" if verdict == "rollback" else "pause"
        return result(verdict, f"{label}: {why.message}", [why, *warnings], f"guardrail:{g.metric}", [why])

    units_in_stage = evidence.phase_units
    started = state.stage_started or evidence.phase_start
    hours_in = (now - started).total_seconds() / 3600 if started else 0.0
    rate = units_in_stage / hours_in if hours_in > 0 else None

    # The release has not started: the first stage is where evidence comes from.
    if at is None:
        if blockers:
            return result(
                "continue", f"continue: {blockers[0].message}", [*blockers, *warnings], "blocked", blockers
            )
        first = stages[0].percent
        why = Reason(
            "not_started", f"the candidate serves {state.candidate_percent:g} %; start at {first:g} %"
        )
        return result("expand", f"expand to {first:g} %: the release has not started", [why, *warnings],
                      "start", [], first)  # fmt: skip

    stage = stages[at]
    complete, missing = _stage_progress(stage, state, evidence, now)
    final = at == len(stages) - 1
    safe_statuses = ("safe", "no_harm_found")
    guards_safe = all(g.status in safe_statuses for g in guards)
    facts: dict[Predicate, bool] = {
        "goal_won": bool(goals) and all(g.status == "won" for g in goals),
        "goal_lost": any(g.status == "lost" for g in goals),
        "goal_futile": bool(goals) and all(g.status in ("futile", "lost") for g in goals),
        "goal_inconclusive": any(g.status in ("inconclusive", "no_data") for g in goals),
        "guardrails_safe": guards_safe,
        "guardrails_unproven": not guards_safe,
        "stage_complete": complete,
        "final_stage": final,
    }
    if not complete:
        blockers.extend(missing)
    underpowered = [
        g for g in guards
        if g.smallest_detectable_harm is not None and g.smallest_detectable_harm > g.margin
        and g.margin_type == "relative" and g.status != "safe"
    ]  # fmt: skip
    power_notes = [
        Reason("underpowered", f"{g.metric}: at this sample the smallest detectable harm is "
               f"{g.smallest_detectable_harm:.1%}, more than the {g.margin:.0%} margin — no harm found is not safe",
               g.metric, {"smallest_detectable_harm": g.smallest_detectable_harm, "margin": g.margin})
        for g in underpowered
    ]  # fmt: skip

    for number, rule in enumerate(plan.effective_rules()):
        if not _holds(rule.when, facts):
            continue
        name = rule.name or f"rule {number + 1}"
        held = [Reason("rule", f"rule {number + 1} ({name}) held", data={"rule": number})]
        safety = [Reason("safety_rule", f"guardrails: {'shown within their margins' if plan.safety == 'shown_safe' else 'no harm found at adequate power'}")] if guards else []  # fmt: skip
        goal_reasons = [
            Reason(f"goal_{g.status}", f"{g.metric}: {g.status}"
                   + (f" ({_pct(g.benefit)} [{_pct(g.benefit_low)}, {_pct(g.benefit_high)}])"
                      if g.benefit is not None and g.benefit_low is not None and g.benefit_high is not None else ""),
                   g.metric)
            for g in goals
        ]  # fmt: skip
        if rule.then in ("expand", "promote") and blockers:
            return result("continue", f"continue: {rule.then} is due but {blockers[0].message}",
                          [*blockers, *held, *warnings], f"{name} (blocked)", blockers)  # fmt: skip
        if rule.then == "expand":
            assert next_stage is not None
            return result("expand", f"expand to {next_stage.percent:g} %: {name}",
                          [*held, *safety, *goal_reasons, *warnings], name, blockers, next_stage.percent)  # fmt: skip
        if rule.then == "promote":
            return result("promote", f"promote {state.candidate!r}: {name}",
                          [*held, *safety, *goal_reasons, *warnings], name, blockers)  # fmt: skip
        if rule.then == "rollback":
            return result(
                "rollback", f"roll back: {name}", [*held, *goal_reasons, *warnings], name, [held[0]]
            )
        if rule.then == "pause":
            return result("pause", f"pause: {name}", [*held, *goal_reasons, *warnings], name, [held[0]])
        if rule.then == "cleanup":
            return result("cleanup", f"clean up: {name}", [*held, *warnings], name, blockers)
        return result("continue", f"continue: {name}", [*held, *warnings], name, blockers)

    # Nothing decided yet: say what is missing and how long it will take at current traffic.
    needs: list[Reason] = list(blockers)
    for g in guards:
        if g.status not in safe_statuses:
            eta = _eta(g, units_in_stage, rate)
            if g.status == "no_data":
                text = f"{g.metric}: no comparison yet"
            else:
                assert g.harm is not None and g.harm_low is not None and g.harm_high is not None
                scale = _pct if g.margin_type == "relative" else _num
                margin = f"{g.margin:.0%}" if g.margin_type == "relative" else _num(g.margin)
                text = (f"{g.metric}: not yet shown within its {margin} margin ({scale(g.harm)} "
                        f"[{scale(g.harm_low)}, {scale(g.harm_high)}]){eta}")  # fmt: skip
            needs.append(Reason("guardrail_unproven", text, g.metric))
    for goal in goals:
        if goal.status in ("inconclusive", "no_data"):
            needs.append(Reason("goal_inconclusive", f"{goal.metric}: not yet decided", goal.metric))
    needs.extend(power_notes)
    if not needs:
        needs.append(Reason("waiting", "no rule holds yet"))
    return result("continue", f"continue: {needs[0].message}", [*needs, *warnings], "no rule held", blockers)
