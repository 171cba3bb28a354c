"""Release use cases: measurement plans, recommendations, decisions that act, and the checks that
refuse a ramp against the plan. Pure judgement lives in `core.decision`; this module reads the
store and the readout, and writes a decision with its flag change in one transaction."""

from __future__ import annotations

import contextlib
import hashlib
import json
import re
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any, Literal

import msgspec

from ramplight import audit, control
from ramplight.analysis import checkpoints
from ramplight.analysis import service as analysis
from ramplight.analysis.execute import fetch as analysis_fetch
from ramplight.analysis.options import ReadoutOptions
from ramplight.analysis.readout import build_readout
from ramplight.analysis.sql import (
    any_span_query,
    attributes_sample_query,
    eval_names_query,
    eval_run_query,
    evidence_bounds_query,
    representative_traces_query,
    trace_spans_query,
)
from ramplight.analysis.timeline import timeline
from ramplight.analysis.waterfall import span_tree
from ramplight.control.prices import apply_prices
from ramplight.core.audit import Decision, FlagChange
from ramplight.core.decision import Recommendation, ReleaseState, decide, evidence_from_readout, stage_index
from ramplight.core.errors import ConflictError, ForbiddenError, NotFoundError, ValidationError
from ramplight.core.flags import Flag, Rollout
from ramplight.core.gate import GateRecord, GateRequest, read_scores
from ramplight.core.metrics import Metric
from ramplight.core.phases import phases_from_changes
from ramplight.core.plan import Plan, Verdict, check_plan, convert_plan, default_plan
from ramplight.core.rollout import ramp_weights
from ramplight.store.base import ChangeRequest, Store

Clock = Callable[[], datetime]
ACTIONS: tuple[Verdict, ...] = ("expand", "rollback", "pause", "promote", "cleanup", "continue")


def utcnow() -> datetime:
    return datetime.now(UTC)


# -- plans ------------------------------------------------------------------------------------


def save_plan(
    store: Store,
    doc: Mapping[str, Any],
    expected_version: int | None,
    actor: str,
    reason: str | None = None,
    clock: Clock = utcnow,
) -> Plan:
    """Create (expected_version None) or replace a flag's plan in one environment; the change is
    written to `flag_changes` (action `plan`) in the same transaction."""
    plan = convert_plan(doc)
    flag = control.get_flag(store, plan.flag_key)
    if plan.environment not in flag.environments:
        raise ValidationError.at(
            "environment", f"flag {flag.key!r} is not configured in {plan.environment!r}"
        )
    env = flag.environments[plan.environment]
    check_plan(plan, {m.key: m for m in store.list_metrics()}, flag.variation_keys(), env.default_variation)
    previous = store.get_plan(plan.flag_key, plan.environment)
    plan = msgspec.structs.replace(plan, version=(expected_version or 0) + 1)
    change = FlagChange(
        change_id=uuid.uuid4().hex,
        ts=clock(),
        environment=plan.environment,
        flag_key=plan.flag_key,
        version=plan.version,
        actor=actor,
        action="plan",
        before=msgspec.to_builtins(previous) if previous is not None else None,
        after=msgspec.to_builtins(plan),
        reason=reason,
    )
    store.save_plan(plan, expected_version, change)
    return plan


@dataclass(frozen=True, slots=True)
class PlannedPlan:
    key: str
    action: Literal["create", "update", "unchanged"]
    version: int | None


def apply_plans(
    store: Store, docs: Iterable[Mapping[str, Any]], actor: str, dry_run: bool = False
) -> list[PlannedPlan]:
    """Make stored plans match the documents (idempotent)."""
    out = []
    for i, doc in enumerate(docs):
        try:
            plan = convert_plan(doc)
        except ValidationError as exc:
            raise ValidationError(f"plans[{i}]: {exc.message}", exc.problems) from exc
        key = f"{plan.flag_key}@{plan.environment}"
        previous = store.get_plan(plan.flag_key, plan.environment)
        if previous is not None and msgspec.structs.replace(previous, version=0) == plan:
            out.append(PlannedPlan(key, "unchanged", previous.version))
            continue
        version = previous.version if previous is not None else None
        if not dry_run:
            version = save_plan(store, msgspec.to_builtins(plan), version, actor).version
        out.append(PlannedPlan(key, "create" if previous is None else "update", version))
    return out


def apply_documents(
    store: Store,
    metrics: Sequence[Mapping[str, Any]],
    flags: Sequence[Mapping[str, Any]],
    plans: Sequence[Mapping[str, Any]],
    actor: str,
    dry_run: bool = False,
    reason: str | None = None,
    sources: Sequence[Mapping[str, Any]] = (),
    prices: Sequence[Mapping[str, Any]] | None = None,
) -> list[dict[str, Any]]:
    """`apply` of a file: its evidence sources, metrics, then flags, then plans (which may name
    both), all or nothing — a plan refused after its flag was written undoes the flag too."""
    with contextlib.nullcontext() if dry_run else store.atomic():
        results = control.apply_sources(store, sources, dry_run=dry_run)
        results += apply_prices(store, prices, dry_run=dry_run)
        results += control.apply_metrics(store, metrics, dry_run=dry_run)
        results += control.apply(store, flags, actor, dry_run=dry_run, reason=reason)
        planned = apply_plans(store, plans, actor, dry_run=dry_run)
    return [{"key": r.key, "action": r.action, "version": r.version, "diff": r.diff} for r in results] + [
        {"key": p.key, "action": p.action, "version": p.version, "diff": ""} for p in planned
    ]


