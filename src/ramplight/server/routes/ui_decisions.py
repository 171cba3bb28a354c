"""A decision's own page: what was decided, by whom and why, the recommendation and the evidence
it was made on (the readout snapshot recorded with it: metrics, data quality, eval gates), the
rollout before and after, its place in the audit chain, the SQL — and a Replay button that
re-runs that SQL on today's data and says whether the figures are still the same
(`release.replay`, what `POST /api/decisions/{id}/replay` does).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Form, Request
from fastapi.responses import Response

from ramplight import release
from ramplight.core.audit import Decision
from ramplight.core.errors import RamplightError
from ramplight.server import room
from ramplight.server.routes import ui
from ramplight.server.sessions import SESSION_COOKIE, csrf_ok, principal, state

router = APIRouter(include_in_schema=False)


def _weights(config: Any) -> dict[str, float]:
    if not isinstance(config, dict):
        return {}
    rollout = config.get("rollout") or {}
    weights = rollout.get("weights") or {config.get("default_variation", "?"): 100.0}
    return {str(k): float(v) for k, v in weights.items()}


def _page(request: Request, flag_key: str, decision_id: str, replayed: dict[str, Any] | None = None,
          error: str | None = None, status_code: int = 200) -> Response:  # fmt: skip
    me = principal(request)
    if me is None:
        return ui._to_login(request)
    store = state(request).store
    found: list[Decision] = [d for d in store.decisions(flag_key) if d.decision_id == decision_id]
    if not found:
        return ui._refused(request, me, f"Flag {flag_key!r} has no decision {decision_id!r}.", 404)
    decision = found[0]
    evidence = decision.evidence if isinstance(decision.evidence, dict) else {}
    recommendation = decision.recommendation if isinstance(decision.recommendation, dict) else {}
    flag = store.get_flag(flag_key)
    candidate = None
    if flag is not None and decision.environment in flag.environments:
        candidate = release.candidate_of(
            flag, decision.environment, release.plan_for(store, flag, decision.environment)[0]
        )
    metrics = room.metric_rows(evidence, recommendation, candidate) if evidence.get("metrics") else []
    context = {
        "flag_key": flag_key,
        "decision": decision,
        "recommendation": recommendation,
        "evidence": evidence,
        "quality": evidence.get("data_quality") or {},
        "gates": evidence.get("eval_gates") or [],
        "metrics": metrics,
        "before": _weights(decision.rollout_before),
        "after": _weights(decision.rollout_after) if decision.rollout_after is not None else None,
        "replayable": bool(decision.sql and evidence.get("sufficient_statistics")),
        "replayed": replayed,
        "error": error,
    }
    return ui._page(request, "decision.html", context, me, status_code)


@router.get("/flags/{flag_key}/decisions/{decision_id}")
def decision_page(request: Request, flag_key: str, decision_id: str) -> Response:
    return _page(request, flag_key, decision_id)


@router.post("/flags/{flag_key}/decisions/{decision_id}/replay")
def replay(request: Request, flag_key: str, decision_id: str, csrf: Annotated[str, Form()] = "") -> Response:
    """Re-run the decision's SQL on today's data (read-only: any signed-in role may)."""
    me = principal(request)
    if me is None:
        return ui._to_login(request)
    if not csrf_ok(request.cookies.get(SESSION_COOKIE), csrf):
        return ui._refused(request, me, ui.FORGED, 403)
    st = state(request)
    if not any(d.decision_id == decision_id for d in st.store.decisions(flag_key)):
        return ui._refused(request, me, f"Flag {flag_key!r} has no decision {decision_id!r}.", 404)
    try:
        st.catch_up()
        answer = release.replay(st.store, decision_id)
    except RamplightError as exc:
        return _page(request, flag_key, decision_id, error=ui._message(exc), status_code=exc.status_code)
    return _page(request, flag_key, decision_id, replayed=answer)
