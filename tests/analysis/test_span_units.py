"""A span without a unit id inherits its trace's: from the trace's root span, else from the flag's
exposure that shares the trace id. How many spans reach an exposed unit is a data-quality figure."""

from __future__ import annotations

import math
from datetime import timedelta
from typing import Any

from ramplight.analysis import service
from ramplight.store.duckdb import DuckDBStore
from tests.analysis.conftest import FLAG, T0, Evidence, make_flag, save_metrics


def _span(
    ev: Evidence, trace: str, span: str, parent: str | None, unit: str | None, at: Any, tokens: int
) -> None:
    ev.spans.append(
        {"trace_id": trace, "span_id": span, "parent_span_id": parent, "name": "chat" if parent else "conversation",
         "start_ts": at, "end_ts": at + timedelta(seconds=1), "duration_ms": 1000.0, "status": "ok",
         "environment": "production", "unit_id": unit, "output_tokens": tokens, "received_at": at}
    )  # fmt: skip


def test_spans_inherit_their_traces_unit_and_the_readout_says_how_many_joined(store: DuckDBStore) -> None:
    make_flag(store, candidate=50, at=T0)
    save_metrics(
        store,
        {
            "key": "tokens",
            "type": "span",
            "span_field": "output_tokens",
            "span_name": "chat",
            "aggregation": "sum",
        },
    )
    ev = Evidence()
    at = T0 + timedelta(hours=1)
    for unit, variation in (("u1", "control"), ("u2", "candidate"), ("u3", "control"), ("u4", "candidate")):
        ev.expose(unit, variation, at)
        ev.exposures[-1]["trace_id"] = f"x-{unit}"
    ev.exposures[1]["trace_id"] = "trace-2"  # the SDK put the span's trace id on u2's exposure
    _span(ev, "trace-5", "root-5", None, "u3", at, 0)
    _span(ev, "trace-5", "f", "root-5", None, at, 10)
    _span(ev, "x-u4", "g", "root-not-sent", None, at, 30)
    # u1: the unit is on the root span only; its two model calls inherit it.
    _span(ev, "trace-1", "root-1", None, "u1", at, 0)
    _span(ev, "trace-1", "a", "root-1", None, at, 100)
    _span(ev, "trace-1", "b", "root-1", None, at, 50)
    # u2: no span names a unit; the exposure with the same trace id does.
    _span(ev, "trace-2", "root-2", None, None, at, 0)
    _span(ev, "trace-2", "c", "root-2", None, at, 70)
    # A trace nobody can place, and a span of a unit that was never exposed.
    _span(ev, "trace-3", "d", None, None, at, 999)
    _span(ev, "trace-4", "e", None, "u9", at, 999)
    ev.load(store)

    report = service.report(store, FLAG, "production")
    tokens = {v["variation"]: v for v in report["metrics"][0]["variations"]}
    assert (tokens["control"]["units"], tokens["control"]["mean"]) == (2, (150 + 10) / 2)
    assert (tokens["candidate"]["units"], tokens["candidate"]["mean"]) == (2, (70 + 30) / 2)
    assert report["data_quality"]["spans"] == {
        "spans": 10,
        "spans_with_unit": 3,
        "spans_with_inherited_unit": 9,
        "spans_joined": 8,
        "spans_unpriced": 10,  # token counts, no price table: no cost (and said so)
    }


