"""Bring your own tables: exposures and events read from a team's camelCase tables through a
source's SQL and field mapping give the same readout as the same evidence in Ramplight's own
tables — and a bad mapping, a forbidden table or a missing column is refused by name."""

from __future__ import annotations

import math
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from ramplight import control, release
from ramplight.analysis import service
from ramplight.core.errors import ValidationError
from ramplight.core.sources import Source, check_source
from ramplight.store.base import SqlSandbox
from ramplight.store.duckdb import DuckDBStore
from tests.analysis.conftest import FLAG, T0, Evidence, make_flag, save_metrics
from tests.analysis.dataset import generate

TEAM_TABLES = frozenset({"support_exposures", "support_events", "support_conversations"})

# The seed article's shape: camelCase columns, the join fields inside a JSON payload for events.
EXPOSURES_AS_TEAM_TABLE = """
CREATE TABLE support_exposures AS
SELECT flag_key AS "flagKey", unit_id AS "unitId", assigned_variation AS "variation",
       served_variation AS "servedVariation", fallback_reason AS "fallbackReason",
       attributes AS "context", strftime(ts AT TIME ZONE 'UTC', '%Y-%m-%dT%H:%M:%S.%fZ') AS "timestamp"
FROM exposures
"""
EVENTS_AS_TEAM_TABLE = """
CREATE TABLE support_events AS
SELECT json_object('unitId', unit_id, 'flagKey', flag_key, 'assignmentUnit', assignment_unit,
                   'traceId', trace_id) AS payload,
       name AS "event", value AS "amount", properties AS "props", ts AS "occurredAt"
FROM events
"""
SOURCES: list[dict[str, Any]] = [
    {
        "key": "support_exposures",
        "kind": "exposures",
        "description": "exposures from the support team's event table",
        "sql": "SELECT * FROM support_exposures",
        "fields": {
            "flag_key": "flagKey",
            "unit_id": "unitId",
            "assigned_variation": "variation",
            "served_variation": "servedVariation",
            "fallback_reason": "fallbackReason",
            "attributes": "context",
            "ts": "timestamp",
        },
        "constants": {"assignment_unit": "conversation", "environment": "production"},
    },
    {
        "key": "support_events",
        "kind": "events",
        "sql": "SELECT * FROM support_events",
        "fields": {
            "unit_id": "payload.unitId",
            "flag_key": "payload.flagKey",
            "assignment_unit": "payload.assignmentUnit",
            "trace_id": "payload.traceId",
            "name": "event",
            "value": "amount",
            "properties": "props",
            "ts": "occurredAt",
        },
    },
]


def _store(path: Path) -> DuckDBStore:
    store = DuckDBStore(path, sandbox=SqlSandbox(tables=TEAM_TABLES))
    control.ensure_default_environments(store, clock=lambda: T0 - timedelta(days=30))
    return store


def _metrics(report: dict[str, Any]) -> dict[str, Any]:
    return {m["key"]: m for m in report["metrics"]}


NOW_DEPENDENT = {"days_remaining"}
"""Figures that move with the clock between the two readouts (traffic per day so far)."""


def _close(a: Any, b: Any, path: str = "") -> None:
    if isinstance(a, dict):
        assert set(a) == set(b), path
        for k in set(a) - NOW_DEPENDENT:
            _close(a[k], b[k], f"{path}.{k}")
    elif isinstance(a, list):
        assert len(a) == len(b), path
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            _close(x, y, f"{path}[{i}]")
    elif isinstance(a, float) and isinstance(b, float):
        assert math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12) or (math.isnan(a) and math.isnan(b)), path
    else:
        assert a == b, path


def test_a_readout_on_the_teams_own_tables_equals_one_on_ramplights(tmp_path: Path) -> None:
    own = _store(tmp_path / "own.duckdb")
    generate(own)
    expected = service.report(own, FLAG, "production")
    own.close()

    theirs = _store(tmp_path / "theirs.duckdb")
    generate(theirs)
    con = theirs.connection()
    con.execute(EXPOSURES_AS_TEAM_TABLE)
    con.execute(EVENTS_AS_TEAM_TABLE)
    con.execute("DELETE FROM exposures")
    con.execute("DELETE FROM events")
    results = release.apply_documents(theirs, [], [], [], "test", sources=SOURCES)
    assert [(r["key"], r["action"]) for r in results] == [
        ("support_exposures", "create"),
        ("support_events", "create"),
    ]
    got = service.report(theirs, FLAG, "production")
    assert got["data_quality"]["exposed_units"] > 300
    assert set(_metrics(got)) == set(_metrics(expected))
    # Every figure of every metric (a SQL metric reading `events` included), the data quality
    # and the phases agree; only the SQL text differs.
    _close(_metrics(got), _metrics(expected))
    _close(got["data_quality"], expected["data_quality"])
    _close(got["phases"], expected["phases"])
    # The SQL printed is the SQL that runs: the sources' queries are in it.
    assert "support_events" in got["sql"] and "support_exposures" in got["sql"]
    printed = service.readout_sql(theirs, FLAG, "production", None, "duckdb")
    assert "FROM support_exposures" in printed and '"flagKey"' in printed
    # Applying the same file again changes nothing.
    again = release.apply_documents(theirs, [], [], [], "test", sources=SOURCES)
    assert {r["action"] for r in again} == {"unchanged"}
    theirs.close()


