"""A support assistant's prompt/retrieval/model-route profile rolled out 5 % → 20 % by conversation.

Everything goes through the real product: the server on 127.0.0.1, the SDK evaluating
locally, exposures recorded when the assistant actually ran (with timeouts falling back to
control), outcome and guardrail events from "another system" keyed by conversation, traces of a
sample of conversations exported with the OpenTelemetry SDK (cost from tokens and the price
table), and LLM judge scores on a sample as OpenTelemetry evaluation records (`demo/telemetry.py`). The
story: at 5 % the candidate looks better and its model cascade costs less; at 20 % the
citation-first retrieval saturates, long conversations time out and fall back, enterprise
conversations get slower and more users stop answers mid-way.
"""

from __future__ import annotations

import math
import random
import shutil
import signal
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from opentelemetry import trace
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from ramplight.cli import render
from ramplight.core.errors import ConflictError, ValidationError
from ramplight.demo.telemetry import PRICES, ROOT, TRACE_RATIO, Answer, Telemetry
from ramplight.sdk.client import Client
from ramplight.server.run import ServerThread, bootstrap, free_port
from ramplight.settings import Settings
from ramplight.store import open_store

FLAG = "support_assistant_profile"
PROFILES = {
    "control": {"prompt_profile": "support_v3", "model_route": "stable", "retrieval_profile": "baseline"},
    "candidate": {
        "prompt_profile": "support_v4",
        "model_route": "cascade",
        "retrieval_profile": "citation_first",
    },
    "fallback": {"prompt_profile": "support_v3", "model_route": "stable", "retrieval_profile": "baseline"},
}
FLAG_DOC: dict[str, Any] = {
    "key": FLAG,
    "type": "json",
    "assignment_unit": "conversation",
    "description": "Support assistant behavior profile: prompt v4, citation-first retrieval, and a model "
    "cascade (gpt-5-mini first, gpt-5 for hard queries).",
    "tags": ["ai", "support"],
    "variations": [{"key": k, "value": v} for k, v in PROFILES.items()],
    "environments": {
        "production": {
            "default_variation": "control",
            "off_variation": "control",
            "rules": [
                {
                    "id": "internal-dogfood",
                    "clauses": [{"attribute": "plan", "op": "in", "values": ["internal"]}],
                    "variation": "candidate",
                }
            ],
            "rollout": {"weights": {"control": 95, "candidate": 5}},
        },
        "staging": {"default_variation": "candidate", "off_variation": "control"},
    },
}


METRICS: list[dict[str, Any]] = [
    {
        "key": "resolved",
        "type": "event",
        "event": "resolved_without_escalation",
        "aggregation": "mean",
        "description": "Conversations resolved without escalation to a human",
    },
    {
        "key": "human_correction",
        "type": "event",
        "event": "human_correction",
        "aggregation": "mean",
        "direction": "decrease",
        "description": "An agent had to correct the assistant",
    },
    {
        "key": "latency_ms",
        "type": "event",
        "event": "latency_ms",
        "aggregation": "mean",
        "direction": "decrease",
        "guardrail_margin": 0.05,
        "description": "Mean answer latency per conversation (guardrail: ≤ 5 % worse)",
    },
    {
        "key": "latency_p95",
        "type": "quantile",
        "event": "latency_ms",
        "quantile": 0.95,
        "direction": "decrease",
    },
    {
        "key": "cost_usd",
        "type": "event",
        "event": "cost_usd",
        "aggregation": "sum",
        "direction": "decrease",
        "guardrail_margin": 0.30,
        "description": "Model cost per conversation: its calls' tokens × the price table (guardrail: ≤ 30 % more)",
    },
    {
        "key": "stopped",
        "type": "span",
        "span_name": ROOT,
        "span_field": "error",
        "aggregation": "mean",
        "direction": "decrease",
        "description": "Answers the user stopped (a traced conversation's root span cancelled)",
    },
    {
        "key": "cost_per_resolution",
        "type": "ratio",
        "numerator": "cost_usd",
        "denominator": "resolved_count",
        "direction": "decrease",
    },
    {"key": "resolved_count", "type": "event", "event": "resolved_without_escalation", "aggregation": "sum"},
    {"key": "faithfulness", "type": "eval", "eval": "faithfulness", "evaluator": "llm_judge"},
]


@dataclass(frozen=True, slots=True)
class Conversation:
    conversation_id: str
    plan: str
    region: str
    turns: int

    @property
    def long(self) -> bool:
        return self.turns >= 8


def _conversation(rng: random.Random, i: int) -> Conversation:
    plan = rng.choices(("free", "pro", "enterprise"), (0.5, 0.35, 0.15))[0]
    region = "us" if rng.random() < 0.6 else "eu"
    turns = 1 + int(rng.expovariate(1 / 4.5))
    return Conversation(f"conv_{i:06d}", plan, region, turns)


