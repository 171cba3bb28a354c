"""The eval gate recorded with its flag, on a real server: an offline run's scores sent to `evals`
with a run id (or the eval set's items in the request) are gated, the result is stored with the
flag, listed, on the flag's timeline, and carried by the flag's next decision; `ramplight gate
--run … --flag …` does the same through the server, and bad requests are precise 422s."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import numpy as np

from tests.factories import RunningServer

FLAG = "support_assistant_profile"


def _run(server: RunningServer, run_id: str, harm: float, items: int = 40) -> None:
    """An offline run: every item scored under control and candidate; the candidate `harm` worse."""
    rng = np.random.default_rng(3)
    at = (datetime.now(UTC) - timedelta(minutes=5)).isoformat()
    evals: list[dict[str, Any]] = []
    for i in range(items):
        base = float(rng.uniform(0.5, 0.9))
        for variation, score in (("control", base), ("candidate", base - harm + float(rng.normal(0, 0.01)))):
            evals.append(
                {"ts": at, "name": "faithfulness", "score": score, "evaluator": "llm_judge",
                 "unit_id": f"item-{i}", "variation": variation, "run_id": run_id}
            )  # fmt: skip
    key = server.sdk_key()
    with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {key}"}) as client:
        answer = client.post("/ingest/batch", json={"evals": evals})
    assert answer.status_code == 200, answer.text
    assert answer.json()["accepted"]["evals"] == 2 * items


def test_a_gate_on_a_runs_scores_is_recorded_with_the_flag_and_carried_by_its_next_decision(
    server: RunningServer,
) -> None:
    server.create_flag()
    _run(server, "nightly-41", harm=0.0)
    _run(server, "nightly-42", harm=0.1)
    gate = {"run_id": "nightly-41", "margins": {"faithfulness": 0.02}}
    passed = server.admin.post(f"/api/flags/{FLAG}/gates", json=gate)
    assert passed.status_code == 201, passed.text
    record = passed.json()
    assert (
        record["passed"] is True and record["run_id"] == "nightly-41" and record["actor"].startswith("key:")
    )
    (score,) = record["result"]["scores"]
    assert (score["name"], score["pairs"], score["passed"]) == ("faithfulness", 40, True)

    failed = server.admin.post(f"/api/flags/{FLAG}/gates", json={**gate, "run_id": "nightly-42"}).json()
    assert failed["passed"] is False and failed["result"]["scores"][0]["difference"] < -0.05

    # The eval set's items in the request, as `ramplight gate FILE --flag` sends them.
    items = [{"item": f"q{i}", "variation": v, "scores": {"faithfulness": 0.8}} for i in range(3)
             for v in ("control", "candidate")]  # fmt: skip
    inline = server.admin.post(
        f"/api/flags/{FLAG}/gates",
        json={"items": items, "margins": {"faithfulness": 0.02}, "source": "evals.jsonl"},
    ).json()
    assert inline["passed"] is True and inline["source"] == "evals.jsonl" and inline["run_id"] is None

    listed = server.admin.get(f"/api/flags/{FLAG}/gates", params={"environment": "production"}).json()
    assert [g["gate_id"] for g in listed] == [record["gate_id"], failed["gate_id"], inline["gate_id"]]
    report = server.admin.get(f"/api/flags/{FLAG}/report").json()
    on_timeline = [e for e in report["timeline"]["events"] if e["kind"] == "eval_gate"]
    assert [e["action"] for e in on_timeline] == ["passed", "failed", "passed"]
    assert on_timeline[1]["reason"] == "candidate vs control: faithfulness FAIL"

    decision = server.admin.post(
        f"/api/flags/{FLAG}/decisions", json={"action": "pause", "reason": "gate failed"}
    )
    assert decision.status_code == 201, decision.text
    carried = decision.json()["eval_gates"]
    assert [g["gate_id"] for g in carried] == [g["gate_id"] for g in listed]
    # The next decision carries only the gates recorded since this one.
    later = server.admin.post(f"/api/flags/{FLAG}/gates", json=gate).json()
    again = server.admin.post(
        f"/api/flags/{FLAG}/decisions", json={"action": "rollback", "reason": "cleanup"}
    )
    assert again.status_code == 201, again.text
    assert [g["gate_id"] for g in again.json()["eval_gates"]] == [later["gate_id"]]


def test_bad_gate_requests_are_precise_4xx(server: RunningServer) -> None:
    server.create_flag()
    base = {"run_id": "nightly", "margins": {"faithfulness": 0.02}}
    cases: list[tuple[str, dict[str, Any], int, str, str]] = [
        (FLAG, {**base, "run_id": "never-ran"}, 422, "run_id", "no eval scores with run_id 'never-ran'"),
        (FLAG, {**base, "items": []}, 422, "run_id", "either the eval set's items or the run_id"),
        (FLAG, {"margins": {"faithfulness": 0.02}}, 422, "run_id", "either"),
        (FLAG, {**base, "candidate": "nope"}, 422, "candidate", "'nope' is not a variation"),
        (FLAG, {**base, "margins": {"faithfulness": -1}}, 422, "margins.faithfulness", ">= 0"),
        (FLAG, {**base, "margins": {}}, 422, "margins", "at least one score"),
        (FLAG, {**base, "environment": "qa"}, 422, "environment", "no environment 'qa'"),
        ("no_such_flag", base, 404, "", "no_such_flag"),
    ]
    for flag, body, status, field, words in cases:
        answer = server.admin.post(f"/api/flags/{flag}/gates", json=body)
        assert answer.status_code == status, (body, answer.text)
        error = answer.json()
        assert words in error["message"], error
        if field:
            assert error["problems"][0]["field"] == field, error


def test_ramplight_gate_reads_a_run_through_the_server_and_records_it(server: RunningServer) -> None:
    server.create_flag()
    _run(server, "ci-7", harm=0.1)
    env = {"RAMPLIGHT_URL": server.url, "RAMPLIGHT_ADMIN_KEY": server.admin_key,
           **{k: os.environ[k] for k in ("PATH", "PYTHONPATH") if k in os.environ}}  # fmt: skip
    args = [
        sys.executable,
        "-m",
        "ramplight",
        "gate",
        "--run",
        "ci-7",
        "--flag",
        FLAG,
        "--margin",
        "faithfulness=0.02",
    ]
    done = subprocess.run(
        [*args, "--json"], capture_output=True, text=True, env=env, timeout=120, check=False
    )
    assert done.returncode == 1, done.stderr  # the candidate is worse by more than the margin
    recorded = json.loads(done.stdout)
    assert recorded["passed"] is False and recorded["flag_key"] == FLAG and recorded["run_id"] == "ci-7"
    shown = subprocess.run(args, capture_output=True, text=True, env=env, timeout=120, check=False)
    assert shown.returncode == 1
    assert "gate failed" in shown.stdout and f"recorded with {FLAG} in production" in shown.stdout
    assert len(server.admin.get(f"/api/flags/{FLAG}/gates").json()) == 2
    unnamed = subprocess.run(
        args[:6] + args[8:], capture_output=True, text=True, env=env, timeout=120, check=False
    )
    assert unnamed.returncode != 0 and "name the flag" in unnamed.stderr
