"""The decide-and-act loop through the real server: a plan, a recommendation that leads the
readout, a ramp refused against the plan, a decision that acts and keeps its evidence."""

from __future__ import annotations

import random
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from ramplight.core.audit import broken_links
from tests.factories import RunningServer

FLAG = "support_assistant_profile"


def store_of(server: RunningServer) -> Any:
    return server.thread.server.config.app.state.ramplight.store


def send_traffic(server: RunningServer, units: int, candidate_slowdown: float, seed: int = 1) -> None:
    """`units` conversations split by the flag's weights; candidate latency × (1 + slowdown)."""
    rng = random.Random(seed)
    config = server.admin.get(f"/api/flags/{FLAG}").json()["environments"]["production"]["rollout"]["weights"]
    share = config.get("candidate", 0) / 100
    now = datetime.now(UTC).isoformat()
    exposures, events = [], []
    for i in range(units):
        unit = f"s{seed}-c{i}"
        variation = "candidate" if rng.random() < share else "control"
        exposures.append({"ts": now, "flag_key": FLAG, "assignment_unit": "conversation", "unit_id": unit,
                          "assigned_variation": variation, "served_variation": variation})  # fmt: skip
        latency = rng.gauss(1000, 100) * (1 + candidate_slowdown if variation == "candidate" else 1)
        events.append({"ts": now, "name": "latency_ms", "unit_id": unit, "assignment_unit": "conversation",
                       "value": latency})  # fmt: skip
    key = server.sdk_key()
    with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {key}"}, timeout=60) as sdk:
        response = sdk.post("/ingest/batch", json={"exposures": exposures, "events": events})
        assert response.status_code == 200 and not response.json()["rejected"]


@pytest.fixture
def planned(server: RunningServer) -> RunningServer:
    server.create_flag()
    metric = {"type": "event", "event": "latency_ms", "aggregation": "mean", "direction": "decrease"}
    assert server.admin.put("/api/metrics/latency_ms", json=metric).status_code == 200
    plan = {
        "guardrails": [{"metric": "latency_ms", "margin": 0.05, "action": "rollback"}],
        "stages": [{"percent": 5, "min_units": 100}, {"percent": 20, "min_units": 100}, {"percent": 100}],
        "gates": [{"kind": "srm", "action": "pause", "threshold": 0.001}],
        "candidate": "candidate",
    }
    response = server.admin.put(f"/api/flags/{FLAG}/plans/production", json=plan)
    assert response.status_code == 200, response.text
    assert response.json()["version"] == 1
    return server


def test_a_breached_guardrail_leads_the_readout_and_refuses_the_ramp(planned: RunningServer) -> None:
    send_traffic(planned, 4000, candidate_slowdown=0.3)
    report = planned.admin.get(f"/api/flags/{FLAG}/report").json()
    assert next(iter(report)) == "recommendation"
    rec = report["recommendation"]
    assert rec["action"] == "rollback"
    assert rec["sentence"].startswith("roll back: latency_ms is worse by +")
    assert "always-valid interval, beyond the 5% margin" in rec["sentence"]
    assert rec["plan_source"] == "plan"
    # The plan sets the multiple-comparison family and the sample size the intervals are tuned for.
    assert report["correction"]["family"] == ["latency_ms"]
    latency = next(m for m in report["metrics"] if m["key"] == "latency_ms")
    assert latency["comparisons"][0]["sequential"]["tuning"] == 100  # the largest stage minimum

    refused = planned.admin.post(f"/api/flags/{FLAG}/ramp",
                                 json={"environment": "production", "variation": "candidate", "percent": 50})  # fmt: skip
    assert refused.status_code == 409
    assert "latency_ms is worse" in refused.json()["message"]
    assert planned.admin.get(f"/api/flags/{FLAG}").json()["version"] == 1

    weak = planned.admin.post("/api/keys", json={"kind": "admin", "name": "no force"}).json()["key"]
    with httpx.Client(base_url=planned.url, headers={"Authorization": f"Bearer {weak}"}) as other:
        forced = other.post(f"/api/flags/{FLAG}/ramp", json={"environment": "production", "variation": "candidate",
                                                             "percent": 50, "force": True, "reason": "demo"})  # fmt: skip
        assert forced.status_code == 403
    no_reason = planned.admin.post(f"/api/flags/{FLAG}/ramp",
                                   json={"environment": "production", "variation": "candidate", "percent": 50, "force": True})  # fmt: skip
    assert no_reason.status_code == 422
    forced = planned.admin.post(f"/api/flags/{FLAG}/ramp", json={"environment": "production", "variation": "candidate",
                                                                  "percent": 50, "force": True, "reason": "load test"})  # fmt: skip
    assert forced.status_code == 200
    last = planned.admin.get(f"/api/flags/{FLAG}/changes").json()[-1]
    assert last["action"] == "ramp" and last["reason"] == "forced: load test"