def _simulate(
    client: Client, telemetry: Telemetry, conv: Conversation, rng: random.Random, stage: int
) -> None:
    """One conversation: the assistant runs under the flag, inside its trace's root span (so the
    SDK records the evaluation there); outcomes follow from what served."""
    attrs = {"plan": conv.plan, "region": conv.region, "length": "long" if conv.long else "short"}
    start_ns = time.time_ns()
    root = telemetry.conversation(conv.conversation_id, start_ns)
    with trace.use_span(root, end_on_exit=False), client.exposure(FLAG, conv.conversation_id, attrs) as x:
        waited = 0.0
        if x.variation == "candidate":
            # Citation-first retrieval saturates once it carries 20 % of traffic.
            p_timeout = (0.04 if conv.long else 0.015) if stage == 1 else (0.22 if conv.long else 0.03)
            if rng.random() < p_timeout:
                x.fallback("timeout")
                waited = 3000.0
        served = x.variation or "control"
    median = math.log(1300 + 70 * conv.turns)
    base = rng.lognormvariate(median, 0.25)
    extra = 0.0
    if served == "candidate":
        extra = 90 + (700 if stage == 2 and conv.plan == "enterprise" else 0) * rng.uniform(0.6, 1.4)
    answer = Answer(conv.turns, conv.plan, served, waited, extra, base, (math.log(base) - median) / 0.25)
    answered = telemetry.answer(root, start_ns, answer)
    latency = answer.latency_ms
    if served == "candidate":
        p_resolved, p_correction = (0.66 if not conv.long else 0.60), 0.085
    elif waited:
        p_resolved, p_correction = 0.50, 0.15
    else:
        p_resolved, p_correction = (0.60 if not conv.long else 0.54), 0.12
    unit = conv.conversation_id
    if rng.random() < 0.004:  # the ticketing system sometimes keys outcomes by ticket, not conversation
        unit = f"ticket_{rng.randrange(10**8):08d}"
    track = client.track
    track(
        "resolved_without_escalation",
        unit,
        value=float(rng.random() < p_resolved),
        assignment_unit="conversation",
    )
    track("human_correction", unit, value=float(rng.random() < p_correction), assignment_unit="conversation")
    track("latency_ms", conv.conversation_id, value=round(latency, 1), assignment_unit="conversation")
    track("cost_usd", conv.conversation_id, value=round(answered.cost_usd, 6), assignment_unit="conversation")
    if rng.random() < 0.1:
        # The judge scores the answer a little later, as an OpenTelemetry evaluation record.
        faithfulness = min(1.0, max(0.0, rng.gauss(0.86 if served == "candidate" else 0.81, 0.08)))
        judged_ns = start_ns + int((latency + 1500) * 1e6)
        telemetry.score(answered.judged, conv.conversation_id, judged_ns, round(faithfulness, 3))


def _fresh_database(settings: Settings) -> None:
    db = settings.db
    if db.exists():
        store = open_store(settings)
        try:
            others = [f.key for f in store.list_flags(include_archived=True) if f.key != FLAG]
        finally:
            store.close()
        if others:
            raise ValidationError.at(
                "--db",
                f"{db} holds other flags ({', '.join(others[:3])}); the demo only replaces its own database",
            )
    for path in (db, db.with_name(db.name + ".wal"), settings.server_file):
        path.unlink(missing_ok=True)
    shutil.rmtree(settings.log_dir, ignore_errors=True)


PLAN: dict[str, Any] = {
    "flag_key": FLAG,
    "environment": "production",
    "candidate": "candidate",
    "goals": [{"metric": "resolved", "minimum_effect": 0.02}],
    "guardrails": [
        {"metric": "latency_ms", "margin": 0.05, "action": "rollback"},
        {"metric": "human_correction", "margin": 0.10, "action": "pause"},
    ],
    "stages": [
        {"percent": 5, "min_units": 1000},
        {"percent": 20, "min_units": 2000},
        {"percent": 50, "min_units": 5000},
        {"percent": 100},
    ],
    "guardian": {"rollback": True, "pause": True, "expand": False},
}
"""The release plan: the latency guardrail is what the guardian acts on when 20 % breaches it."""

GUARDIAN_INTERVAL_S = 1.0


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def _check_port(settings: Settings) -> None:
    import socket

    with socket.socket() as sock:
        # As uvicorn binds: connections of a demo stopped a moment ago, left in TIME_WAIT, do
        # not hold the port; a server listening on it does.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((settings.host, settings.port))
        except OSError:
            raise ConflictError(f"port {settings.port} is in use; pass --port") from None