def test_a_span_without_a_cost_is_priced_by_its_model_and_an_unpriced_one_is_counted(
    store: DuckDBStore,
) -> None:
    from ramplight import release

    make_flag(store, candidate=50, at=T0)
    save_metrics(store, {"key": "cost", "type": "span", "span_field": "cost_usd", "aggregation": "sum"})
    prices = [
        {"model": "gpt-5", "input_per_million": 1.25, "output_per_million": 10.0},
        {"model": "gpt-5-mini", "input_per_million": 0.25, "output_per_million": 2.0},
    ]
    results = release.apply_documents(store, [], [], [], "test", prices=prices)
    assert [(r["key"], r["action"]) for r in results] == [("prices", "create")]
    again = release.apply_documents(store, [], [], [], "test", prices=prices)
    assert [r["action"] for r in again] == ["unchanged"]
    ev = Evidence()
    at = T0 + timedelta(hours=1)
    for unit, variation in (("u1", "control"), ("u2", "candidate"), ("u3", "control"), ("u4", "candidate")):
        ev.expose(unit, variation, at)

    def call(
        unit: str, model: str | None, tokens_in: int, tokens_out: int, cost: float | None = None
    ) -> None:
        _span(ev, f"t-{len(ev.spans)}", f"s-{len(ev.spans)}", None, unit, at, tokens_out)
        ev.spans[-1].update(gen_ai_model=model, input_tokens=tokens_in, cost_usd=cost)

    call("u1", "gpt-5-mini-2026-08-07", 1_000_000, 100_000)  # the longest prefix: 0.25 + 0.2
    call("u1", "gpt-5", 2_000, 1_000)  # exact: 0.0025 + 0.01
    call("u2", "gpt-5-2026-08-07", 10_000, 0)  # prefix gpt-5 (not gpt-5-mini): 0.0125
    call("u3", "claude-sonnet-5", 5_000, 500)  # no price, no cost: unpriced, never zero
    call("u4", "claude-sonnet-5", 5_000, 500, cost=0.75)  # its own cost wins
    ev.load(store)

    report = service.report(store, FLAG, "production")
    cost = {v["variation"]: v for v in report["metrics"][0]["variations"]}
    assert abs(cost["control"]["mean"] - (0.45 + 0.0125) / 2) < 1e-12  # u3 has no cost: counts 0…
    assert abs(cost["candidate"]["mean"] - (0.0125 + 0.75) / 2) < 1e-12
    assert report["data_quality"]["spans"]["spans_unpriced"] == 1  # …and is shown, not hidden
    assert report["sql"] + ";" == service.readout_sql(store, FLAG, "production", None, "duckdb")


def test_the_trace_summary_gives_latency_errors_tokens_and_cost_per_span_name_and_variation(
    store: DuckDBStore,
) -> None:
    import numpy as np

    from ramplight.analysis.options import ReadoutOptions

    make_flag(store, candidate=50, at=T0)
    ev = Evidence()
    at = T0 + timedelta(hours=1)
    durations: dict[str, list[float]] = {"control": [], "candidate": []}
    for i in range(40):
        unit, variation = f"u{i}", ("candidate" if i % 2 else "control")
        ev.expose(unit, variation, at)
        root = f"root-{i}"
        _span(ev, f"trace-{i}", root, None, unit, at, 0)
        for k in range(2):
            _span(ev, f"trace-{i}", f"chat-{i}-{k}", root, None, at, 100 + i)
            duration = 200.0 + 7 * i + 50 * k + (300 if variation == "candidate" else 0)
            ev.spans[-1].update(duration_ms=duration, input_tokens=1000, cost_usd=0.01,
                                status="error" if (i + k) % 5 == 0 else "ok")  # fmt: skip
            durations[variation].append(duration)
    ev.load(store)
    report = service.report(store, FLAG, "production", None, ReadoutOptions(traces=True))
    for variation in ("control", "candidate"):
        summary = report["traces"][variation]
        root, chat = summary["spans"]
        assert (root["name"], root["root"], chat["name"], chat["root"]) == (
            "conversation",
            True,
            "chat",
            False,
        )
        assert (summary["units"], summary["traces"], chat["spans"], chat["traces"]) == (20, 20, 40, 20)
        p50, p95 = np.quantile(durations[variation], [0.5, 0.95])  # linear: QUANTILE_CONT's definition
        assert math.isclose(chat["latency_p50_ms"], p50) and math.isclose(chat["latency_p95_ms"], p95)
        parity = 0 if variation == "control" else 1
        errors = sum((i + k) % 5 == 0 for i in range(parity, 40, 2) for k in range(2))
        assert chat["error_rate"] == errors / 40
        assert chat["input_tokens"] == 40_000 and math.isclose(chat["cost_usd"], 0.4)
        assert math.isclose(summary["cost_per_unit"], 0.02) and math.isclose(summary["cost_per_trace"], 0.02)
        assert root["spans_without_cost"] == 20  # roots carry tokens (0) and no cost: counted
    assert "traces" not in service.report(store, FLAG, "production")  # not asked, no span metric


