"""Evidence sources over HTTP and from the CLI: a team's table defined as a source drives the
readout a running server computes; mistakes come back as 422s naming each field."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import yaml

from ramplight.store.duckdb import DuckDBStore
from tests.factories import RunningServer, flag_doc

SOURCE = {
    "kind": "events",
    "description": "one row per support conversation, outcomes as columns",
    "sql": "SELECT * FROM support_conversations",
    "fields": {"unit_id": "unitId", "ts": "timestamp", "flag_key": "flagKey"},
    "constants": {"assignment_unit": "conversation"},
    "outcomes": {"resolved": "resolvedWithoutEscalation", "latency_ms": "latencyMs"},
}


def _team_table(path: Path, units: int) -> datetime:
    """The team's table, its rows a few minutes ahead: after the flag is created, within the
    clock skew ingestion allows."""
    start = datetime.now(UTC) + timedelta(minutes=3)
    store = DuckDBStore(path)
    con = store.connection()
    con.execute(
        'CREATE TABLE support_conversations ("flagKey" VARCHAR, "unitId" VARCHAR,'
        ' "resolvedWithoutEscalation" BOOLEAN, "latencyMs" INTEGER, "timestamp" TIMESTAMPTZ)'
    )
    con.executemany(
        "INSERT INTO support_conversations VALUES (?, ?, ?, ?, ?)",
        [
            (
                "support_assistant_profile",
                f"conv_{i}",
                i % 4 != 0,
                900 + 10 * (i % 30),
                start + timedelta(seconds=i),
            )
            for i in range(units)
        ],
    )
    store.close()
    return start


def test_a_source_defined_over_http_feeds_the_servers_readout(
    make_server: Callable[..., RunningServer], tmp_path: Path
) -> None:
    db = tmp_path / "team.duckdb"
    start = _team_table(db, 120)
    server = make_server(db=db, sql_tables=frozenset({"support_conversations"}), guardian_interval=0)
    server.create_flag()
    for key, event in (("resolved", "resolved"), ("latency", "latency_ms")):
        doc = {"type": "event", "event": event, "aggregation": "mean"}
        assert server.admin.put(f"/api/metrics/{key}", json=doc).status_code == 200
    exposures = [
        {
            "ts": (start + timedelta(seconds=i) - timedelta(milliseconds=500)).isoformat(),
            "flag_key": "support_assistant_profile",
            "assignment_unit": "conversation",
            "unit_id": f"conv_{i}",
            "assigned_variation": "candidate" if i % 2 else "control",
            "served_variation": "candidate" if i % 2 else "control",
        }
        for i in range(120)
    ]
    sent = httpx.post(
        f"{server.url}/ingest/batch",
        json={"exposures": exposures},
        headers={"Authorization": f"Bearer {server.sdk_key()}"},
    )
    assert sent.json()["accepted"]["exposures"] == 120

    typo = {**SOURCE, "fields": {"unitID": "unitId", "ts": "timestamp"}, "outcomes": {"resolved": "resolved"}}
    refused = server.admin.put("/api/sources/conversations", json=typo)
    assert refused.status_code == 422
    problems = {p["field"]: p["reason"] for p in refused.json()["problems"]}
    assert "the contract's name is 'unit_id'" in problems["fields.unitID"]
    assert problems["fields.unit_id"].startswith("required")
    forbidden = server.admin.put(
        "/api/sources/conversations", json={**SOURCE, "sql": "SELECT * FROM api_keys"}
    )
    assert forbidden.status_code == 422 and "control-plane table" in forbidden.text

    created = server.admin.put("/api/sources/conversations", json=SOURCE)
    assert created.status_code == 200, created.text
    assert created.json()["version"] == 1
    assert server.admin.put("/api/sources/conversations", json=SOURCE).status_code == 409  # no version read
    assert [s["key"] for s in server.admin.get("/api/sources").json()] == ["conversations"]

    report = server.admin.get("/api/flags/support_assistant_profile/report").json()
    metrics = {m["key"]: m for m in report["metrics"]}
    resolved = {v["variation"]: v for v in metrics["resolved"]["variations"]}
    assert resolved["control"]["units"] == resolved["candidate"]["units"] == 60
    expected = sum(i % 4 != 0 for i in range(0, 120, 2)) / 60
    assert abs(resolved["control"]["mean"] - expected) < 1e-12
    sql = server.admin.get("/api/flags/support_assistant_profile/sql").text
    assert "support_conversations" in sql and '"resolvedWithoutEscalation"' in sql

    assert server.admin.delete("/api/sources/conversations").status_code == 204
    assert server.admin.delete("/api/sources/conversations").status_code == 404
    after = server.admin.get("/api/flags/support_assistant_profile/report").json()
    assert {m["key"]: m for m in after["metrics"]}["resolved"]["variations"][0].get("units", 0) == 0


def test_sources_are_applied_from_a_file_and_listed_by_the_cli(tmp_path: Path) -> None:
    db = tmp_path / "cli.duckdb"
    _team_table(db, 10)
    spec = tmp_path / "ramplight.yaml"
    spec.write_text(yaml.safe_dump({"flags": [flag_doc()], "sources": [{"key": "conversations", **SOURCE}]}))
    env = {"RAMPLIGHT_SQL_TABLES": "support_conversations", "PATH": "/usr/bin:/bin"}

    def ramplight(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "ramplight", *args, "--db", str(db)],
            capture_output=True, text=True, env={**env, "PYTHONPATH": ":".join(sys.path)}, timeout=120,
        )  # fmt: skip

    applied = ramplight("apply", str(spec), "--json")
    assert applied.returncode == 0, applied.stderr
    assert {r["key"]: r["action"] for r in json.loads(applied.stdout)} == {
        "conversations": "create",
        "support_assistant_profile": "create",
    }
    listed = ramplight("sources", "list", "--json")
    assert json.loads(listed.stdout)[0]["outcomes"] == SOURCE["outcomes"]
    shown = ramplight("sources", "list")
    assert "conversations" in shown.stdout and "resolvedWithoutEscalation" in shown.stdout
    env.pop("RAMPLIGHT_SQL_TABLES")
    refused = ramplight("apply", str(spec))
    assert refused.returncode != 0
    assert "support_conversations" in refused.stderr and "not readable" in refused.stderr


def test_the_price_table_over_http(server: RunningServer) -> None:
    bad = server.admin.put("/api/prices", json=[{"model": "gpt-5", "input_per_million": -1, "output_per_million": 2},
                                                {"model": "gpt-5"}])  # fmt: skip
    assert bad.status_code == 422
    fields = {p["field"] for p in bad.json()["problems"]}
    assert fields == {"prices[0].input_per_million", "prices[1]"}
    table = [{"model": "gpt-5-mini", "input_per_million": 0.25, "output_per_million": 2.0}]
    assert server.admin.put("/api/prices", json=table).json() == table
    assert server.admin.get("/api/prices").json() == table
    applied = server.admin.post("/api/apply", json={"prices": []}).json()
    assert applied == [{"key": "prices", "action": "update", "version": None, "diff": applied[0]["diff"]}]
    assert server.admin.get("/api/prices").json() == []