def run_demo(
    settings: Settings,
    conversations: int,
    seed: int,
    serve: bool,
    as_json: bool,
    console: Console,
    trace_ratio: float = TRACE_RATIO,
) -> dict[str, Any]:
    if not serve:
        settings = settings.with_(port=free_port())
    settings = settings.with_(guardian_interval=GUARDIAN_INTERVAL_S)
    _check_port(settings)
    _fresh_database(settings)
    admin_key = bootstrap(settings)
    assert admin_key is not None
    server = ServerThread(settings).start()
    try:
        admin = httpx.Client(
            base_url=server.url, headers={"Authorization": f"Bearer {admin_key}"}, timeout=120
        )
        applied = admin.post(
            "/api/apply", json={"flags": [FLAG_DOC], "metrics": METRICS, "plans": [PLAN], "prices": PRICES}
        )
        if applied.status_code != 200:
            raise ValidationError(f"the demo's flag and metrics were refused: {applied.text[:300]}")
        sdk_key = admin.post(
            "/api/keys", json={"kind": "sdk", "name": "support-assistant", "environment": "production"}
        ).json()["key"]
        rng = random.Random(seed)
        telemetry = Telemetry(server.url, sdk_key, seed, trace_ratio)
        stage_one = int(conversations * 0.3)
        phases = []
        with (
            Client(sdk_key, url=server.url, poll_interval=2.0, flush_interval=0.25) as client,
            Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                console=console,
                disable=as_json or not console.is_terminal,
            ) as progress,
        ):
            task = progress.add_task("conversations at 5 %", total=conversations)
            for i in range(conversations):
                if i == stage_one:
                    client.flush()
                    telemetry.flush()
                    phases.append(
                        {
                            "rollout": {"control": 95, "candidate": 5},
                            "conversations": stage_one,
                            "readout": admin.get(f"/api/flags/{FLAG}/report").json(),
                        }
                    )
                    admin.post(
                        f"/api/flags/{FLAG}/ramp",
                        json={
                            "environment": "production",
                            "variation": "candidate",
                            "percent": 20,
                            "reason": "stage 2 of the ramp plan: 5 % looked good",
                        },
                    ).raise_for_status()
                    client.refresh()
                    progress.update(task, description="conversations at 20 %")
                _simulate(client, telemetry, _conversation(rng, i), rng, 1 if i < stage_one else 2)
                if i % 2000 == 1999:
                    # Conversations arrive over time in real life; here the SDK's and the
                    # exporters' queues are drained every 2,000 so the simulation never outruns them.
                    client.flush(timeout=60)
                    telemetry.flush()
                    progress.update(task, completed=i + 1)
            progress.update(task, completed=conversations)
            client.flush(timeout=60)
            telemetry.shutdown()  # exports what is left: the readout below sees every span
            guardian = _wait_for_guardian(admin)
            sdk_stats = {
                "sent": client.stats.sent,
                "rejected": client.stats.rejected,
                "dropped": client.stats.dropped,
            }
            otel_stats = {"spans": telemetry.spans, "judge_scores": telemetry.scores}
        final = admin.get(f"/api/flags/{FLAG}/report").json()
        phases.append(
            {
                "rollout": {"control": 80, "candidate": 20},
                "conversations": conversations - stage_one,
                "readout": final,
            }
        )
        result = {
            "flag_key": FLAG,
            "conversations": conversations,
            "seed": seed,
            "sdk": sdk_stats,
            "opentelemetry": otel_stats,
            "phases": phases,
            "readout": final,
            "guardian": guardian,
        }
        if as_json:
            import msgspec

            print(msgspec.json.format(msgspec.json.encode(result), indent=2).decode())
        else:
            console.rule("readout after the 5 % stage")
            render.readout(phases[0]["readout"], console)
            console.rule("readout now (after the 20 % stage)")
            render.readout(final, console)
            _story(final, phases[0]["readout"], guardian, console)
        if serve:
            _where_to_look(settings, server.url, admin_key, console)
            # SIGTERM (a service manager, `kill`, a container's stop) stops it as Ctrl-C does:
            # the server drains, the log is flushed and the ingestion workers are shut down.
            previous = signal.signal(signal.SIGTERM, _interrupt)
            try:
                threading.Event().wait()
            except KeyboardInterrupt:
                console.print("stopping")
            finally:
                signal.signal(signal.SIGTERM, previous)
        admin.close()
        return result
    finally:
        server.stop()


def _fallback(readout: dict[str, Any], variation: str) -> float:
    for v in readout["variations"]:
        if v["variation"] == variation and v["fallback_rate"] is not None:
            return float(v["fallback_rate"])
    return 0.0