def test_the_critical_path_follows_the_child_that_ends_last_at_every_level(store: DuckDBStore) -> None:
    from ramplight.analysis.readout import ReadoutOptions

    make_flag(store, candidate=50, at=T0)
    ev = Evidence()
    at = T0 + timedelta(hours=1)

    def span(
        trace: str, span_id: str, parent: str | None, name: str, ends_ms: int, unit: str | None = None
    ) -> None:
        _span(ev, trace, span_id, parent, unit, at, 0)
        ev.spans[-1].update(
            name=name, end_ts=at + timedelta(milliseconds=ends_ms), duration_ms=float(ends_ms)
        )

    for i, variation in enumerate(["control", "candidate"] * 2):
        unit = f"u{i}"
        ev.expose(unit, variation, at)
        trace = f"t{i}"
        span(trace, f"{trace}-root", None, "conversation", 1000, unit)
        span(trace, f"{trace}-r", f"{trace}-root", "retrieve", 200)
        # The candidate's model call escalates: a tool call inside it ends last.
        span(trace, f"{trace}-m", f"{trace}-root", "chat", 900 if variation == "control" else 980)
        span(trace, f"{trace}-t", f"{trace}-m", "execute_tool", 300 if variation == "control" else 950)
        span(trace, f"{trace}-g", f"{trace}-m", "generate", 880 if variation == "control" else 400)
    ev.load(store)
    traces = service.report(store, FLAG, "production", None, ReadoutOptions(traces=True))["traces"]
    paths = {v: {p["name"]: (p["traces"], p["share"]) for p in t["critical_path"]} for v, t in traces.items()}
    assert paths["control"] == {"conversation": (2, 1.0), "chat": (2, 1.0), "generate": (2, 1.0)}
    assert paths["candidate"] == {"conversation": (2, 1.0), "chat": (2, 1.0), "execute_tool": (2, 1.0)}


def test_routes_show_a_cascades_share_latency_and_cost_per_model(store: DuckDBStore) -> None:
    from ramplight.analysis.readout import ReadoutOptions

    make_flag(store, candidate=50, at=T0)
    ev = Evidence()
    at = T0 + timedelta(hours=1)
    for i in range(24):
        unit, variation = f"u{i}", ("candidate" if i % 2 else "control")
        ev.expose(unit, variation, at)
        if i >= 20:
            continue  # an exposed unit whose trace was not sampled
        _span(ev, f"t{i}", f"root{i}", None, unit, at, 0)
        calls = [("gpt-5", 800.0)] if variation == "control" else [("gpt-5-mini", 300.0)]
        if variation == "candidate" and i % 4 == 1:  # hard queries escalate to the big model
            calls.append(("gpt-5", 900.0))
        for k, (model, duration) in enumerate(calls):
            _span(ev, f"t{i}", f"call{i}-{k}", f"root{i}", None, at, 100)
            ev.spans[-1].update(
                gen_ai_model=model, duration_ms=duration, cost_usd=0.01 if model == "gpt-5" else 0.001
            )
    ev.load(store)
    traces = service.report(store, FLAG, "production", None, ReadoutOptions(traces=True))["traces"]
    control = {r["model"]: r for r in traces["control"]["routes"]}
    candidate = {r["model"]: r for r in traces["candidate"]["routes"]}
    assert set(control) == {"gpt-5"} and control["gpt-5"]["share"] == 1.0
    assert (candidate["gpt-5-mini"]["share"], candidate["gpt-5"]["share"]) == (1.0, 0.5)
    assert candidate["gpt-5"]["calls"] == 5 and candidate["gpt-5"]["latency_p95_ms"] == 900.0
    # Traces sampled: four more exposed units without one; per unit with a trace stays per traced unit.
    assert (traces["candidate"]["units"], traces["candidate"]["traced_units"]) == (12, 10)
    assert math.isclose(traces["candidate"]["cost_per_traced_unit"], (0.01 + 0.05) / 10)
    assert math.isclose(traces["candidate"]["cost_per_unit"], (0.01 + 0.05) / 12)
    assert math.isclose(candidate["gpt-5-mini"]["cost_usd"], 0.01) and math.isclose(
        candidate["gpt-5"]["cost_usd"], 0.05
    )