def plan_for(store: Store, flag: Flag, environment: str) -> tuple[Plan, Literal["plan", "default"]]:
    stored = store.get_plan(flag.key, environment)
    if stored is not None:
        return stored, "plan"
    return default_plan(flag.key, environment, store.list_metrics()), "default"


# -- state and recommendation -------------------------------------------------------------------


def candidate_of(flag: Flag, environment: str, plan: Plan) -> str | None:
    """The variation being released: the plan's, else the one non-default variation that has
    weight (or the only non-default, non-off variation)."""
    if plan.candidate is not None:
        return plan.candidate
    env = flag.environments[environment]
    weights = env.rollout.weights if env.rollout else {}
    others = [v for v in flag.variation_keys() if v != env.default_variation]
    weighted = [v for v in others if weights.get(v, 0) > 0]
    if len(weighted) == 1:
        return weighted[0]
    plain = [v for v in others if v != env.off_variation]
    return plain[0] if len(plain) == 1 else (weighted[0] if weighted else None)


def release_state(store: Store, flag: Flag, environment: str, plan: Plan) -> ReleaseState:
    env = flag.environments[environment]
    candidate = candidate_of(flag, environment, plan)
    weights = env.rollout.weights if env.rollout else {env.default_variation: 100.0}
    acted = [d for d in store.decisions(flag.key) if d.environment == environment and d.state != "continue"]
    last = acted[-1] if acted else None
    return ReleaseState(
        control=env.default_variation,
        candidate=candidate,
        candidate_percent=weights.get(candidate, 0.0) if candidate else 0.0,
        enabled=env.enabled,
        archived=flag.archived,
        paused=env.paused,
        last_decision=last.state if last else None,
        last_decision_at=last.ts if last else None,
    )


@dataclass(frozen=True, slots=True)
class Judgement:
    flag: Flag
    plan: Plan
    plan_source: Literal["plan", "default"]
    state: ReleaseState
    readout: dict[str, Any]
    recommendation: Recommendation


def _plan_options(plan: Plan, source: str, options: ReadoutOptions, drift: bool = False) -> ReadoutOptions:
    """A plan decides the multiple-comparison family (its goals and guardrails), the
    sample size the always-valid intervals are tuned for (`expected_units`, else the largest
    stage minimum) and, with `drift`, the properties read out for drift; options the caller set
    explicitly win."""
    if source != "plan":
        return options
    family = tuple(_plan_metric_keys(plan)) or None
    tuning = plan.sequential_tuning()
    return replace(
        options,
        family=options.family if options.family is not None else family,
        sequential_tuning=options.sequential_tuning if options.sequential_tuning is not None else tuning,
        drift=options.drift or (tuple(plan.drift) if drift else ()),
    )


def _plan_metric_keys(plan: Plan) -> list[str]:
    return list(dict.fromkeys([g.metric for g in plan.goals] + [g.metric for g in plan.guardrails]))


def judge(
    store: Store,
    flag_key: str,
    environment: str,
    metric_keys: list[str] | None = None,
    options: ReadoutOptions | None = None,
    now: datetime | None = None,
    state_override: Callable[[ReleaseState], ReleaseState] | None = None,
    drift: bool = False,
) -> Judgement:
    """Readout and recommendation together; the readout covers the plan's metrics too, and with
    `drift` its drift properties (a scan each, which no decision reads: the guardian skips them)."""
    flag = _flag_in(store, flag_key, environment)
    plan, source = plan_for(store, flag, environment)
    keys = None if not metric_keys else list(dict.fromkeys([*metric_keys, *_plan_metric_keys(plan)]))
    options = _plan_options(plan, source, options or ReadoutOptions(alpha=plan.alpha), drift)
    readout = analysis.report(store, flag_key, environment, keys, options)
    state = release_state(store, flag, environment, plan)
    if state_override is not None:
        state = state_override(state)
    evidence = evidence_from_readout(readout, state.candidate)
    moment = now or datetime.fromisoformat(readout["generated_at"])
    recommendation = decide(plan, evidence, state, moment, source)
    return Judgement(flag, plan, source, state, readout, recommendation)


def report(
    store: Store,
    flag_key: str,
    environment: str,
    metric_keys: list[str] | None = None,
    options: ReadoutOptions | None = None,
) -> dict[str, Any]:
    """The readout, starting with the recommendation."""
    j = judge(store, flag_key, environment, metric_keys, options, drift=True)
    return {
        "recommendation": j.recommendation.to_json(),
        "plan": _plan_summary(j),
        **j.readout,
        "timeline": timeline(store, j.flag, environment, _series_metrics(store, j.plan, metric_keys)),
    }


def release_timeline(store: Store, flag_key: str, environment: str) -> dict[str, Any]:
    """The readout's `timeline` without the readout: changes, decisions and eval gates, and hourly
    units and series of the plan's metrics (of every metric without a plan)."""
    flag = _flag_in(store, flag_key, environment)
    plan, _ = plan_for(store, flag, environment)
    return timeline(store, flag, environment, _series_metrics(store, plan, None))


