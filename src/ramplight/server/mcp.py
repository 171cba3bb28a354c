"""The MCP server at `/mcp`: the admin API's release operations as tools for AI coding agents
(Model Context Protocol, Streamable HTTP), under the same keys and plan gates as `/api/…`.

Each HTTP request to `/mcp` is authenticated as an admin route is (an SDK key or no key is
refused before MCP reads it); its key rides in the request scope to the tool, which calls the
same `release`/`control`/`analysis` function as the route. A refusal (409 against the plan, 403
for a force the key may not make, 404, 422) comes back as a tool error with its code and
message. docs/mcp.md lists the tools.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Annotated, Any, Literal, ParamSpec, TypeVar

import msgspec
from mcp.server import MCPServer
from mcp.server.mcpserver import Context
from mcp.server.mcpserver.exceptions import ToolError
from mcp.types import ToolAnnotations
from pydantic import BaseModel, Field
from starlette.requests import Request
from starlette.types import Receive, Scope, Send

from ramplight import control, release
from ramplight.analysis import service as analysis
from ramplight.analysis.options import ReadoutOptions
from ramplight.core.errors import RamplightError
from ramplight.server.auth import actor, admin_key
from ramplight.server.responses import error_response
from ramplight.server.state import ServerState
from ramplight.settings import Settings
from ramplight.store.base import ApiKey

PATH = "/mcp"
_CALLER = "ramplight.mcp.caller"

INSTRUCTIONS = """Ramplight holds feature flags for AI behavior, the evidence of each rollout (exposures, \
outcomes, eval scores, traces) and a measurement plan per flag and environment. Read before you act: \
get_readout gives the recommendation (rollback, pause, continue, expand, promote, cleanup) with its \
reasons and data quality, get_sql the exact statement behind it. apply_decision acts on the plan: an \
action against it is refused with the reason; `force` overrides only with a key allowed to force and a \
reason, and is recorded as forced. Every change is in the audit log under this key's name."""


@dataclass(frozen=True, slots=True)
class Caller:
    state: ServerState
    key: ApiKey


def _caller(ctx: Context) -> Caller:
    request = ctx.request_context.request
    assert isinstance(request, Request), "Ramplight's MCP tools are served over HTTP only"
    caller: Caller = request.scope["state"][_CALLER]
    return caller


P = ParamSpec("P")
R = TypeVar("R")


def _refusals(tool: Callable[P, R]) -> Callable[P, R]:
    """A Ramplight error as a tool error the agent reads (`conflict: expand refused: …`)."""

    @functools.wraps(tool)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return tool(*args, **kwargs)
        except RamplightError as exc:
            problems = "; ".join(p.render() for p in getattr(exc, "problems", ()))
            detail = f" ({problems})" if problems and problems not in exc.message else ""
            raise ToolError(f"{exc.code}: {exc.message}{detail}") from exc

    return wrapper


# -- inputs and outputs -------------------------------------------------------------------------

FlagKey = Annotated[str, Field(min_length=1, max_length=200, description="the flag's key")]
Environment = Annotated[
    str, Field(min_length=1, max_length=100, description="the environment, e.g. production or staging")
]
Reason = Annotated[
    str | None,
    Field(default=None, max_length=1000, description="why, in a sentence; recorded in the audit log"),
]


class FlagSummary(BaseModel):
    key: str
    type: str
    assignment_unit: str
    description: str
    version: int = Field(description="the flag's version; every change writes a new one")
    archived: bool
    configured: bool = Field(description="whether the flag has a configuration in this environment")
    enabled: bool | None = Field(description="false when killed: everyone gets the off variation")
    paused: bool | None = Field(description="a paused release keeps its weights but may not grow")
    default_variation: str | None
    off_variation: str | None
    weights: dict[str, float] = Field(description="percent of units per variation (the ramp)")
    variations: list[str]


class FlagList(BaseModel):
    environment: str
    flags: list[FlagSummary]


class Recommendation(BaseModel):
    action: str = Field(description="rollback, pause, continue, expand, promote or cleanup")
    sentence: str = Field(description="the recommendation and its main reason in one sentence")
    reasons: list[dict[str, Any]]
    blockers: list[dict[str, Any]] = Field(description="why the ramp may not grow now (empty: it may)")
    rule: str
    plan_source: str = Field(description="'plan' or 'default' (no plan: only safety rules apply)")
    stage: int | None
    next_percent: float | None
    guardrails: list[dict[str, Any]]
    goals: list[dict[str, Any]]


