"""User-written SQL against a real server: refused at definition, fenced at run time, time-limited,
reported as a 422 that names the metric — and the server keeps serving."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from ramplight.core.errors import QueryError
from ramplight.core.metrics import Metric
from tests.factories import RunningServer

FLAG = "support_assistant_profile"
REPORT = f"/api/flags/{FLAG}/report"


def store_of(server: RunningServer) -> Any:
    return server.thread.server.config.app.state.ramplight.store


@pytest.fixture
def sandboxed(make_server) -> RunningServer:
    server: RunningServer = make_server(sql_tables=frozenset({"tickets"}), sql_timeout=1.0)
    server.create_flag()
    # After the flag's creation (the server's own clock): earlier exposures belong to no phase.
    exposed_at = datetime.now(UTC) + timedelta(seconds=1)
    key = server.sdk_key()
    with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {key}"}) as sdk:
        exposures = [
            {
                "ts": exposed_at.isoformat(),
                "flag_key": FLAG,
                "assignment_unit": "conversation",
                "unit_id": f"c{i}",
                "assigned_variation": ("control", "candidate")[i % 2],
                "served_variation": ("control", "candidate")[i % 2],
            }
            for i in range(20)
        ]
        assert sdk.post("/ingest/batch", json={"exposures": exposures}).status_code == 200
    con = store_of(server).connection()
    con.execute("CREATE TABLE tickets (conversation VARCHAR, opened TIMESTAMPTZ, minutes DOUBLE)")
    con.execute(
        "INSERT INTO tickets SELECT 'c' || i, ?, i FROM range(20) t(i)", [exposed_at + timedelta(hours=1)]
    )
    return server


def put_sql_metric(server: RunningServer, key: str, sql: str) -> httpx.Response:
    return server.admin.put(f"/api/metrics/{key}", json={"type": "sql", "aggregation": "sum", "sql": sql})


def still_serving(server: RunningServer) -> None:
    assert server.admin.get("/api/flags").status_code == 200
    assert server.admin.get(REPORT, params={"metric": "ticket_minutes"}).status_code == 200


@pytest.mark.parametrize(
    ("sql", "reason"),
    [
        ("SELECT 'x' AS unit_id, now() AS ts, 1 AS value FROM read_text('/etc/passwd')", "table functions"),
        ("SELECT * FROM read_csv('http://127.0.0.1:9/x.csv')", "table functions"),
        ("ATTACH '/tmp/elsewhere.duckdb' AS elsewhere", "exactly one SELECT"),
        ("COPY (SELECT * FROM events) TO '/tmp/stolen.csv'", "exactly one SELECT"),
        ("SELECT id AS unit_id, created_at AS ts, 1 AS value FROM api_keys", "control-plane table"),
        ("SET enable_external_access = true", "exactly one SELECT"),
    ],
)
def test_a_sql_metric_beyond_reading_evidence_is_refused_at_definition(
    sandboxed: RunningServer, sql: str, reason: str
) -> None:
    response = put_sql_metric(sandboxed, "evil", sql)
    assert response.status_code == 422
    body = response.json()
    assert body["error"] == "validation_error" and "'evil'" in body["message"]
    assert any(p["field"] == "sql" and reason in p["reason"] for p in body["problems"]), body
    assert sandboxed.admin.get("/api/metrics").json() == []


def test_the_operators_own_tables_are_readable(sandboxed: RunningServer) -> None:
    sql = "SELECT conversation AS unit_id, opened AS ts, minutes AS value FROM tickets"
    assert put_sql_metric(sandboxed, "ticket_minutes", sql).status_code == 200
    report = sandboxed.admin.get(REPORT, params={"metric": "ticket_minutes"}).json()
    (metric,) = report["metrics"]
    means = {v["variation"]: v["mean"] for v in metric["variations"] if v["units"]}
    assert means == {"control": sum(range(0, 20, 2)) / 10, "candidate": sum(range(1, 20, 2)) / 10}


@pytest.mark.parametrize(
    ("sql", "reason"),
    [
        # Stored before the fence existed (or before the operator narrowed the list): checked again.
        ("SELECT id AS unit_id, created_at AS ts, 1 AS value FROM api_keys", "control-plane table"),
        ("SELECT 'x' AS unit_id, now() AS ts, 1 AS value FROM read_text('/etc/passwd')", "table functions"),
        # Passes the tree walk, fails in the engine: the engine's reason, naming the metric.
        (
            "SELECT conversation AS unit_id, opened AS ts, no_such_column AS value FROM tickets",
            "no_such_column",
        ),
    ],
)
def test_a_stored_metric_that_may_not_or_cannot_run_is_a_422_naming_it(
    sandboxed: RunningServer, sql: str, reason: str
) -> None:
    store_of(sandboxed).save_metric(Metric(key="legacy", type="sql", sql=sql, version=1), None)
    assert (
        put_sql_metric(
            sandboxed,
            "ticket_minutes",
            "SELECT conversation AS unit_id, opened AS ts, minutes AS value FROM tickets",
        ).status_code
        == 200
    )
    for path, params in ((REPORT, {}), (f"/api/flags/{FLAG}/units", {"format": "csv"})):
        response = sandboxed.admin.get(path, params=params)
        assert response.status_code == 422, response.text
        assert "'legacy'" in response.json()["message"] and reason in response.json()["message"]
    still_serving(sandboxed)


def test_a_query_past_the_time_limit_is_stopped_and_named(sandboxed: RunningServer) -> None:
    slow = (
        "WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r WHERE n < 1000000000) "
        "SELECT 'c1' AS unit_id, TIMESTAMPTZ '2099-01-01 00:00:00+00' AS ts, count(*) AS value FROM r"
    )
    assert put_sql_metric(sandboxed, "slow", slow).status_code == 200
    assert (
        put_sql_metric(
            sandboxed,
            "ticket_minutes",
            "SELECT conversation AS unit_id, opened AS ts, minutes AS value FROM tickets",
        ).status_code
        == 200
    )
    started = time.monotonic()
    response = sandboxed.admin.get(REPORT, params={"metric": "slow"})
    assert response.status_code == 422
    assert "'slow'" in response.json()["message"] and "time limit" in response.json()["message"]
    assert time.monotonic() - started < 30  # stopped, not run to completion (hours)
    still_serving(sandboxed)


@pytest.mark.parametrize(
    ("sql", "reason"),
    [
        ("SELECT * FROM read_text('/etc/passwd')", "disabled by configuration"),
        ("SELECT * FROM read_csv('http://127.0.0.1:9/x.csv')", "disabled by configuration"),
        ("ATTACH '/tmp/elsewhere.duckdb' AS elsewhere", "disabled by configuration"),
        ("COPY (SELECT 1) TO '/tmp/stolen.csv'", "disabled by configuration"),
        ("SET enable_external_access = true", "locked"),
        ("INSERT INTO tickets VALUES ('x', now(), 1)", "read-only"),
    ],
)
def test_the_engine_itself_refuses_what_the_tree_walk_would(
    sandboxed: RunningServer, sql: str, reason: str
) -> None:
    """The second fence: even SQL that slipped past the tree walk reads no files, URLs or other
    databases, cannot unlock the engine, and writes nothing."""
    with pytest.raises(QueryError) as caught:
        store_of(sandboxed).read(sql)
    assert reason in caught.value.reason
    still = store_of(sandboxed).read("SELECT count(*) FROM tickets")
    assert still == (["count_star()"], [(20,)])