def difference_series(
    store: Store,
    flag_key: str,
    environment: str,
    max_points: int = checkpoints.MAX_CHECKPOINTS,
    latest: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The candidate-vs-control difference of each of the plan's goals and guardrails at up to
    `max_points` checkpoints from the first exposure to the last evidence (ramp steps and evenly
    spaced moments): one readout as of each (`ReadoutOptions.until`), with the plan's options.
    The last checkpoint reads all the evidence; `latest`, the current readout of the same plan
    (the page's cached judgement), stands in for it instead of a readout of its own."""
    flag = _flag_in(store, flag_key, environment)
    plan, source = plan_for(store, flag, environment)
    keys = _plan_metric_keys(plan)
    candidate = candidate_of(flag, environment, plan)
    empty: dict[str, Any] = {"candidate": candidate, "checkpoints": [], "metrics": {k: [] for k in keys}}
    if not keys:
        return empty
    (bounds,) = analysis_fetch(store, evidence_bounds_query(flag.key, environment, flag.assignment_unit))
    first = bounds["first_exposure"]
    if first is None:
        return empty
    last = max(t for t in (bounds["last_exposure"], bounds["last_event"]) if t is not None)
    first, last = (t if t.tzinfo else t.replace(tzinfo=UTC) for t in (first, last))
    steps = [p.start for p in phases_from_changes(store.flag_changes(flag.key), environment)]
    options = _plan_options(plan, source, ReadoutOptions(alpha=plan.alpha))
    moments = checkpoints.checkpoint_times(first, last, steps, max_points)
    out: dict[str, Any] = {
        "candidate": candidate,
        "first": first.isoformat(),
        "checkpoints": [],
        "metrics": {k: [] for k in keys},
    }
    for moment in moments:
        final = moment == moments[-1]
        if final and latest is not None:
            readout: Mapping[str, Any] = latest
        else:
            until = None if final else moment
            readout = analysis.report(store, flag.key, environment, keys, replace(options, until=until))
        out["checkpoints"].append({"ts": moment.isoformat(), "step": moment in steps, "final": final})
        for key in keys:
            point = checkpoints.comparison_point(readout, key, candidate)
            if point is not None:
                out["metrics"][key].append({"ts": moment.isoformat(), **point})
    return out


SEGMENT_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")
MAX_SEGMENT_VALUES = 50


def segment_attributes(store: Store, flag_key: str, environment: str) -> list[dict[str, Any]]:
    """The targeting attributes a segment review can split the flag's units by: those of its
    latest exposures (a sample of 2,000) with plain values (text, numbers, booleans) and at most
    50 distinct ones, each with how many values it takes there."""
    flag = _flag_in(store, flag_key, environment)
    values: dict[str, set[str]] = {}
    for row in analysis_fetch(store, attributes_sample_query(flag.key, environment)):
        attrs = row["attributes"]
        if isinstance(attrs, str | bytes):
            try:
                attrs = json.loads(attrs)
            except ValueError:
                continue
        if not isinstance(attrs, dict):
            continue
        for name, value in attrs.items():
            if isinstance(value, str | int | float | bool) and SEGMENT_NAME.fullmatch(name):
                values.setdefault(name, set()).add(str(value))
    return [
        {"attribute": name, "values": len(seen)}
        for name, seen in sorted(values.items())
        if len(seen) <= MAX_SEGMENT_VALUES
    ]


def segment_review(store: Store, flag_key: str, environment: str, attribute: str) -> dict[str, Any]:
    """The plan's goals and guardrails per value of a targeting attribute (`ReadoutOptions.segment`,
    with the plan's options): exploratory — the Holm-adjusted p-values count every segment."""
    flag = _flag_in(store, flag_key, environment)
    names = [a["attribute"] for a in segment_attributes(store, flag.key, environment)]
    if attribute not in names:
        listed = ", ".join(names) or "none"
        raise ValidationError.at(
            "segment", f"no attribute {attribute!r} among the flag's exposures (attributes: {listed})"
        )
    plan, source = plan_for(store, flag, environment)
    keys = _plan_metric_keys(plan)
    if not keys:
        raise ValidationError.at("segment", "the plan names no goal or guardrail to review by segment")
    options = _plan_options(plan, source, ReadoutOptions(alpha=plan.alpha, segment=attribute))
    return analysis.report(store, flag.key, environment, keys, options)


WATERFALL_SPANS = 2000
"""The most spans a trace waterfall draws (the first by start time); beyond, the page says so."""


def evals_and_traces(store: Store, flag_key: str, environment: str) -> dict[str, Any]:
    """What the flag page shows of the LLM evidence per variation: every eval score of the
    environment (by name and evaluator, at most 12) read out as an eval metric (per-unit mean
    score, joined to units as eval metrics are), the readout's trace summary, and for each
    variation its representative slow trace (the root span at the 95th percentile of duration)
    as a span tree with its critical path (`analysis.waterfall`)."""
    flag = _flag_in(store, flag_key, environment)
    plan, _ = plan_for(store, flag, environment)
    names = analysis_fetch(store, eval_names_query(environment))
    evals = [
        Metric(
            key=f"{row['name']} · {row['evaluator']}" if row["evaluator"] else str(row["name"]),
            type="eval",
            eval=str(row["name"]),
            evaluator=row["evaluator"],
            description=f"{row['scores']:,} scores in {environment}",
        )
        for row in names
    ]
    control_variation = flag.environments[environment].default_variation
    if not evals and not analysis_fetch(store, any_span_query(environment)):
        # Nothing to show: no readout (the section says how to send evals and spans).
        return {
            "control": control_variation,
            "evals": [],
            "traces": {},
            "waterfalls": {},
            "alpha": plan.alpha,
        }
    options = ReadoutOptions(alpha=plan.alpha, traces=True)
    readout = build_readout(store, flag, environment, evals, {m.key: m for m in evals}, options)
    traces = readout.get("traces") or {}
    waterfalls: dict[str, Any] = {}
    if traces:
        spec, _ = analysis.spec_for(store, flag.key, environment, [])
        chosen: dict[str, dict[str, Any]] = {}
        for row in analysis_fetch(store, representative_traces_query(spec)):
            chosen.setdefault(row["variation"], row)
        # One statement per trace (one per variation): each waterfall gets its own span limit,
        # so a huge trace never crowds another variation's out.
        spans: dict[str, list[dict[str, Any]]] = {}
        for trace_id in dict.fromkeys(str(r["trace_id"]) for r in chosen.values()):
            spans[trace_id] = analysis_fetch(
                store, trace_spans_query(environment, [trace_id], WATERFALL_SPANS)
            )
        for variation, row in chosen.items():
            drawn = spans.get(str(row["trace_id"]), [])
            waterfalls[variation] = {
                "trace_id": row["trace_id"],
                "duration_ms": float(row["duration_ms"]),
                "rank": int(row["duration_rank"]),
                "roots": int(row["roots"]),
                "spans": span_tree(drawn),
                "truncated": len(drawn) >= WATERFALL_SPANS,
            }
    return {
        "control": control_variation,
        "evals": [m for m in readout["metrics"] if m.get("type") == "eval"] if evals else [],
        "traces": traces,
        "waterfalls": waterfalls,
        "alpha": plan.alpha,
    }


def _series_metrics(store: Store, plan: Plan, metric_keys: list[str] | None) -> list[Metric]:
    known = {m.key: m for m in store.list_metrics()}
    keys = _plan_metric_keys(plan) or list(metric_keys or known)
    return [known[k] for k in keys if k in known]


def _flag_in(store: Store, flag_key: str, environment: str) -> Flag:
    flag = control.get_flag(store, flag_key)
    if environment not in flag.environments:
        raise NotFoundError(f"flag {flag_key!r} is not configured in environment {environment!r}")
    return flag


def _plan_summary(j: Judgement) -> dict[str, Any]:
    stages = j.plan.effective_stages()
    at = stage_index(stages, j.state.candidate_percent)
    return {
        "source": j.plan_source,
        "version": j.plan.version,
        "candidate": j.state.candidate,
        "candidate_percent": j.state.candidate_percent,
        "stages": [s.percent for s in stages],
        "stage": at,
        "paused": j.state.paused,
        "safety": j.plan.safety,
        "guardian": msgspec.to_builtins(j.plan.guardian),
    }


# -- acting ------------------------------------------------------------------------------------


def fingerprint(readout: Mapping[str, Any], flag: Flag) -> str:
    """What the evidence was: the flag version and the readout's figures. A guardian never acts
    twice on the same fingerprint."""
    quality = readout.get("data_quality") or {}
    body = msgspec.json.encode(
        {
            "flag_version": flag.version,
            "units": [p.get("units") for p in readout.get("phases", [])],
            "events": quality.get("events"),
            "metrics": [
                [m.get("key"), [v.get("units", v.get("events")) for v in m.get("variations", [])]]
                for m in readout.get("metrics", [])
            ],
        }
    )
    return hashlib.sha256(body).hexdigest()[:32]


def _weights(flag: Flag, environment: str) -> dict[str, float]:
    env = flag.environments[environment]
    return dict(env.rollout.weights) if env.rollout else {env.default_variation: 100.0}


def _with_env(flag: Flag, environment: str, **changes: Any) -> Flag:
    envs = dict(flag.environments)
    envs[environment] = msgspec.structs.replace(envs[environment], **changes)
    return msgspec.structs.replace(flag, environments=envs)


def _acted_flag(
    flag: Flag, environment: str, action: Verdict, j: Judgement, percent: float | None
) -> Flag | None:
    """The flag after `action` (None: the action changes no flag state)."""
    state = j.state
    env = flag.environments[environment]
    if action == "continue":
        return None
    candidate = state.candidate
    if action in ("expand", "rollback", "promote") and candidate is None:
        raise ValidationError.at("candidate", "no candidate variation to act on; name it in the plan")
    assert candidate is not None or action in ("pause", "cleanup")
    if action == "expand":
        assert candidate is not None
        target = percent if percent is not None else j.recommendation.next_percent
        if target is None:
            stages = j.plan.effective_stages()
            at = stage_index(stages, state.candidate_percent)
            following = stages[0] if at is None else (stages[at + 1] if at + 1 < len(stages) else None)
            if following is None:
                raise ConflictError("the ramp is at its final stage: promote instead of expanding")
            target = following.percent
        weights = ramp_weights(_weights(flag, environment), candidate, target, env.default_variation)
        return _with_env(flag, environment, rollout=Rollout(weights=weights), paused=False)
    if action == "rollback":
        weights = {v: (100.0 if v == env.default_variation else 0.0) for v in _weights(flag, environment)}
        weights.setdefault(env.default_variation, 100.0)
        return _with_env(flag, environment, rollout=Rollout(weights=weights), paused=False)
    if action == "pause":
        return _with_env(flag, environment, paused=True)
    if action == "promote":
        assert candidate is not None
        weights = {v: (100.0 if v == candidate else 0.0) for v in _weights(flag, environment)}
        weights[candidate] = 100.0
        return _with_env(
            flag, environment, default_variation=candidate, rollout=Rollout(weights=weights), paused=False
        )
    return msgspec.structs.replace(flag, archived=True)


_CHANGE_ACTION: dict[str, Any] = {
    "expand": "expand",
    "rollback": "rollback",
    "pause": "pause",
    "promote": "promote",
    "cleanup": "archive",
}


def refusal(action: Verdict, j: Judgement, approved: bool = False) -> str | None:
    """Why `action` goes against the plan now (None: it does not). `approved`: a change request
    carrying the plan's required approvals is being applied."""
    rec = j.recommendation
    if action in ("expand", "promote") and j.plan.approvers > 0 and not approved:
        return (
            f"{action} in {j.plan.environment} needs {j.plan.approvers} approval(s) from someone other than "
            "the proposer: open a change request (POST /api/flags/{key}/requests)"
        )
    blockers = list(rec.blockers)
    if j.plan_source == "default":
        # Without a plan, only safety blocks: breached guardrails, failed gates, a pause.
        blockers = [b for b in blockers if not b.code.startswith("stage") and b.code != "stale_readout"]
    if action == "expand" and blockers:
        return "; ".join(b.message for b in blockers)
    if action == "promote":
        if blockers:
            return "; ".join(b.message for b in blockers)
        stages = j.plan.effective_stages()
        if j.plan_source == "plan" and stage_index(stages, j.state.candidate_percent) != len(stages) - 1:
            return f"promote skips stages: the candidate serves {j.state.candidate_percent:g} %, the plan ends at {stages[-1].percent:g} %"
    if action == "cleanup" and j.state.last_decision not in ("promote", "rollback"):
        return "clean up follows a promote or a rollback decision; none is recorded"
    return None


def decide_action(
    store: Store,
    flag_key: str,
    environment: str,
    action: str,
    actor: str,
    reason: str | None = None,
    force: bool = False,
    can_force: bool = False,
    percent: float | None = None,
    clock: Clock = utcnow,
    judgement: Judgement | None = None,
    approved: bool = False,
) -> Decision:
    """Apply `action`, recording the decision, the recommendation at that moment, the readout it
    was made on and its SQL, with the flag change, in one transaction. 409 when the action goes
    against the plan, unless forced by a key allowed to force."""
    if action not in ACTIONS:
        raise ValidationError.at("action", f"one of {', '.join(ACTIONS)}")
    verdict: Verdict = action
    j = judgement or judge(store, flag_key, environment)
    refused = refusal(verdict, j, approved)
    forced = False
    if refused is not None:
        if not force:
            raise ConflictError(
                f"{action} refused: {refused} (a key allowed to force may override with a reason)"
            )
        if not can_force:
            raise ForbiddenError("this key may not force an action against the plan")
        if not reason:
            raise ValidationError.at("reason", "a forced action needs a reason")
        forced = True
    flag = j.flag
    acted = _acted_flag(flag, environment, verdict, j, percent)
    changes: list[FlagChange] = []
    if acted is not None:
        if acted == flag:
            raise ConflictError(f"{action} changes nothing: the flag is already in that state (unchanged)")
        acted = msgspec.structs.replace(acted, version=flag.version + 1)
        loser = None
        if verdict == "cleanup":
            loser = j.state.control if j.state.last_decision == "promote" else j.state.candidate
        text = reason or j.recommendation.sentence
        if loser:
            text = f"{text} (losing branch: {loser})"
        changes.append(
            FlagChange(
                change_id=uuid.uuid4().hex,
                ts=clock(),
                environment=environment if verdict != "cleanup" else None,
                flag_key=flag.key,
                version=acted.version,
                actor=actor,
                action=_CHANGE_ACTION[verdict],
                before=msgspec.to_builtins(flag),
                after=msgspec.to_builtins(acted),
                reason=("forced: " if forced else "") + text,
            )
        )
    readout = j.readout
    statistics = _sufficient_statistics(store, readout.get("sql"))
    earlier = [d.ts for d in store.decisions(flag.key) if d.environment == environment]
    gates = [
        gate_json(g) for g in store.eval_gates(flag.key, environment) if not earlier or g.ts > earlier[-1]
    ]
    decision = Decision(
        decision_id=uuid.uuid4().hex,
        ts=clock(),
        environment=environment,
        flag_key=flag.key,
        state=verdict,
        actor=actor,
        forced=forced,
        reason=reason,
        recommendation=j.recommendation.to_json(),
        evidence={
            **{k: v for k, v in readout.items() if k != "sql"},
            "sufficient_statistics": statistics,
            "eval_gates": gates,
        },
        sql=readout.get("sql"),
        fingerprint=fingerprint(readout, flag),
        flag_version=flag.version,
        rollout_before=msgspec.to_builtins(flag.environments[environment]),
        rollout_after=msgspec.to_builtins(acted.environments[environment]) if acted is not None else None,
    )
    return store.record_decision(decision, acted, flag.version if acted is not None else None, changes)


def decision_answer(store: Store, decision: Decision) -> dict[str, Any]:
    """What `decide` answers (CLI and HTTP alike): the decision, its place in the audit chain."""
    return {
        "decision_id": decision.decision_id,
        "state": decision.state,
        "forced": decision.forced,
        "flag_version": decision.flag_version,
        "rollout_after": decision.rollout_after,
        "recommendation": decision.recommendation,
        "seq": decision.seq,
        "hash": decision.hash,
        "audit_head": audit.head(store),
        "eval_gates": (decision.evidence or {}).get("eval_gates", []),
    }


def gate_json(record: GateRecord) -> dict[str, Any]:
    out: dict[str, Any] = msgspec.to_builtins(record)
    return out


def run_eval_gate(
    store: Store, flag_key: str, request: GateRequest, actor: str, clock: Clock = utcnow
) -> dict[str, Any]:
    """Run the eval gate on the request's items or on an offline run's scores in `evals`, and
    record the result with the flag: evidence its next decision carries (docs/decisions.md)."""
    request.check()
    flag = control.get_flag(store, flag_key)
    if request.environment not in flag.environments:
        raise ValidationError.at("environment", f"{flag_key!r} has no environment {request.environment!r}")
    variations = [v.key for v in flag.variations]
    for field in ("control", "candidate"):
        if getattr(request, field) not in variations:
            raise ValidationError.at(
                field,
                f"{getattr(request, field)!r} is not a variation of {flag_key!r} ({', '.join(variations)})",
            )
    if request.items is not None:
        rows = request.items
    else:
        assert request.run_id is not None
        rows = analysis_fetch(store, eval_run_query(request.environment, request.run_id))
        if not rows:
            raise ValidationError.at(
                "run_id", f"no eval scores with run_id {request.run_id!r} in {request.environment!r}"
            )
    result = request.run(read_scores(rows, (request.control, request.candidate)))
    record = GateRecord(
        gate_id=uuid.uuid4().hex, ts=clock(), flag_key=flag.key, environment=request.environment, actor=actor,
        passed=result.passed, result=result.to_json(), run_id=request.run_id, source=request.source,
    )  # fmt: skip
    store.record_gate(record)
    return gate_json(record)


def eval_gates(store: Store, flag_key: str, environment: str | None = None) -> list[dict[str, Any]]:
    control.get_flag(store, flag_key)
    return [gate_json(g) for g in store.eval_gates(flag_key, environment)]


def check_growth(
    store: Store,
    flag_key: str,
    environment: str,
    variation: str,
    percent: float,
    force: bool,
    can_force: bool,
) -> bool:
    """Refuse (409) a ramp that grows the candidate against the plan; True when it was forced."""
    flag = control.get_flag(store, flag_key)
    if environment not in flag.environments:
        return False
    plan, _ = plan_for(store, flag, environment)
    candidate = candidate_of(flag, environment, plan)
    env = flag.environments[environment]
    if variation != candidate or variation == env.default_variation:
        return False
    if percent <= _weights(flag, environment).get(variation, 0.0):
        return False  # shrinking the candidate is always allowed
    j = judge(store, flag_key, environment)
    refused = refusal("expand", j)
    if refused is None:
        return False
    if not force:
        raise ConflictError(f"ramp refused: {refused} (a key allowed to force may override with a reason)")
    if not can_force:
        raise ForbiddenError("this key may not force an action against the plan")
    return True


def check_restore(store: Store, flag_key: str, environment: str, force: bool, can_force: bool) -> bool:
    """Refuse (409) restoring a killed flag while a guardrail is breached or a gate fails."""
    flag = control.get_flag(store, flag_key)
    if environment not in flag.environments or flag.environments[environment].enabled:
        return False
    j = judge(store, flag_key, environment, state_override=lambda s: replace(s, enabled=True))
    if j.recommendation.action not in ("rollback", "pause"):
        return False
    if not force:
        raise ConflictError(
            f"restore refused: {j.recommendation.sentence} (a key allowed to force may override with a reason)"
        )
    if not can_force:
        raise ForbiddenError("this key may not force an action against the plan")
    return True


def _forced_reason(forced: bool, reason: str | None) -> str | None:
    if forced and not reason:
        raise ValidationError.at("reason", "a forced action needs a reason")
    return f"forced: {reason}" if forced else reason


def ramp_flag(
    store: Store,
    flag_key: str,
    environment: str,
    variation: str,
    percent: float,
    actor: str,
    *,
    donor: str | None = None,
    reason: str | None = None,
    expected_version: int | None = None,
    force: bool = False,
    can_force: bool = False,
) -> tuple[Flag, bool]:
    """Set a variation's share, refused (409) when it grows the candidate against the plan unless
    forced with a reason by a key allowed to force. Returns the flag and whether it changed."""
    forced = check_growth(store, flag_key, environment, variation, percent, force, can_force)
    text = _forced_reason(forced, reason)
    before = control.get_flag(store, flag_key).version
    flag = control.ramp(
        store, flag_key, environment, variation, percent, actor,
        donor=donor, reason=text, expected_version=expected_version,
    )  # fmt: skip
    return flag, flag.version != before


def kill_flag(
    store: Store, flag_key: str, environment: str, actor: str, reason: str | None = None
) -> tuple[Flag, bool]:
    """Serve the off variation to everyone (never refused). Returns the flag and whether it changed."""
    before = control.get_flag(store, flag_key).version
    flag = control.kill(store, flag_key, environment, actor, reason)
    return flag, flag.version != before


def restore_flag(
    store: Store,
    flag_key: str,
    environment: str,
    actor: str,
    reason: str | None = None,
    force: bool = False,
    can_force: bool = False,
) -> tuple[Flag, bool]:
    """Undo a kill, refused (409) while a guardrail is breached or a gate fails unless forced with
    a reason by a key allowed to force. Returns the flag and whether it changed."""
    forced = check_restore(store, flag_key, environment, force, can_force)
    text = _forced_reason(forced, reason)
    before = control.get_flag(store, flag_key).version
    flag = control.restore(store, flag_key, environment, actor, text)
    return flag, flag.version != before


def decisions(store: Store, flag_key: str) -> list[dict[str, Any]]:
    control.get_flag(store, flag_key)
    return [
        {
            "decision_id": d.decision_id,
            "ts": d.ts.isoformat(),
            "environment": d.environment,
            "state": d.state,
            "actor": d.actor,
            "forced": d.forced,
            "reason": d.reason,
            "recommendation": d.recommendation,
            "flag_version": d.flag_version,
            "fingerprint": d.fingerprint,
            "sql": d.sql,
            "hash": d.hash,
        }
        for d in store.decisions(flag_key)
    ]


def _plain_value(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    return float(value) if type(value).__name__ == "Decimal" else value


def _sufficient_statistics(store: Store, sql: str | None) -> dict[str, Any] | None:
    """The rows the decision's SQL returns now, and their digest: what a replay compares."""
    if not sql:
        return None
    names, rows = store.read(sql.rstrip().rstrip(";"), timeout_s=store.sandbox.timeout_s)
    plain = [[_plain_value(v) for v in row] for row in rows]
    digest = hashlib.sha256(msgspec.json.encode([names, plain])).hexdigest()
    return {"columns": names, "rows": plain, "sha256": digest}


def replay(store: Store, decision_id: str) -> dict[str, Any]:
    """Re-run a recorded decision's SQL on the data now: `matches` when the figures are the same."""
    found = [d for d in store.decisions() if d.decision_id == decision_id]
    if not found:
        raise NotFoundError(f"no decision {decision_id!r}")
    decision = found[0]
    recorded = (decision.evidence or {}).get("sufficient_statistics")
    if not decision.sql or not recorded:
        raise ValidationError.at("decision", "it was made without metric definitions; nothing to replay")
    now = _sufficient_statistics(store, decision.sql)
    assert now is not None
    differences = _differences(recorded, now)
    return {
        "decision_id": decision_id,
        "matches": not differences,
        "differences": differences[:20],
        "recorded_sha256": recorded["sha256"],
        "replayed_sha256": now["sha256"],
        "rows": len(now["rows"]),
    }


REPLAY_TOLERANCE = 1e-9
"""Relative: a parallel engine may sum floating-point numbers in another order on each run."""


def _differences(recorded: Mapping[str, Any], now: Mapping[str, Any]) -> list[str]:
    if recorded["columns"] != now["columns"]:
        return [f"columns differ: {recorded['columns']} then, {now['columns']} now"]
    if len(recorded["rows"]) != len(now["rows"]):
        return [f"{len(recorded['rows'])} rows then, {len(now['rows'])} now"]
    out = []
    for i, (old, new) in enumerate(zip(recorded["rows"], now["rows"], strict=True)):
        for column, a, b in zip(recorded["columns"], old, new, strict=True):
            close = (
                isinstance(a, float) and isinstance(b, float)
                and abs(a - b) <= REPLAY_TOLERANCE * max(abs(a), abs(b), 1e-300)
            )  # fmt: skip
            if a != b and not close:
                out.append(f"row {i} {column}: {a!r} then, {b!r} now")
    return out


# -- lifecycle ---------------------------------------------------------------------------------

_LAST_EXPOSURE = (
    "SELECT flag_key, environment, MAX(ts) AS last_ts FROM exposures GROUP BY flag_key, environment"
)


def stale_flags(store: Store, days: float = 30.0, now: datetime | None = None) -> list[dict[str, Any]]:
    """Flags to clean up: fully rolled out or rolled back for more than `days`, without
    exposures for `days`, or decided (promote/rollback) with the plan's cleanup due."""
    moment = now or utcnow()
    horizon = days * 86400
    _, rows = store.read(_LAST_EXPOSURE)
    last_seen = {(r[0], r[1]): r[2] for r in rows}
    out: list[dict[str, Any]] = []
    for flag in store.list_flags():
        changes = store.flag_changes(flag.key)
        for environment, env in flag.environments.items():
            reasons: list[str] = []
            weights = env.rollout.weights if env.rollout else {env.default_variation: 100.0}
            serving = [v for v, w in weights.items() if w > 0]
            phases = phases_from_changes(changes, environment)
            settled_since = phases[-1].start if phases else None
            if len(serving) == 1 and settled_since is not None:
                age = (moment - settled_since).total_seconds()
                if age > horizon:
                    state = (
                        "rolled back" if serving[0] == env.default_variation else f"fully on {serving[0]!r}"
                    )
                    reasons.append(f"{state} for {age / 86400:.0f} days")
            seen = last_seen.get((flag.key, environment))
            if seen is None:
                created = changes[0].ts if changes else None
                if created is not None and (moment - created).total_seconds() > horizon:
                    reasons.append(f"no exposures since it was created {(moment - created).days} days ago")
            elif (moment - seen).total_seconds() > horizon:
                reasons.append(f"no exposures for {(moment - seen).total_seconds() / 86400:.0f} days")
            plan, _ = plan_for(store, flag, environment)
            acted = [
                d for d in store.decisions(flag.key) if d.environment == environment and d.state != "continue"
            ]
            if acted and acted[-1].state in ("promote", "rollback"):
                due = acted[-1].ts.timestamp() + plan.cleanup_after_days * 86400
                if moment.timestamp() >= due:
                    reasons.append(
                        f"{acted[-1].state} decided {(moment - acted[-1].ts).days} days ago; cleanup is due"
                    )
            if reasons:
                out.append({"flag_key": flag.key, "environment": environment, "reasons": reasons})
    return out


# -- change requests ---------------------------------------------------------------------------


def _request_json(r: ChangeRequest) -> dict[str, Any]:
    return {
        "request_id": r.request_id,
        "flag_key": r.flag_key,
        "environment": r.environment,
        "action": r.action,
        "percent": r.percent,
        "reason": r.reason,
        "proposed_by": r.proposed_by,
        "proposed_at": r.proposed_at.isoformat(),
        "state": r.state,
        "approvals": r.approvals,
        "required": r.required,
        "decided_at": r.decided_at.isoformat() if r.decided_at else None,
        "decision_id": r.decision_id,
    }


def propose(
    store: Store,
    flag_key: str,
    environment: str,
    action: str,
    proposer_id: str,
    proposer: str,
    reason: str | None = None,
    percent: float | None = None,
    clock: Clock = utcnow,
) -> dict[str, Any]:
    """Open a change request for an expansion or promotion the plan says needs approval."""
    if action not in ("expand", "promote"):
        raise ValidationError.at("action", "expand or promote (other actions need no approval)")
    flag = _flag_in(store, flag_key, environment)
    plan, _ = plan_for(store, flag, environment)
    if plan.approvers == 0:
        raise ValidationError.at("action", f"the plan for {environment} needs no approval: decide directly")
    request = ChangeRequest(
        request_id=uuid.uuid4().hex[:16],
        flag_key=flag_key,
        environment=environment,
        action=action,
        percent=percent,
        reason=reason,
        proposed_by=proposer,
        proposer_id=proposer_id,
        proposed_at=clock(),
        state="proposed",
        approvals=[],
        required=plan.approvers,
    )
    store.save_request(request, None)
    return _request_json(request)


def _open_request(store: Store, request_id: str) -> ChangeRequest:
    request = store.get_request(request_id)
    if request is None:
        raise NotFoundError(f"no change request {request_id!r}")
    if request.state != "proposed":
        raise ConflictError(f"change request {request_id} is already {request.state}")
    return request


def approve(
    store: Store, request_id: str, approver_id: str, approver: str, clock: Clock = utcnow
) -> dict[str, Any]:
    """Add an approval from someone other than the proposer; with enough, the action is applied
    (checked against the plan again at that moment) and recorded with everyone who approved."""
    request = _open_request(store, request_id)
    if approver_id == request.proposer_id:
        raise ForbiddenError("the proposer cannot approve their own change request")
    if any(a["id"] == approver_id for a in request.approvals):
        raise ConflictError("you have already approved this change request")
    approvals = [*request.approvals, {"id": approver_id, "by": approver, "ts": clock().isoformat()}]
    if len(approvals) < request.required:
        updated = replace(request, approvals=approvals)
        store.save_request(updated, "proposed")
        return _request_json(updated)
    names = ", ".join(a["by"] for a in approvals)
    decision = decide_action(
        store,
        request.flag_key,
        request.environment,
        request.action,
        f"{request.proposed_by}, approved by {names}",
        request.reason,
        percent=request.percent,
        clock=clock,
        approved=True,
    )
    applied = replace(
        request, approvals=approvals, state="applied", decided_at=clock(), decision_id=decision.decision_id
    )
    store.save_request(applied, "proposed")
    return _request_json(applied)


def reject(
    store: Store, request_id: str, rejecter_id: str, rejecter: str, reason: str | None, clock: Clock = utcnow
) -> dict[str, Any]:
    request = _open_request(store, request_id)
    rejected = replace(
        request,
        state="rejected",
        decided_at=clock(),
        approvals=[
            *request.approvals,
            {"id": rejecter_id, "by": rejecter, "rejected": True, "reason": reason},
        ],
    )
    store.save_request(rejected, "proposed")
    return _request_json(rejected)


def requests(store: Store, flag_key: str) -> list[dict[str, Any]]:
    control.get_flag(store, flag_key)
    return [_request_json(r) for r in store.list_requests(flag_key)]