class Readout(BaseModel):
    flag_key: str
    environment: str
    generated_at: str
    analysis: str
    recommendation: Recommendation
    plan: dict[str, Any] = Field(description="the plan in force: candidate, stages, current stage, paused")
    data_quality: dict[str, Any] = Field(
        description="exposed units, joinable events, units in two variations"
    )
    srm_overall: dict[str, Any] | None = Field(description="sample ratio mismatch across ramp phases")
    variations: list[dict[str, Any]] = Field(description="units and fallback rate per variation")
    phases: list[dict[str, Any]]
    metrics: list[dict[str, Any]] = Field(description="per metric: per-variation values and comparisons")
    correction: dict[str, Any] | None
    drift: dict[str, Any] | None = None
    loading: dict[str, Any] | None = Field(
        default=None, description="set when acknowledged evidence is still being loaded"
    )


class ReadoutSql(BaseModel):
    flag_key: str
    environment: str
    dialect: str
    sql: str


class Plan(BaseModel):
    source: Literal["plan", "default"] = Field(description="'default' when the flag has no plan here")
    plan: dict[str, Any]


class FlagAction(BaseModel):
    changed: bool = Field(description="false when the flag was already so (no version written)")
    flag: dict[str, Any]


def _summary(flag: Any, environment: str) -> FlagSummary:
    env = flag.environments.get(environment)
    weights = dict(env.rollout.weights) if env and env.rollout else {}
    if env and not weights:
        weights = {env.default_variation: 100.0}
    return FlagSummary(
        key=flag.key,
        type=flag.type,
        assignment_unit=flag.assignment_unit,
        description=flag.description,
        version=flag.version,
        archived=flag.archived,
        configured=env is not None,
        enabled=env.enabled if env else None,
        paused=env.paused if env else None,
        default_variation=env.default_variation if env else None,
        off_variation=env.off_variation if env else None,
        weights=weights,
        variations=flag.variation_keys(),
    )


def _plain(value: Any) -> dict[str, Any]:
    out: dict[str, Any] = msgspec.to_builtins(value)
    return out


# -- tools --------------------------------------------------------------------------------------

_READ = ToolAnnotations(read_only_hint=True, open_world_hint=False)


@_refusals
def list_flags(
    ctx: Context, environment: Environment = "production", include_archived: bool = False
) -> FlagList:
    """List the feature flags with their state in one environment: enabled or killed, paused, and the
    ramp (percent of units per variation). Start here to find a flag's key."""
    st = _caller(ctx).state
    flags = st.store.list_flags(include_archived=include_archived)
    return FlagList(environment=environment, flags=[_summary(f, environment) for f in flags])


@_refusals
def get_flag(ctx: Context, flag_key: FlagKey) -> dict[str, Any]:
    """The whole flag: its variations (and their values), and per environment the targeting rules,
    the rollout weights, the default and off variations, enabled and paused."""
    return _plain(control.get_flag(_caller(ctx).state.store, flag_key))


@_refusals
def get_readout(
    ctx: Context,
    flag_key: FlagKey,
    environment: Environment = "production",
    segment: Annotated[
        str | None,
        Field(
            default=None, max_length=100, pattern=r"^[A-Za-z0-9_\-]+$", description="split by this attribute"
        ),
    ] = None,
    phase: Annotated[int | None, Field(default=None, ge=0, description="only this ramp phase")] = None,
    served: Annotated[bool, Field(description="group by served instead of assigned variation")] = False,
    bayes: Annotated[bool, Field(description="add chance-to-win and expected loss")] = False,
) -> Readout:
    """Read out a rollout: the recommendation first (rollback, pause, continue, expand, promote or
    cleanup) with its reasons and blockers, then data quality (sample ratio, joinability, fallbacks)
    and each metric against control (effect, confidence and always-valid intervals, guardrails).
    Computed from the evidence now; the SQL behind it is get_sql's."""
    st = _caller(ctx).state
    behind = st.catch_up()
    options = ReadoutOptions(segment=segment, phase=phase, served=served, bayes=bayes)
    report = release.report(st.store, flag_key, environment, None, options)
    return Readout(
        flag_key=report["flag_key"],
        environment=report["environment"],
        generated_at=report["generated_at"],
        analysis=report["analysis"],
        recommendation=Recommendation(**report["recommendation"]),
        plan=report["plan"],
        data_quality=report["data_quality"],
        srm_overall=report.get("srm_overall"),
        variations=report.get("variations", []),
        phases=report.get("phases", []),
        metrics=report.get("metrics", []),
        correction=report.get("correction"),
        drift=report.get("drift"),
        loading=behind,
    )


