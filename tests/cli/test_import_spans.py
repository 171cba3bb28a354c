"""`ramplight import` of OTLP/JSON spans (as a Collector's file exporter writes them, one request
per line): into the database file, or through a running server; a second import stores nothing."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import yaml

from tests.cli.test_cli import cli_env, ramplight
from tests.factories import RunningServer, flag_doc


def _request(
    trace: str, spans: list[tuple[str, str, dict[str, str]]], events: list[dict[str, Any]]
) -> dict[str, Any]:
    now = time.time_ns()
    rows = [
        {
            "traceId": trace,
            "spanId": span_id,
            "name": name,
            "startTimeUnixNano": str(now),
            "endTimeUnixNano": str(now + 40_000_000),
            "attributes": [{"key": k, "value": {"stringValue": v}} for k, v in attrs.items()],
            "events": events if i == 0 else [],
        }
        for i, (span_id, name, attrs) in enumerate(spans)
    ]
    return {"resourceSpans": [{"scopeSpans": [{"spans": rows}]}]}


def _file(tmp_path: Path) -> Path:
    evaluation = {
        "name": "feature_flag.evaluation",
        "timeUnixNano": str(time.time_ns()),
        "attributes": [
            {"key": "feature_flag.key", "value": {"stringValue": "support_assistant_profile"}},
            {"key": "feature_flag.result.variant", "value": {"stringValue": "candidate"}},
        ],
    }
    first = _request(
        "0af7651916cd43dd8448eb211c80319c",
        [("b7ad6b7169203331", "conversation", {"feature_flag.context.id": "conv-1"}),
         ("b7ad6b7169203332", "chat", {"gen_ai.input.messages": "secret prompt"})],
        [evaluation],
    )  # fmt: skip
    second = _request("0af7651916cd43dd8448eb211c80319d", [("c7ad6b7169203331", "conversation", {})], [])
    path = tmp_path / "traces.json"
    path.write_text(json.dumps(first) + "\n" + json.dumps(second) + "\n")
    return path


def test_otlp_json_spans_import_into_the_file_once(tmp_path: Path) -> None:
    db = tmp_path / "cli.duckdb"
    flags = tmp_path / "flags.yaml"
    flags.write_text(yaml.safe_dump({"flags": [flag_doc()]}))
    ramplight("apply", str(flags), "--db", str(db))
    path = _file(tmp_path)
    first = json.loads(ramplight("import", str(path), "--db", str(db), "--json").stdout)
    assert (first["kind"], first["requests"], first["accepted"], first["exposures"]) == ("spans", 2, 3, 1)
    assert first["dropped_attributes"] == 1 and first["problems"] == []
    again = json.loads(ramplight("import", str(path), "--kind", "spans", "--db", str(db), "--json").stdout)
    assert (again["accepted"], again["exposures"], again["duplicates"]) == (0, 0, 4)
    shown = ramplight("report", "support_assistant_profile", "--db", str(db), "--json").stdout
    assert json.loads(shown)["data_quality"]["exposed_units"] == 1
    text = ramplight("report", "support_assistant_profile", "--db", str(db), "--traces").stdout
    assert "critical path, candidate: chat 50%, conversation 50%" in text  # two root spans here
    bad = tmp_path / "bad.json"
    bad.write_text('{"resourceSpans": []}\nnot json\n')
    refused = ramplight("import", str(bad), "--db", str(db), check=False)
    assert refused.returncode != 0 and "line 2 is not an OTLP/JSON request" in refused.stderr


def test_otlp_json_spans_import_through_a_running_server(server: RunningServer, tmp_path: Path) -> None:
    server.create_flag()
    env = cli_env(RAMPLIGHT_URL=server.url, RAMPLIGHT_ADMIN_KEY=server.admin_key)
    result = json.loads(ramplight("import", str(_file(tmp_path)), "--json", env=env).stdout)
    assert (result["requests"], result["accepted"]) == (2, 3)
    status = server.admin.get("/api/ingest/status").json()
    assert status["span_attributes_dropped"] == 1


def test_the_eval_gate_exits_0_when_the_candidate_is_no_worse_and_1_when_it_may_be(tmp_path: Path) -> None:
    rows = []
    for i in range(30):
        base = 0.7 + (i % 7) / 50
        rows.append(
            {"item": f"q{i}", "variation": "control", "scores": {"faithfulness": base, "helpfulness": base}}
        )
        rows.append({"item": f"q{i}", "variation": "candidate",
                     "scores": {"faithfulness": base + 0.004 * (i % 3 - 1), "helpfulness": base - 0.08}})  # fmt: skip
    evals = tmp_path / "evals.jsonl"
    evals.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    passed = ramplight("gate", str(evals), "--margin", "faithfulness=0.02", "--json")
    result = json.loads(passed.stdout)
    assert result["passed"] is True and [s["name"] for s in result["scores"]] == [
        "faithfulness",
        "helpfulness",
    ]
    assert result["scores"][1]["passed"] is None  # shown, not gated
    failed = ramplight(
        "gate", str(evals), "--margin", "faithfulness=0.02", "--margin", "helpfulness=0.05", check=False
    )
    assert failed.returncode == 1 and "FAIL" in failed.stdout and "gate failed" in failed.stdout
    bad = ramplight("gate", str(evals), "--margin", "faithfulness", check=False)
    assert bad.returncode == 1 and "use NAME=MARGIN" in bad.stderr
