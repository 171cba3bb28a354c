"""The demo tells its story through the real SDK and server."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
from rich.console import Console

from ramplight.demo.simulation import FLAG, METRICS, _check_port, run_demo
from ramplight.server.run import free_port
from ramplight.settings import Settings
from ramplight.store.duckdb import DuckDBStore


def fallback_rate(readout: dict, variation: str) -> float:
    return next(v["fallback_rate"] for v in readout["variations"] if v["variation"] == variation)


def test_the_guardian_rolls_back_the_20_percent_stage_and_every_conversation_is_kept(
    tmp_path: Path,
) -> None:
    with (tmp_path / "out.txt").open("w") as out:
        result = run_demo(
            Settings(db=tmp_path / "demo.duckdb"),
            conversations=6000,
            seed=3,
            serve=False,
            as_json=False,
            console=Console(file=out),
        )
    early, late = result["phases"][0]["readout"], result["readout"]
    assert result["sdk"]["sent"] >= 6000 * 4  # an exposure and three events per conversation
    assert (result["sdk"]["rejected"], result["sdk"]["dropped"]) == (0, 0)
    assert early["data_quality"]["exposed_units"] == 1800
    assert late["data_quality"]["exposed_units"] == 6000
    assert fallback_rate(late, "candidate") > 2 * fallback_rate(early, "candidate")
    assert 0.99 < late["data_quality"]["joinable_fraction"] < 1.0  # ticket-keyed outcomes do not join
    assert {m["key"] for m in late["metrics"]} == {m["key"] for m in METRICS}
    assert [p["weights"] for p in late["phases"]][:2] == [
        {"control": 95.0, "candidate": 5.0},
        {"control": 80.0, "candidate": 20.0},
    ]
    latency = next(m for m in late["metrics"] if m["key"] == "latency_ms")
    assert latency["comparisons"][0]["guardrail"]["breached"]  # the regression the story is about
    assert late["flag_key"] == FLAG
    # At 5 % the plan asked for more evidence; at 20 % the guardian rolled back by itself.
    assert early["recommendation"]["action"] == "continue"
    guardian = result["guardian"]
    assert guardian is not None and guardian["state"] == "rollback"
    assert guardian["recommendation"]["sentence"].startswith("roll back: latency_ms is worse by")
    assert late["phases"][-1]["weights"] == {"control": 100.0, "candidate": 0.0}
    actions = [(e["kind"], e["action"], e["actor"]) for e in late["timeline"]["events"]]
    assert ("decision", "rollback", "guardian") in actions and ("change", "rollback", "guardian") in actions
    assert late["recommendation"]["action"] == "continue"  # rolled back; cleanup comes later
    assert "cleanup due" in late["recommendation"]["sentence"]
    text = " ".join((tmp_path / "out.txt").read_text().split())  # unwrap the console's lines
    assert "The guardian acted by itself: roll back: latency_ms is worse by" in text
    assert "Its traces (exported with the OpenTelemetry SDK) add the rest" in text


def test_the_demo_traces_conversations_and_judges_answers_through_opentelemetry(tmp_path: Path) -> None:
    db = tmp_path / "demo.duckdb"
    with (tmp_path / "out.txt").open("w") as out:
        result = run_demo(
            Settings(db=db),
            conversations=4000,
            seed=5,
            serve=False,
            as_json=True,
            console=Console(file=out),
            trace_ratio=0.25,  # more traces than the demo's default, for the shares below
        )
    late = result["readout"]
    emitted = result["opentelemetry"]
    traces = late["traces"]
    traced = traces["control"]["traces"] + traces["candidate"]["traces"]
    assert 0.2 * 4000 < traced < 0.3 * 4000  # a quarter of the conversations, sampled by trace id
    # Every span the OpenTelemetry SDK exported is stored once, and reaches an exposed unit
    # through its trace's root span (only the root names the conversation).
    spans = late["data_quality"]["spans"]
    assert spans["spans"] == spans["spans_joined"] == emitted["spans"] > traced * 3
    assert spans["spans_with_unit"] == traced
    assert spans["spans_unpriced"] > 0  # the reranker has no price: shown, not counted as free
    # The cascade: control answers with gpt-5; the candidate with gpt-5-mini, escalating hard
    # queries, and then the escalation is on the critical path. It costs less per conversation.
    routes = {v: {r["model"]: r["share"] for r in t["routes"]} for v, t in traces.items()}
    assert set(routes["control"]) == {"gpt-5-2026-08-07"}
    assert routes["candidate"]["gpt-5-mini-2026-08-07"] > 0.9
    assert 0.15 < routes["candidate"]["gpt-5-2026-08-07"] < 0.6
    paths = {v: {p["name"]: p["share"] for p in t["critical_path"]} for v, t in traces.items()}
    assert paths["control"] == {"invoke_agent support_assistant": 1.0, "chat gpt-5": 1.0}
    assert paths["candidate"]["chat gpt-5"] == routes["candidate"]["gpt-5-2026-08-07"]
    assert traces["candidate"]["cost_per_trace"] < traces["control"]["cost_per_trace"]
    # Judge scores arrived as OpenTelemetry evaluation records and joined their conversations.
    faithfulness = next(m for m in late["metrics"] if m["key"] == "faithfulness")
    assert sum(v["units"] for v in faithfulness["variations"]) == emitted["judge_scores"] > 0

    store = DuckDBStore(db, read_only=True)
    try:
        _, judged = store.read(
            "SELECT count(*), count(e.span_id), count(s.span_id), count(*) FILTER (s.name LIKE 'chat %')"
            " FROM evals e LEFT JOIN spans s ON s.trace_id = e.trace_id AND s.span_id = e.span_id"
        )
        _, cancelled = store.read(
            "SELECT count(*), count(*) FILTER (WHERE tax) FROM ("
            "  SELECT r.trace_id, bool_or(c.end_ts > r.end_ts) AS tax FROM spans r"
            "  JOIN spans c ON c.trace_id = r.trace_id AND c.name LIKE 'chat %'"
            "  WHERE r.parent_span_id IS NULL AND r.status = 'error'"
            "    AND json_extract_string(r.attributes, '$.\"error.type\"') = 'cancelled'"
            "  GROUP BY r.trace_id)"
        )
        # The cost event of a traced conversation is its model calls' tokens × the price table.
        _, costs = store.read(
            "SELECT count(*), count(*) FILTER (WHERE abs(e.value - t.cost) < 1e-6) FROM events e JOIN ("
            "  SELECT r.unit_id, sum(c.input_tokens * if(c.gen_ai_model LIKE 'gpt-5-mini%', 0.25, 1.25)"
            "                      + c.output_tokens * if(c.gen_ai_model LIKE 'gpt-5-mini%', 2.0, 10.0)) / 1e6 AS cost"
            "  FROM spans r JOIN spans c ON c.trace_id = r.trace_id AND c.name LIKE 'chat %'"
            "  WHERE r.parent_span_id IS NULL GROUP BY r.unit_id) t ON t.unit_id = e.unit_id AND e.name = 'cost_usd'"
        )
    finally:
        store.close()
    assert costs == [(traced, traced)]
    # Each score carries its model call's trace and span ids; those of traced answers find it.
    ((scores, with_span, traced_scores, on_chat_spans),) = judged
    assert scores == with_span == emitted["judge_scores"]
    assert 0 < traced_scores == on_chat_spans < scores
    # Stopped answers: the caller ended at the stop, the model call after it (the cancellation tax).
    assert cancelled[0][0] > 0 and cancelled[0][0] == cancelled[0][1]


def test_a_serving_demo_stops_cleanly_on_sigterm_and_can_start_again_on_its_port(tmp_path: Path) -> None:
    # The console script, as `make demo` and users run it: its ingestion workers import it as
    # their main module (DuckDB included), unlike `python -m ramplight`.
    script = Path(sys.executable).with_name("ramplight")
    assert script.exists(), f"{script}: the package's console script is not installed"
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAMPLIGHT_")}
    db = tmp_path / "demo.duckdb"
    out, err = tmp_path / "out.log", tmp_path / "err.log"
    with out.open("wb") as stdout, err.open("wb") as stderr:
        demo = subprocess.Popen(
            [str(script), "demo", "--db", str(db), "--conversations", "4000", "--port", str(port)],
            stdout=stdout, stderr=stderr, env=env, cwd=tmp_path,
        )  # fmt: skip
        try:
            deadline = time.monotonic() + 180
            while "Ctrl-C stops" not in out.read_text():
                assert demo.poll() is None, err.read_text()
                assert time.monotonic() < deadline, "the demo did not start serving in time"
                time.sleep(0.2)
            assert Settings(db=db).server_file.exists()
            # A browser's keep-alive connection, open while the demo stops: the server closes it,
            # and that side of the connection waits in TIME_WAIT on the demo's port.
            with httpx.Client(base_url=f"http://127.0.0.1:{port}", trust_env=False) as browser:
                assert browser.get("/healthz").status_code == 200
                demo.send_signal(signal.SIGTERM)
                assert demo.wait(timeout=60) == 0, err.read_text()
        finally:
            if demo.poll() is None:
                demo.kill()
                demo.wait()
    assert "stopping" in out.read_text()
    assert not Settings(db=db).server_file.exists()  # stopped as by Ctrl-C, not killed
    errors = err.read_text()
    assert "leaked" not in errors and "Traceback" not in errors, errors
    # Connections in TIME_WAIT must not make the next demo refuse the port as "in use".
    _check_port(Settings(db=tmp_path / "again.duckdb", port=port))