@_refusals
def get_sql(
    ctx: Context,
    flag_key: FlagKey,
    environment: Environment = "production",
    dialect: Literal["duckdb", "postgres", "clickhouse"] = "duckdb",
    metrics: Annotated[
        list[str] | None, Field(default=None, description="metric keys (default: every defined metric)")
    ] = None,
    segment: Annotated[str | None, Field(default=None, max_length=100, pattern=r"^[A-Za-z0-9_\-]+$")] = None,
) -> ReadoutSql:
    """The exact SQL statement behind a readout, rendered for a dialect (as `ramplight sql` prints
    it): one statement returning the sufficient statistics and the data-quality counts."""
    st = _caller(ctx).state
    sql = analysis.readout_sql(st.store, flag_key, environment, metrics, dialect, segment)
    return ReadoutSql(flag_key=flag_key, environment=environment, dialect=dialect, sql=sql)


@_refusals
def list_metrics(ctx: Context) -> list[dict[str, Any]]:
    """The metric definitions (event counts, sums, means, ratios, quantiles, eval scores, span
    latency/tokens/cost, SQL), with their direction and guardrail margin."""
    return [_plain(m) for m in _caller(ctx).state.store.list_metrics()]


@_refusals
def get_plan(ctx: Context, flag_key: FlagKey, environment: Environment = "production") -> Plan:
    """The measurement plan that turns a readout into a recommendation: goals, guardrails with their
    margins and actions, data-quality gates, the ramp stages, approvals, the guardian's rights.
    Without a stored plan, the default plan that applies."""
    st = _caller(ctx).state
    flag = control.get_flag(st.store, flag_key)
    plan, source = release.plan_for(st.store, flag, environment)
    return Plan(source=source, plan=_plain(plan))


@_refusals
def get_timeline(ctx: Context, flag_key: FlagKey, environment: Environment = "production") -> dict[str, Any]:
    """The release timeline: every change (ramps, kills, plan edits), decision and eval gate with
    who and why, oldest first, and hourly exposed units and plan-metric series per variation."""
    st = _caller(ctx).state
    st.catch_up()
    return release.release_timeline(st.store, flag_key, environment)


@_refusals
def list_decisions(ctx: Context, flag_key: FlagKey) -> list[dict[str, Any]]:
    """Decisions recorded for the flag, oldest first: action, actor, forced, reason and what was
    recommended at that moment."""
    decisions = release.decisions(_caller(ctx).state.store, flag_key)
    return [{k: v for k, v in d.items() if k != "sql"} for d in decisions]


@_refusals
def apply_decision(
    ctx: Context,
    flag_key: FlagKey,
    action: Annotated[
        Literal["expand", "rollback", "pause", "promote", "cleanup", "continue"],
        Field(
            description="expand: the candidate to the next stage (or `percent`); rollback: the default "
            "variation to everyone; pause: freeze the weights; promote: the candidate becomes the "
            "default at 100 %; cleanup: archive the flag after a promote or rollback; continue: "
            "record the decision, change nothing"
        ),
    ],
    environment: Environment = "production",
    reason: Reason = None,
    force: Annotated[
        bool,
        Field(
            description="act against the plan: only with a key allowed to force and a reason; recorded "
            "as forced. Do not force unless a person asked you to."
        ),
    ] = False,
    percent: Annotated[
        float | None, Field(default=None, gt=0, le=100, description="expand to this share instead")
    ] = None,
) -> dict[str, Any]:
    """Apply a release decision and record it with the readout and SQL it was made on, in the audit
    log. Refused with the reason when it goes against the plan (a breached guardrail, a failed gate,
    a pause, a stage not complete, approvals required): then read get_readout, or propose_decision
    when the plan needs approvals. Rollback and pause are never refused."""
    caller = _caller(ctx)
    st, key = caller.state, caller.key
    st.catch_up()
    decision = release.decide_action(
        st.store, flag_key, environment, action, actor(key), reason,
        force=force, can_force=key.can_force, percent=percent,
    )  # fmt: skip
    st.invalidate()
    return release.decision_answer(st.store, decision)