def test_a_rollback_decision_acts_and_keeps_replayable_evidence(planned: RunningServer) -> None:
    send_traffic(planned, 4000, candidate_slowdown=0.3)
    response = planned.admin.post(f"/api/flags/{FLAG}/decisions",
                                  json={"action": "rollback", "reason": "latency regression"})  # fmt: skip
    assert response.status_code == 201, response.text
    decision = response.json()
    assert decision["state"] == "rollback" and decision["forced"] is False
    assert decision["recommendation"]["action"] == "rollback"
    weights = planned.admin.get(f"/api/flags/{FLAG}").json()["environments"]["production"]["rollout"][
        "weights"
    ]
    assert weights["control"] == 100 and weights["candidate"] == 0

    (listed,) = planned.admin.get(f"/api/flags/{FLAG}/decisions").json()
    assert listed["actor"].startswith("key:") and "WITH exposed AS" in listed["sql"]
    stored = store_of(planned).decisions(FLAG)[0]
    assert stored.evidence["sufficient_statistics"]["rows"]
    assert stored.evidence["metrics"][0]["key"] == "latency_ms"
    replayed = planned.admin.post(f"/api/decisions/{decision['decision_id']}/replay").json()
    assert replayed["matches"] is True and replayed["differences"] == []

    changes = store_of(planned).flag_changes()
    assert [c.action for c in changes] == ["create", "plan", "rollback"]
    assert broken_links(changes) == []

    again = planned.admin.post(f"/api/flags/{FLAG}/decisions", json={"action": "rollback"})
    assert again.status_code == 409 and "unchanged" in again.json()["message"]

    send_traffic(planned, 500, candidate_slowdown=0.0, seed=2)  # the evidence moves on
    planned.thread.server.config.app.state.ramplight.log.flush()
    moved = planned.admin.post(f"/api/decisions/{decision['decision_id']}/replay").json()
    assert moved["matches"] is False and moved["differences"]


def test_a_ramp_that_changes_nothing_says_unchanged_and_writes_no_version(planned: RunningServer) -> None:
    same = planned.admin.post(f"/api/flags/{FLAG}/ramp",
                              json={"environment": "production", "variation": "candidate", "percent": 5})  # fmt: skip
    assert same.status_code == 200 and same.json()["unchanged"] is True
    assert planned.admin.get(f"/api/flags/{FLAG}").json()["version"] == 1
    killed = planned.admin.post(f"/api/flags/{FLAG}/kill", json={"environment": "production"}).json()
    assert killed["version"] == 2
    again = planned.admin.post(f"/api/flags/{FLAG}/kill", json={"environment": "production"}).json()
    assert again["unchanged"] is True


def test_a_safe_candidate_expands_stage_by_stage(planned: RunningServer) -> None:
    send_traffic(planned, 4000, candidate_slowdown=0.0)
    rec = planned.admin.get(f"/api/flags/{FLAG}/recommendation").json()
    assert rec["action"] == "expand" and rec["next_percent"] == 20, rec
    done = planned.admin.post(f"/api/flags/{FLAG}/decisions", json={"action": "expand"}).json()
    assert done["rollout_after"]["rollout"]["weights"]["candidate"] == 20
    # The new stage has no units yet: expanding again is against the plan.
    early = planned.admin.post(f"/api/flags/{FLAG}/decisions", json={"action": "expand"})
    assert early.status_code == 409 and "0 of 100 units at 20 %" in early.json()["message"]