def test_a_wide_table_of_outcomes_becomes_one_event_per_outcome(tmp_path: Path) -> None:
    """The seed's outcome record: one row per conversation with boolean and numeric outcomes as
    columns (`resolvedWithoutEscalation`, `latencyMs`) or inside JSON."""
    own = _store(tmp_path / "own.duckdb")
    theirs = _store(tmp_path / "theirs.duckdb")
    for s in (own, theirs):
        make_flag(s, candidate=50, at=T0)
        save_metrics(
            s,
            {"key": "resolved", "type": "event", "event": "resolved", "aggregation": "mean"},
            {"key": "latency", "type": "event", "event": "latency_ms", "aggregation": "mean"},
            {"key": "cost", "type": "event", "event": "cost_usd", "aggregation": "sum"},
        )
    ev = Evidence()
    rows = []
    for i in range(200):
        unit, variation = f"conv_{i:05d}", ("candidate" if i % 3 == 0 else "control")
        at = T0 + timedelta(minutes=5 * i)
        ev.expose(unit, variation, at)
        resolved = (i * 7) % 5 != 0
        latency = 1000 + (i * 37) % 900 + (150 if variation == "candidate" else 0)
        cost = None if i % 11 == 0 else round(0.01 + (i % 13) / 1000, 4)
        done = at + timedelta(minutes=3)
        ev.event(unit, "resolved", done, float(resolved))
        ev.event(unit, "latency_ms", done, float(latency))
        if cost is not None:
            ev.event(unit, "cost_usd", done, cost)
        rows.append((unit, variation, resolved, latency, cost, done))
    ev.load(own)
    theirs_ev = Evidence(exposures=ev.exposures)
    theirs_ev.load(theirs)
    con = theirs.connection()
    con.execute(
        'CREATE TABLE support_conversations ("unitId" VARCHAR, "variation" VARCHAR,'
        ' "resolvedWithoutEscalation" BOOLEAN, "latencyMs" INTEGER, "extra" JSON, "timestamp" TIMESTAMPTZ)'
    )
    con.executemany(
        "INSERT INTO support_conversations VALUES (?, ?, ?, ?, ?, ?)",
        [
            (u, v, r, lat, None if c is None else f'{{"estimatedCostUsd": {c}}}', t)
            for u, v, r, lat, c, t in rows
        ],
    )
    source = {
        "key": "conversations",
        "kind": "events",
        "sql": "SELECT * FROM support_conversations",
        "fields": {"unit_id": "unitId", "ts": "timestamp"},
        "constants": {"assignment_unit": "conversation"},
        "outcomes": {
            "resolved": "resolvedWithoutEscalation",
            "latency_ms": "latencyMs",
            "cost_usd": "extra.estimatedCostUsd",
        },
    }
    control.save_source(theirs, source, None)
    expected = _metrics(service.report(own, FLAG, "production"))
    got = _metrics(service.report(theirs, FLAG, "production"))
    _close(got, expected)
    assert got["cost"]["variations"]  # the JSON-borne outcome counted where present
    own.close()
    theirs.close()


def test_a_mapping_error_names_every_field_and_the_contracts_name(store: DuckDBStore) -> None:
    bad = Source(
        key="bad",
        kind="exposures",
        sql="SELECT * FROM support_exposures",
        fields={"flagKey": "flagKey", "unitId": "unitId", "variation": "variation", "ts": "when"},
        constants={"attributes": "x"},
    )
    with pytest.raises(ValidationError) as caught:
        check_source(bad, TEAM_TABLES)
    problems = {p.field: p.reason for p in caught.value.problems}
    assert "the contract's name is 'flag_key'" in problems["fields.flagKey"]
    assert "the contract's name is 'unit_id'" in problems["fields.unitId"]
    assert "the contract's name is 'assigned_variation'" in problems["fields.variation"]
    assert problems["constants.attributes"] == "map it from a JSON column in `fields`"
    for required in ("flag_key", "unit_id", "assigned_variation"):
        assert problems[f"fields.{required}"].startswith("required")


@pytest.mark.parametrize(
    ("sql", "reason"),
    [
        ("SELECT * FROM api_keys", "control-plane table"),
        ("SELECT * FROM sources", "control-plane table"),
        ("SELECT * FROM read_csv('/etc/passwd')", "table functions and files are not allowed"),
        ("SELECT * FROM secret_table", "not readable"),
        ("SELECT read_text('/etc/passwd') AS unitId", "not allowed in user SQL"),
    ],
)
def test_a_sources_sql_is_sandboxed_like_a_sql_metric(store: DuckDBStore, sql: str, reason: str) -> None:
    doc = {**SOURCES[0], "sql": sql}
    with pytest.raises(ValidationError) as caught:
        control.save_source(store, doc, None)
    assert any(reason in p.reason and p.field == "sql" for p in caught.value.problems), caught.value
    assert store.list_sources() == []


