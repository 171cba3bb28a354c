"""The decision engine, table-driven: every verdict, every gate, and the cases where
"no harm found" is not "shown safe"."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec
import pytest

from ramplight.core.decision import (
    Evidence,
    Interval,
    MetricEvidence,
    ReleaseState,
    decide,
    stage_index,
)
from ramplight.core.plan import Condition, DecisionRule, Gate, Goal, Guardrail, Plan, Stage

NOW = datetime(2026, 11, 20, 12, tzinfo=UTC)
STAGES = [Stage(5, 1_000, 24), Stage(20, 2_000, 24), Stage(100)]


def rel(estimate: float, low: float, high: float, mde: float | None = 0.02, direction: str = "decrease",
        mean: float = 1000.0) -> MetricEvidence:  # fmt: skip
    interval = Interval(estimate * mean, low * mean, high * mean, estimate, low, high, "always_valid")
    return MetricEvidence("m", direction, mean, 10_000, interval, mde)  # type: ignore[arg-type]


def evidence(**metrics: MetricEvidence) -> Evidence:
    return Evidence(
        readout_at=NOW,
        metrics={k: replace(v, key=k) for k, v in metrics.items()},
        srm_p_value=0.4,
        joinable_fraction=0.98,
        multiple_exposure_fraction=0.0,
        phase_units=5_000,
        phase_start=NOW - timedelta(hours=48),
    )


def state(percent: float = 5, **changes: Any) -> ReleaseState:
    base = ReleaseState(control="control", candidate="candidate", candidate_percent=percent,
                        stage_started=NOW - timedelta(hours=48))  # fmt: skip
    return replace(base, **changes)


def plan(**changes: Any) -> Plan:
    return msgspec.structs.replace(
        Plan(flag_key="f", stages=STAGES, guardrails=[Guardrail("latency_ms", 0.05)], gates=[]), **changes
    )


SAFE = rel(0.0, -0.02, 0.02)
HARMFUL = rel(0.313, 0.279, 0.347)
UNPROVEN = rel(0.01, -0.02, 0.08)  # no significant harm, but the interval reaches past 5 %


@pytest.mark.parametrize(
    ("case", "the_plan", "ev", "st", "action", "in_sentence"),
    [
        (
            "breached guardrail rolls back",
            plan(),
            evidence(latency_ms=HARMFUL),
            state(),
            "rollback",
            "latency_ms is worse by +31.3 % [+27.9 %, +34.7 %] under the always-valid interval, beyond the 5% margin",
        ),
        (
            "breached guardrail may pause instead",
            plan(guardrails=[Guardrail("latency_ms", 0.05, action="pause")]),
            evidence(latency_ms=HARMFUL),
            state(),
            "pause",
            "latency_ms is worse",
        ),
        (
            "a warn guardrail does not stop a safe-otherwise ramp",
            plan(
                guardrails=[Guardrail("latency_ms", 0.05, action="warn"), Guardrail("cost", 0.05)],
                rules=[DecisionRule(Condition(all=["stage_complete"]), "expand", "stage done")],
            ),
            evidence(latency_ms=HARMFUL, cost=SAFE),
            state(),
            "expand",
            "expand to 20 %",
        ),
        (
            "shown safe and stage complete expands",
            plan(),
            evidence(latency_ms=SAFE),
            state(),
            "expand",
            "expand to 20 %",
        ),
        (
            "no harm found is not shown safe",
            plan(),
            evidence(latency_ms=UNPROVEN),
            state(),
            "continue",
            "latency_ms: not yet shown within its 5% margin",
        ),
        (
            "the weaker rule expands on no harm found at adequate power",
            plan(safety="no_harm_found"),
            evidence(latency_ms=UNPROVEN),
            state(),
            "expand",
            "expand to 20 %",
        ),
        (
            "the weaker rule does not expand when underpowered",
            plan(safety="no_harm_found"),
            evidence(latency_ms=rel(0.01, -0.02, 0.08, mde=0.12)),
            state(),
            "continue",
            "not yet shown",
        ),
        (
            "final stage safe promotes",
            plan(),
            evidence(latency_ms=SAFE),
            state(100),
            "promote",
            "promote 'candidate'",
        ),
        ("not started expands to the first stage", plan(), evidence(), state(0), "expand", "expand to 5 %"),
        ("a kill pauses", plan(), evidence(latency_ms=SAFE), state(enabled=False), "pause", "kill switch"),
        (
            "a paused release does not expand",
            plan(),
            evidence(latency_ms=SAFE),
            state(paused=True),
            "continue",
            "expand is due but the release is paused",
        ),
        (
            "too few units in the stage",
            plan(),
            replace(evidence(latency_ms=SAFE), phase_units=300),
            state(),
            "continue",
            "300 of 1,000 units at 5 %",
        ),
        (
            "too short in the stage",
            plan(),
            evidence(latency_ms=SAFE),
            state(stage_started=NOW - timedelta(hours=3)),
            "continue",
            "3.0 of 24 h at 5 %",
        ),
        (
            "a stale readout does not advance",
            plan(),
            replace(evidence(latency_ms=SAFE), readout_at=NOW - timedelta(hours=1)),
            state(),
            "continue",
            "more than 15 minutes old",
        ),
        (
            "a readout that misses the end of the stage does not advance",
            plan(),
            replace(evidence(latency_ms=SAFE), readout_at=NOW - timedelta(hours=30)),
            state(),
            "continue",
            "does not cover the whole stage",
        ),
        (
            "a stale readout still rolls back",
            plan(),
            replace(evidence(latency_ms=HARMFUL), readout_at=NOW - timedelta(hours=1)),
            state(),
            "rollback",
            "latency_ms is worse",
        ),
    ],
)
def test_verdicts(
    case: str, the_plan: Plan, ev: Evidence, st: ReleaseState, action: str, in_sentence: str
) -> None:
    rec = decide(the_plan, ev, st, NOW)
    assert rec.action == action, (case, rec.sentence)
    assert in_sentence in rec.sentence or any(in_sentence in r.message for r in rec.reasons), (
        case,
        rec.sentence,
    )


@pytest.mark.parametrize(
    ("gate", "ev_change", "action", "message"),
    [
        (Gate("srm", "pause", 0.001), {"srm_p_value": 1e-6}, "pause", "sample ratio mismatch"),
        (Gate("srm", "rollback", 0.001), {"srm_p_value": 1e-6}, "rollback", "sample ratio mismatch"),
        (
            Gate("joinability", "pause", 0.9),
            {"joinable_fraction": 0.4},
            "pause",
            "only 40% of outcome events",
        ),
        (
            Gate("multiple_exposures", "pause", 0.02),
            {"multiple_exposure_fraction": 0.05},
            "pause",
            "5.0% of units",
        ),
        (Gate("no_traffic", "hold", 24), {"phase_units": 0}, "continue", "no exposed unit"),
    ],
)
def test_failed_gates_block_actions(gate: Gate, ev_change: dict[str, Any], action: str, message: str) -> None:
    rec = decide(plan(gates=[gate]), replace(evidence(latency_ms=SAFE), **ev_change), state(), NOW)
    assert rec.action == action
    assert any(message in r.message for r in rec.blockers), rec.blockers
    passing = decide(plan(gates=[gate]), evidence(latency_ms=SAFE), state(), NOW)
    assert passing.action == "expand" and not passing.blockers


def test_a_warning_gate_is_reported_but_does_not_block() -> None:
    rec = decide(plan(gates=[Gate("joinability", "warn", 0.9)]),
                 replace(evidence(latency_ms=SAFE), joinable_fraction=0.5), state(), NOW)  # fmt: skip
    assert rec.action == "expand"
    assert any(r.code == "gate_joinability" for r in rec.reasons)


@pytest.mark.parametrize(
    ("goal_evidence", "action"),
    [
        (rel(0.05, 0.03, 0.07, direction="increase"), "expand"),  # won
        (rel(-0.05, -0.07, -0.03, direction="increase"), "rollback"),  # lost
        (rel(0.0, -0.004, 0.004, direction="increase"), "rollback"),  # futile: cannot reach +1 %
        (rel(0.01, -0.02, 0.04, direction="increase"), "expand"),  # inconclusive, safe, not losing
    ],
)
def test_clear_signals_goals(goal_evidence: MetricEvidence, action: str) -> None:
    the_plan = plan(preset="clear_signals", goals=[Goal("resolved", minimum_effect=0.01)])
    rec = decide(the_plan, evidence(latency_ms=SAFE, resolved=goal_evidence), state(), NOW)
    assert rec.action == action, rec.sentence


def test_futility_names_the_minimum_effect_that_can_no_longer_be_reached() -> None:
    the_plan = plan(preset="clear_signals", goals=[Goal("resolved", minimum_effect=0.01)])
    rec = decide(
        the_plan,
        evidence(latency_ms=SAFE, resolved=rel(0.0, -0.004, 0.004, direction="increase")),
        state(),
        NOW,
    )
    assert "can no longer reach the minimum effect" in rec.sentence
    assert rec.goals[0].status == "futile"


def test_rules_are_ordered_first_match_wins() -> None:
    rules = [
        DecisionRule(Condition(all=["stage_complete"]), "pause", "first"),
        DecisionRule(Condition(all=["stage_complete"]), "expand", "second"),
    ]
    assert decide(plan(rules=rules), evidence(latency_ms=SAFE), state(), NOW).rule == "first"
    none_rule = [DecisionRule(Condition(none=["final_stage"]), "expand", "not final")]
    assert decide(plan(rules=none_rule), evidence(latency_ms=SAFE), state(100), NOW).action == "continue"


def test_continue_says_what_is_missing_and_how_long_it_takes() -> None:
    rec = decide(plan(), evidence(latency_ms=UNPROVEN), state(), NOW)
    unproven = next(r for r in rec.reasons if r.code == "guardrail_unproven")
    # half-width 5 pts around +1 %: needs (5/4)² ≈ 1.56× the units; 5,000 units came in 48 h.
    assert "≈2,813 more units (≈27 h at current traffic)" in unproven.message


def test_the_smallest_detectable_harm_is_a_size_whatever_the_metric_direction() -> None:
    # The readout signs the minimum detectable effect with the metric's direction (-12 % for a
    # lower-is-better latency); the harm it could detect is still 12 %.
    rec = decide(
        plan(safety="no_harm_found"), evidence(latency_ms=rel(0.01, -0.02, 0.08, mde=-0.12)), state(), NOW
    )
    assert rec.guardrails[0].smallest_detectable_harm == pytest.approx(0.12)
    assert rec.guardrails[0].status == "unproven" and rec.action == "continue"


def test_each_guardrail_reports_the_smallest_harm_it_could_detect() -> None:
    rec = decide(
        plan(safety="no_harm_found"), evidence(latency_ms=rel(0.01, -0.02, 0.08, mde=0.12)), state(), NOW
    )
    assert rec.guardrails[0].smallest_detectable_harm == pytest.approx(0.12)
    assert any(r.code == "underpowered" and "12.0%" in r.message for r in rec.reasons)


def test_cleanup_is_due_after_the_release_settles_and_names_the_loser() -> None:
    promoted = state(100, last_decision="promote", last_decision_at=NOW - timedelta(days=20))
    rec = decide(plan(), evidence(), promoted, NOW)
    assert rec.action == "cleanup" and "'control'" in rec.sentence
    rolled_back = state(0, last_decision="rollback", last_decision_at=NOW - timedelta(days=2))
    rec = decide(plan(), evidence(), rolled_back, NOW)
    assert rec.action == "continue" and "cleanup due in 12.0 days" in rec.sentence


def test_a_flag_without_a_plan_says_it_is_judged_by_defaults() -> None:
    rec = decide(plan(), evidence(latency_ms=SAFE), state(), NOW, plan_source="default")
    assert rec.plan_source == "default"
    assert any(r.code == "default_plan" for r in rec.reasons)


def test_an_expansion_says_which_safety_rule_held() -> None:
    strict = decide(plan(), evidence(latency_ms=SAFE), state(), NOW)
    assert any("shown within their margins" in r.message for r in strict.reasons)
    weak = decide(plan(safety="no_harm_found"), evidence(latency_ms=UNPROVEN), state(), NOW)
    assert weak.guardrails[0].status == "no_harm_found"
    assert any("no harm found at adequate power" in r.message for r in weak.reasons)


@pytest.mark.parametrize(("percent", "index"), [(0, None), (4.9, None), (5, 0), (12, 0), (20, 1), (100, 2)])
def test_stage_index_is_the_last_stage_reached(percent: float, index: int | None) -> None:
    assert stage_index(STAGES, percent) == index


def test_an_absolute_margin_is_judged_on_the_difference() -> None:
    the_plan = plan(guardrails=[Guardrail("latency_ms", 100.0, margin_type="absolute")])
    # +31 % of a 1,000 ms mean is +313 ms [279, 347]: beyond a 100 ms margin.
    assert decide(the_plan, evidence(latency_ms=HARMFUL), state(), NOW).action == "rollback"
    wide = plan(guardrails=[Guardrail("latency_ms", 400.0, margin_type="absolute")])
    assert decide(wide, evidence(latency_ms=HARMFUL), state(), NOW).action == "expand"