@_refusals
def propose_decision(
    ctx: Context,
    flag_key: FlagKey,
    action: Literal["expand", "promote"],
    environment: Environment = "production",
    reason: Reason = None,
    percent: Annotated[float | None, Field(default=None, gt=0, le=100)] = None,
) -> dict[str, Any]:
    """Open a change request for an expansion or promotion that the plan says needs approval by
    other people (plan `approvers`); the last approval applies it. Refused when no approval is
    needed: use apply_decision."""
    caller = _caller(ctx)
    key = caller.key
    return release.propose(
        caller.state.store, flag_key, environment, action, key.id, actor(key), reason, percent
    )


@_refusals
def kill_flag(
    ctx: Context, flag_key: FlagKey, environment: Environment = "production", reason: Reason = None
) -> FlagAction:
    """Kill switch: serve the off variation to everyone in the environment at once. Never refused."""
    caller = _caller(ctx)
    st = caller.state
    flag, changed = release.kill_flag(st.store, flag_key, environment, actor(caller.key), reason)
    st.invalidate()
    return FlagAction(changed=changed, flag=_plain(flag))


@_refusals
def restore_flag(
    ctx: Context,
    flag_key: FlagKey,
    environment: Environment = "production",
    reason: Reason = None,
    force: Annotated[bool, Field(description="restore despite a breached guardrail or failed gate")] = False,
) -> FlagAction:
    """Undo a kill: serve the flag's rollout again. Refused while a guardrail is breached or a gate
    fails, unless forced with a reason by a key allowed to force."""
    caller = _caller(ctx)
    st, key = caller.state, caller.key
    st.catch_up()
    flag, changed = release.restore_flag(
        st.store, flag_key, environment, actor(key), reason, force, key.can_force
    )
    st.invalidate()
    return FlagAction(changed=changed, flag=_plain(flag))


_TOOLS: list[tuple[Callable[..., Any], ToolAnnotations]] = [
    (list_flags, _READ),
    (get_flag, _READ),
    (get_readout, _READ),
    (get_sql, _READ),
    (list_metrics, _READ),
    (get_plan, _READ),
    (get_timeline, _READ),
    (list_decisions, _READ),
    (apply_decision, ToolAnnotations(destructive_hint=True, idempotent_hint=False, open_world_hint=False)),
    (propose_decision, ToolAnnotations(destructive_hint=False, idempotent_hint=False, open_world_hint=False)),
    (kill_flag, ToolAnnotations(destructive_hint=True, idempotent_hint=True, open_world_hint=False)),
    (restore_flag, ToolAnnotations(destructive_hint=True, idempotent_hint=True, open_world_hint=False)),
]


def build_server() -> MCPServer:
    root = logging.getLogger()
    level, handlers = root.level, list(root.handlers)
    server: MCPServer = MCPServer("ramplight", instructions=INSTRUCTIONS, version="0.1.0")
    # MCPServer configures the root logger (basicConfig with its own handler at INFO): the
    # process's logging is not the SDK's to choose, so it is put back as it was.
    root.setLevel(level)
    root.handlers[:] = handlers
    for tool, hints in _TOOLS:
        server.add_tool(tool, annotations=hints)
    return server


class McpEndpoint:
    """The ASGI endpoint at `/mcp`: the admin guard, then the SDK's Streamable HTTP transport
    (stateless, JSON answers: each request stands alone and carries its own key)."""

    def __init__(self, settings: Settings) -> None:
        self.server = build_server()
        self.app = self.server.streamable_http_app(
            streamable_http_path=PATH, stateless_http=True, json_response=True, host=settings.host
        )

    def run(self) -> AbstractAsyncContextManager[None]:
        """The transport's task group; entered in the app's lifespan."""
        running: AbstractAsyncContextManager[None] = self.server.session_manager.run()
        return running

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        st: ServerState = scope["app"].state.ramplight
        try:
            key = admin_key(st, Request(scope).headers.get("authorization"))
        except RamplightError as exc:
            await error_response(exc)(scope, receive, send)
            return
        state = {**scope.get("state", {}), _CALLER: Caller(st, key)}
        await self.app({**scope, "state": state}, receive, send)