def test_an_eval_score_without_a_unit_joins_through_its_span_its_response_id_or_its_trace(
    store: DuckDBStore,
) -> None:
    make_flag(store, candidate=50, at=T0)
    save_metrics(store, {"key": "faithfulness", "type": "eval", "eval": "faithfulness"})
    ev = Evidence()
    at = T0 + timedelta(hours=1)
    for unit, variation in (("u1", "control"), ("u2", "candidate"), ("u3", "control"), ("u4", "candidate")):
        ev.expose(unit, variation, at)
    ev.exposures[3]["trace_id"] = "trace-4"
    _span(ev, "trace-1", "root-1", None, "u1", at, 0)
    _span(ev, "trace-1", "a", "root-1", None, at, 100)
    _span(ev, "trace-2", "root-2", None, "u2", at, 0)
    _span(ev, "trace-2", "b", "root-2", None, at, 100)
    ev.spans[-1]["response_id"] = "chatcmpl-2"
    _span(ev, "trace-3", "c", None, "u3", at, 100)
    later = at + timedelta(minutes=5)
    ev.score(None, "faithfulness", later, 0.25, trace_id="trace-1", span_id="a")  # its span's trace root: u1
    ev.score(None, "faithfulness", later, 0.75, response_id="chatcmpl-2")  # the generation it judged: u2
    ev.score(None, "faithfulness", later, 0.5, trace_id="trace-3", span_id="c")  # the span's own unit: u3
    ev.score(None, "faithfulness", later, 1.0, trace_id="trace-4")  # the exposure sharing its trace: u4
    ev.score("u1", "faithfulness", later, 0.75)  # its own unit
    ev.score(None, "faithfulness", later, 0.0, response_id="chatcmpl-unknown")  # placed nowhere: left out
    ev.load(store)

    report = service.report(store, FLAG, "production")
    scores = {v["variation"]: v for v in report["metrics"][0]["variations"]}
    # Per-unit mean score first (u1: (0.25 + 0.75) / 2), then the mean over units.
    assert (scores["control"]["units"], scores["control"]["mean"]) == (2, (0.5 + 0.5) / 2)
    assert (scores["candidate"]["units"], scores["candidate"]["mean"]) == (2, (0.75 + 1.0) / 2)


def test_the_cancellation_tax_counts_generations_that_ran_on_after_their_caller_was_cancelled(
    store: DuckDBStore,
) -> None:
    from ramplight.analysis.readout import ReadoutOptions

    make_flag(store, candidate=50, at=T0)
    ev = Evidence()
    at = T0 + timedelta(hours=1)

    def span(
        trace: str, span_id: str, parent: str | None, ends_ms: int, unit: str | None = None, **extra: Any
    ) -> None:
        _span(ev, trace, span_id, parent, unit, at, extra.pop("tokens", 0))
        ev.spans[-1].update(end_ts=at + timedelta(milliseconds=ends_ms), duration_ms=float(ends_ms), **extra)

    for i, variation in enumerate(["control", "candidate"] * 2):
        unit, trace = f"u{i}", f"t{i}"
        ev.expose(unit, variation, at)
        if variation == "control":  # stopped at 1 s; the provider honoured it (the generation stopped too)
            span(trace, f"{trace}-root", None, 1000, unit, cancelled=True, status="error")
            span(
                trace,
                f"{trace}-g",
                f"{trace}-root",
                1000,
                tokens=100,
                input_tokens=50,
                cancelled=True,
                cost_usd=0.01,
            )
        else:  # stopped at 1 s; the generation ran on to 4 s: 3/4 of its 400 tokens after the stop
            span(trace, f"{trace}-root", None, 1000, unit, cancelled=True, status="error")
            span(trace, f"{trace}-g", f"{trace}-root", 4000, tokens=400, input_tokens=50, cost_usd=0.04)
            span(trace, f"{trace}-n", f"{trace}-root", 500, tokens=20)  # ended before the stop
    span("t9", "t9-root", None, 1000, "u9", **{})  # a unit not exposed, and nothing cancelled
    ev.expose("u4", "candidate", at)
    span("t4", "t4-root", None, 1000, "u4")
    span("t4", "t4-g", "t4-root", 3000, tokens=300, cost_usd=0.5)  # ran long, nobody cancelled: no tax
    ev.load(store)
    traces = service.report(store, FLAG, "production", None, ReadoutOptions(traces=True))["traces"]
    control, candidate = traces["control"]["cancellation"], traces["candidate"]["cancellation"]
    assert (control["cancelled_traces"], control["cancelled_share"], control["generations_ran_on"]) == (
        2,
        1.0,
        0,
    )
    assert control["cost_usd"] is None and control["output_tokens"] == 0
    assert (candidate["cancelled_traces"], candidate["generations_ran_on"]) == (2, 2)
    assert math.isclose(candidate["cancelled_share"], 2 / 3)
    assert (candidate["input_tokens"], candidate["output_tokens"]) == (100, 800)
    assert math.isclose(candidate["output_tokens_after_cancel"], 2 * 400 * 3 / 4)
    assert math.isclose(candidate["cost_usd"], 0.08) and candidate["unpriced"] == 0
    assert math.isclose(candidate["cost_share"], 0.08 / 0.58)