def test_a_column_that_is_not_there_is_refused_with_the_engines_reason(tmp_path: Path) -> None:
    store = _store(tmp_path / "s.duckdb")
    store.connection().execute('CREATE TABLE support_exposures ("flagKey" VARCHAR, "unitId" VARCHAR)')
    with pytest.raises(ValidationError) as caught:
        control.save_source(store, SOURCES[0], None)
    problems = {p.field: p.reason for p in caught.value.problems}
    assert problems == {
        "fields.assigned_variation": "the query returns no column 'variation' (it returns: flagKey, unitId)",
        "fields.served_variation": "the query returns no column 'servedVariation' (it returns: flagKey, unitId)",
        "fields.fallback_reason": "the query returns no column 'fallbackReason' (it returns: flagKey, unitId)",
        "fields.attributes": "the query returns no column 'context' (it returns: flagKey, unitId)",
        "fields.ts": "the query returns no column 'timestamp' (it returns: flagKey, unitId)",
    }
    store.connection().execute('ALTER TABLE support_exposures ADD COLUMN "Variation" VARCHAR')
    with pytest.raises(ValidationError) as caught:
        control.save_source(
            store, {**SOURCES[0], "fields": {**SOURCES[0]["fields"], "unit_id": "unitID"}}, None
        )
    problems = {p.field: p.reason for p in caught.value.problems}
    assert problems["fields.unit_id"] == "the query returns no column 'unitID'; did you mean 'unitId'?"
    assert (
        problems["fields.assigned_variation"]
        == "the query returns no column 'variation'; did you mean 'Variation'?"
    )
    # A column that is there but cannot be cast: the engine's reason, naming the source.
    store.connection().execute(
        "CREATE OR REPLACE TABLE support_exposures AS SELECT 'f' AS \"flagKey\", 'u' AS \"unitId\","
        " 'c' AS variation, 'c' AS \"servedVariation\", NULL AS \"fallbackReason\", NULL::JSON AS context,"
        ' [1, 2] AS "timestamp"'
    )
    with pytest.raises(ValidationError) as caught:
        control.save_source(store, SOURCES[0], None)
    assert caught.value.message.startswith("source 'support_exposures':")
    assert "TIMESTAMP" in caught.value.message.upper()
    assert store.list_sources() == []
    store.close()


def test_a_source_that_breaks_later_fails_the_readout_by_name_not_with_a_500(tmp_path: Path) -> None:
    store = _store(tmp_path / "s.duckdb")
    generate(store)
    store.connection().execute(EXPOSURES_AS_TEAM_TABLE)
    control.save_source(store, SOURCES[0], None)
    store.connection().execute("DROP TABLE support_exposures")  # the team's pipeline moved it
    with pytest.raises(ValidationError) as caught:
        service.report(store, FLAG, "production")
    assert "source 'support_exposures'" in caught.value.message
    assert "support_exposures" in caught.value.message.split(":", 1)[1]
    control.delete_source(store, "support_exposures")
    assert service.report(store, FLAG, "production")["data_quality"]["exposed_units"] > 300
    store.close()


def test_a_sources_times_keep_their_microseconds_on_clickhouse(tmp_path: Path) -> None:
    """The source's relation as ClickHouse runs it (chdb): ISO text times with an offset and
    DateTime64 columns both read to the microsecond, in UTC."""
    from chdb import session

    from ramplight.analysis.sources import relation
    from ramplight.analysis.sql import render

    engine = session.Session(str(tmp_path / "chdb"))
    try:
        engine.query(
            "CREATE TABLE support_exposures (flagKey String, unitId String, variation String, "
            "timestamp String, at DateTime64(6, 'UTC')) ENGINE = MergeTree ORDER BY unitId"
        )
        engine.query(
            "INSERT INTO support_exposures VALUES ('f', 'u1', 'control', '2026-06-23T11:18:44.123456+02:00',"
            " '2026-06-23 09:18:44.654321')"
        )
        for column, expected in (
            ("timestamp", "2026-06-23 09:18:44.123456"),
            ("at", "2026-06-23 09:18:44.654321"),
        ):
            source = Source(
                key="x", kind="exposures", sql="SELECT * FROM support_exposures",
                fields={"flag_key": "flagKey", "unit_id": "unitId", "assigned_variation": "variation", "ts": column},
            )  # fmt: skip
            sql = render(relation(source), "clickhouse")
            out = engine.query(f"SELECT toString(ts) FROM ({sql})", "CSV").data().strip().strip('"')
            assert out == expected, (column, out)
    finally:
        engine.close()