def test_a_plan_is_versioned_and_validated(planned: RunningServer) -> None:
    stale = planned.admin.put(f"/api/flags/{FLAG}/plans/production", json={"guardrails": []})
    assert stale.status_code == 409
    bad = planned.admin.put(f"/api/flags/{FLAG}/plans/production",
                            json={"version": 1, "guardrails": [{"metric": "nope", "margin": 0.05}],
                                  "stages": [{"percent": 50}, {"percent": 20}]})  # fmt: skip
    assert bad.status_code == 422
    fields = {p["field"] for p in bad.json()["problems"]}
    assert fields == {"guardrails[0].metric", "stages"}
    assert planned.admin.get(f"/api/flags/{FLAG}/plans/production").json()["version"] == 1
    assert planned.admin.get(f"/api/flags/{FLAG}/plans/staging").status_code == 404


def test_the_readout_carries_the_release_timeline_beside_hourly_series(planned: RunningServer) -> None:
    send_traffic(planned, 2000, candidate_slowdown=0.3)
    assert planned.admin.post(f"/api/flags/{FLAG}/decisions", json={"action": "rollback"}).status_code == 201
    timeline = planned.admin.get(f"/api/flags/{FLAG}/report").json()["timeline"]
    kinds = [(e["kind"], e["action"]) for e in timeline["events"]]
    assert kinds == [
        ("change", "create"),
        ("change", "plan"),
        ("change", "rollback"),
        ("decision", "rollback"),
    ]
    assert timeline["events"][2]["weights"] == {"control": 100.0, "candidate": 0.0}
    assert timeline["events"][3]["recommended"].startswith("roll back: latency_ms")
    units = {r["variation"]: r["units"] for r in timeline["units"]}
    assert sum(units.values()) == 2000
    latency = {r["variation"]: r for r in timeline["series"]["latency_ms"]}
    assert latency["candidate"]["n"] == units["candidate"]
    assert latency["candidate"]["mean"] > 1.2 * latency["control"]["mean"]


def test_an_expansion_the_plan_says_needs_approval_goes_through_a_change_request(
    planned: RunningServer,
) -> None:
    plan = planned.admin.get(f"/api/flags/{FLAG}/plans/production").json()
    assert (
        planned.admin.put(f"/api/flags/{FLAG}/plans/production", json={**plan, "approvers": 1}).status_code
        == 200
    )
    send_traffic(planned, 4000, candidate_slowdown=0.0)
    direct = planned.admin.post(f"/api/flags/{FLAG}/decisions", json={"action": "expand"})
    assert direct.status_code == 409 and "needs 1 approval(s)" in direct.json()["message"]
    ramp = planned.admin.post(f"/api/flags/{FLAG}/ramp", json={"environment": "production", "variation": "candidate", "percent": 20})  # fmt: skip
    assert ramp.status_code == 409

    proposed = planned.admin.post(
        f"/api/flags/{FLAG}/requests", json={"action": "expand", "reason": "5 % is clean"}
    )
    assert proposed.status_code == 201 and proposed.json()["state"] == "proposed"
    request_id = proposed.json()["request_id"]
    own = planned.admin.post(f"/api/requests/{request_id}/approve")
    assert own.status_code == 403 and "proposer" in own.json()["message"]

    bob = planned.admin.post("/api/keys", json={"kind": "admin", "name": "bob"}).json()["key"]
    with httpx.Client(base_url=planned.url, headers={"Authorization": f"Bearer {bob}"}, timeout=60) as as_bob:
        approved = as_bob.post(f"/api/requests/{request_id}/approve").json()
        assert approved["state"] == "applied" and approved["approvals"][0]["by"].endswith("(bob)")
        again = as_bob.post(f"/api/requests/{request_id}/approve")
        assert again.status_code == 409
    weights = planned.admin.get(f"/api/flags/{FLAG}").json()["environments"]["production"]["rollout"][
        "weights"
    ]
    assert weights["candidate"] == 20
    (decision,) = planned.admin.get(f"/api/flags/{FLAG}/decisions").json()
    assert (
        decision["state"] == "expand" and "approved by key:" in decision["actor"] and not decision["forced"]
    )

    second = planned.admin.post(f"/api/flags/{FLAG}/requests", json={"action": "promote"}).json()
    rejected = planned.admin.post(
        f"/api/requests/{second['request_id']}/reject", json={"reason": "not yet"}
    ).json()
    assert rejected["state"] == "rejected"
    assert [r["state"] for r in planned.admin.get(f"/api/flags/{FLAG}/requests").json()] == [
        "applied",
        "rejected",
    ]