def test_claimed_but_not_done_counts_claims_whose_trace_lacks_the_tool_span(store: DuckDBStore) -> None:
    import pytest

    from ramplight.core.errors import ValidationError
    from ramplight.core.metrics import check_metric, convert_metric

    make_flag(store, candidate=50, at=T0)
    claim = {
        "key": "unbacked_refunds",
        "type": "claim",
        "event": "refund_issued",
        "span_name": "execute_tool refund",
    }
    save_metrics(store, claim, {**claim, "key": "any_unbacked", "aggregation": "binary"})
    ev = Evidence()
    at = T0 + timedelta(hours=1)
    claims = {  # unit: [(trace of the claim, its trace has the refund tool span)]
        "u1": [("t1", True), ("t1b", True)],
        "u2": [("t2", False), ("t2b", True)],  # one refund claimed that no tool call made
        "u3": [("t3", False), ("t3b", False)],
        "u4": [("t4", True)],
    }
    for i, (unit, made) in enumerate(claims.items()):
        ev.expose(unit, "control" if i % 2 == 0 else "candidate", at)
        for trace, done in made:
            _span(ev, trace, f"{trace}-root", None, unit, at, 0)
            if done:
                _span(ev, trace, f"{trace}-tool", f"{trace}-root", None, at, 0)
                ev.spans[-1]["name"] = "execute_tool refund"
            ev.event(unit, "refund_issued", at + timedelta(minutes=1))
            ev.events[-1]["trace_id"] = trace
    ev.event("u4", "refund_issued", at + timedelta(minutes=2))  # no trace id: cannot be checked, left out
    ev.load(store)

    report = service.report(store, FLAG, "production")
    by_metric = {m["key"]: {v["variation"]: v for v in m["variations"]} for m in report["metrics"]}
    # control: u1 (0 unbacked), u3 (2); candidate: u2 (1), u4 (0)
    assert [by_metric["unbacked_refunds"][v]["mean"] for v in ("control", "candidate")] == [1.0, 0.5]
    assert [by_metric["any_unbacked"][v]["mean"] for v in ("control", "candidate")] == [0.5, 0.5]

    with pytest.raises(ValidationError, match="span_name: required for a claim metric"):
        check_metric(convert_metric({"key": "c", "type": "claim", "event": "refund_issued"}), {})
    with pytest.raises(ValidationError, match="aggregation: a claim metric counts unbacked claims"):
        check_metric(convert_metric({**claim, "aggregation": "count"}), {})