def _wait_for_guardian(admin: httpx.Client, seconds: float = 30.0) -> dict[str, Any] | None:
    """The guardian's decision on this flag, once it has made one (None if it saw no reason to)."""
    deadline = time.monotonic() + seconds
    while True:
        mine = [d for d in admin.get(f"/api/flags/{FLAG}/decisions").json() if d["actor"] == "guardian"]
        if mine or time.monotonic() > deadline:
            return mine[-1] if mine else None
        time.sleep(0.2)


def _story(
    final: dict[str, Any], early: dict[str, Any], guardian: dict[str, Any] | None, console: Console
) -> None:
    acted = (
        f"The guardian acted by itself: {guardian['recommendation']['sentence']} "
        f"(see the release timeline above; `{command_name()} decisions {FLAG}`)."
        if guardian
        else "The guardian found no breach to act on in this run."
    )
    console.print(
        f"\nThe story: at 5 % the candidate fell back {100 * _fallback(early, 'candidate'):.1f} % of the time and "
        "the plan's recommendation was to keep collecting evidence; the team ramped to 20 % anyway. "
        f"At 20 % it falls back {100 * _fallback(final, 'candidate'):.1f} % (long conversations time out) and "
        f"latency regresses beyond the plan's 5 % margin. {acted} "
        f"Break it down by customer plan: `{command_name()} report {FLAG} --segment plan`."
        + _trace_story(final)
    )


def _trace_story(final: dict[str, Any]) -> str:
    """What the conversations' traces add: cost, the cascade's route, stopped answers."""
    traces = final.get("traces") or {}
    control, candidate = traces.get("control"), traces.get("candidate")
    if (
        not control
        or not candidate
        or control["cost_per_trace"] is None
        or candidate["cost_per_trace"] is None
    ):
        return ""

    def stopped(summary: dict[str, Any]) -> float:
        return next((s["error_rate"] for s in summary["spans"] if s["root"]), 0.0)

    escalated = next((p["share"] for p in candidate["critical_path"] if p["name"] == "chat gpt-5"), 0.0)
    unpriced = final["data_quality"].get("spans", {}).get("spans_unpriced", 0)
    return (
        "\nIts traces (exported with the OpenTelemetry SDK) add the rest: the candidate's model cascade costs "
        f"{candidate['cost_per_trace']:.4f} USD a conversation against control's {control['cost_per_trace']:.4f}, "
        f"but {escalated or 0:.0%} of its answers escalate from gpt-5-mini to gpt-5, and that call sets their "
        f"end-to-end time (the critical path); users stopped {stopped(candidate):.1%} of its answers "
        f"(control {stopped(control):.1%}) while the model went on generating; and {unpriced:,} reranker calls "
        "have no price in the price table, so the candidate's cost is understated. "
        f"`{command_name()} report {FLAG} --traces` shows the trace summary."
    )


def command_name() -> str:
    """How to run this installation's `ramplight` from the current shell: the bare name when
    PATH finds it (an activated venv), else its path (`.venv/bin/ramplight` after `make demo`)."""
    script = Path(sys.executable).parent / "ramplight"
    found = shutil.which("ramplight")
    if found and script.exists() and Path(found).resolve() == script.resolve():
        return "ramplight"
    if not script.exists():
        return f"{sys.executable} -m ramplight"
    try:
        return str(script.relative_to(Path.cwd()))
    except ValueError:
        return str(script)


def _where_to_look(settings: Settings, url: str, admin_key: str, console: Console) -> None:
    console.rule("Ramplight is running")
    run = command_name()
    activate = (
        f"  (or `source {Path(run).parent}/activate` first, then type plain `ramplight`)\n"
        if run.endswith("/ramplight")
        else ""
    )
    console.print(
        escape(
            f"API and OpenAPI docs: {url}/docs\n"
            f"Database: {settings.db}\n\n"
            "In another terminal (the admin key below is shown once; it is stored hashed):\n"
            f"  export RAMPLIGHT_URL={url} RAMPLIGHT_ADMIN_KEY={admin_key}\n"
            f"  {run} report {FLAG}\n"
            f"  {run} report {FLAG} --segment plan --metric latency_ms\n"
            f"  {run} report {FLAG} --traces\n"
            f"  {run} sql {FLAG} --dialect clickhouse\n"
            f"  {run} flags show {FLAG} --changes\n"
            f"  {run} decisions {FLAG}\n"
            f"  {run} kill {FLAG} --reason 'latency regression'\n"
            + activate
            + f"\nThe release room (web UI): {url}/ — sign in with the admin key above.\nCtrl-C stops the server."
        ),
        highlight=False,
    )