def test_a_span_quantile_reads_the_p95_latency_of_a_span_name_per_variation(store: DuckDBStore) -> None:
    import numpy as np

    make_flag(store, candidate=50, at=T0)
    save_metrics(
        store,
        {"key": "agent_p95", "type": "quantile", "span_field": "duration_ms", "span_name": "conversation",
         "quantile": 0.95, "direction": "decrease"},
    )  # fmt: skip
    rng = np.random.default_rng(11)
    ev = Evidence()
    at = T0 + timedelta(hours=1)
    values: dict[str, list[float]] = {"control": [], "candidate": []}
    for i in range(300):
        unit, variation = f"u{i}", ("candidate" if i % 2 else "control")
        ev.expose(unit, variation, at)
        for k in range(1 + i % 3):  # several requests per unit: values cluster by unit
            trace = f"t{i}-{k}"
            ms = float(rng.lognormal(7.0 if variation == "control" else 7.3, 0.3))
            _span(ev, trace, f"{trace}-root", None, unit, at + timedelta(minutes=k), 0)
            ev.spans[-1].update(duration_ms=ms, end_ts=at + timedelta(minutes=k, milliseconds=ms))
            _span(ev, trace, f"{trace}-chat", f"{trace}-root", None, at + timedelta(minutes=k), 10)
            values[variation].append(ms)
    ev.load(store)

    report = service.report(store, FLAG, "production")
    (metric,) = report["metrics"]
    arms = {v["variation"]: v for v in metric["variations"]}
    for variation, seen in values.items():
        assert arms[variation]["events"] == len(seen)
        assert math.isclose(arms[variation]["value"], float(np.percentile(seen, 95)), rel_tol=1e-12)
    (comparison,) = metric["comparisons"]
    low, high = comparison["fixed"]["ci_low"], comparison["fixed"]["ci_high"]
    assert 0 < low < high  # the candidate's p95 is clearly higher: a latency guardrail would hold it
    assert "traces" in report  # a span metric brings the trace summary along


def test_a_quantile_reads_an_event_or_a_span_field_never_both_or_neither() -> None:
    import pytest

    from ramplight.core.errors import ValidationError
    from ramplight.core.metrics import check_metric, convert_metric

    base = {"key": "p95", "type": "quantile", "quantile": 0.95}
    for doc in ({**base}, {**base, "event": "latency_ms", "span_field": "duration_ms"}):
        with pytest.raises(
            ValidationError, match="event: a quantile reads the values of an `event` or of a `span_field`"
        ):
            check_metric(convert_metric(doc), {})
    with pytest.raises(ValidationError, match="span_field: error is 0 or 1"):
        check_metric(convert_metric({**base, "span_field": "error"}), {})
    check_metric(convert_metric({**base, "span_field": "output_tokens", "span_name": "chat"}), {})


def test_the_span_that_records_the_flag_evaluation_counts_though_it_starts_before_the_exposure(
    store: DuckDBStore,
) -> None:
    from ramplight.analysis.readout import ReadoutOptions

    make_flag(store, candidate=50, at=T0)
    save_metrics(store, {"key": "answer_ms", "type": "span", "span_field": "duration_ms",
                         "span_name": "invoke_agent", "aggregation": "mean"})  # fmt: skip
    ev = Evidence()
    at = T0 + timedelta(hours=1)
    for i, variation in enumerate(["control", "candidate"] * 2):
        unit, trace = f"u{i}", f"t{i}"
        # The SDK records the exposure inside the root span, a moment after the span began…
        ev.expose(unit, variation, at + timedelta(microseconds=40))
        _span(ev, trace, f"{trace}-root", None, unit, at, 0)
        ev.spans[-1].update(name="invoke_agent")
        _span(ev, trace, f"{trace}-chat", f"{trace}-root", None, at + timedelta(milliseconds=5), 100)
        # …and a span that was over before the flag was evaluated is not the flag's doing.
        _span(ev, trace, f"{trace}-auth", f"{trace}-root", None, at - timedelta(seconds=2), 0)
        ev.spans[-1].update(name="authenticate")
    ev.load(store)
    report = service.report(store, FLAG, "production", None, ReadoutOptions(traces=True))
    answer = {v["variation"]: v for v in report["metrics"][0]["variations"]}
    assert (answer["control"]["units"], answer["candidate"]["units"]) == (2, 2)
    for summary in report["traces"].values():
        assert summary["traces"] == 2
        assert [(s["name"], s["spans"]) for s in summary["spans"]] == [("invoke_agent", 2), ("chat", 2)]
        assert [(p["name"], p["share"]) for p in summary["critical_path"]] == [
            ("chat", 1.0),
            ("invoke_agent", 1.0),
        ]
