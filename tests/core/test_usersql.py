"""The tree walk that decides what user-written SQL may read, case by case."""

from __future__ import annotations

import pytest

from ramplight.core.usersql import EVIDENCE_TABLES, check_user_sql

READABLE = EVIDENCE_TABLES | {"tickets"}


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT unit_id, ts, value FROM events WHERE name = 'x'",
        "SELECT conversation AS unit_id, opened AS ts, minutes AS value FROM tickets",
        "SELECT t.unit_id, t.ts, 1 AS value FROM main.events AS t JOIN exposures USING (unit_id)",
        "WITH recent AS (SELECT * FROM events) SELECT unit_id, ts, value FROM recent",
        "SELECT unit_id, ts, value FROM events UNION ALL SELECT unit_id, ts, score FROM evals",
        "SELECT unit_id, ts, CAST(properties ->> '$.ms' AS DOUBLE) AS value FROM EVENTS",
        "SELECT unit_id, ts, value FROM (SELECT * FROM events) AS sub, (VALUES (1)) AS v(x)",
    ],
)
def test_queries_over_readable_tables_pass(sql: str) -> None:
    tree, problems = check_user_sql(sql, READABLE)
    assert problems == [] and tree is not None


@pytest.mark.parametrize(
    ("sql", "reason"),
    [
        ("SELECT * FROM read_text('/etc/passwd')", "read_text(…): table functions"),
        ("SELECT * FROM read_csv('https://example.com/x.csv')", "table functions and files"),
        ("SELECT * FROM '/etc/passwd'", "'/etc/passwd', which is not readable"),
        ("SELECT * FROM glob('/etc/*')", "glob(…)"),
        ("SELECT * FROM query_table('api_keys')", "query_table(…)"),
        ("SELECT key_hash AS unit_id FROM api_keys", "api_keys, a control-plane table"),
        ("FROM api_keys", "api_keys, a control-plane table"),
        ("SELECT * FROM main.flag_changes", "flag_changes, a control-plane table"),
        ("SELECT * FROM other_db.main.events", "only unqualified table names"),
        ("SELECT * FROM events UNION SELECT * FROM flags", "flags, a control-plane table"),
        ("SELECT * FROM secrets_of_the_team", "'secrets_of_the_team', which is not readable"),
        # A CTE named like a control table is the CTE only where it is in scope.
        (
            "SELECT (WITH api_keys AS (SELECT 1) SELECT * FROM api_keys), * FROM api_keys",
            "api_keys, a control-plane table",
        ),
        ("SELECT nextval('seq') AS unit_id", "nextval()"),
        ("SELECT current_setting('threads') AS value", "current_setting()"),
        ("SELECT set_config('role', 'postgres', true) AS unit_id", "set_config()"),
        ("SELECT query_to_xml('SELECT * FROM api_keys', true, true, '') AS v", "query_to_xml()"),
        ("SELECT table_to_xml('api_keys', true, true, '') AS v", "table_to_xml()"),
        ("SELECT lo_import('/etc/passwd') AS v", "lo_import()"),
        ("SELECT unit_id FROM events WHERE unit_id IN (SELECT * FROM duckdb_settings())", "duckdb_settings"),
        ("SET enable_external_access = true", "exactly one SELECT"),
        ("ATTACH '/tmp/other.duckdb' AS other", "exactly one SELECT"),
        ("COPY (SELECT * FROM events) TO '/tmp/out.csv'", "exactly one SELECT"),
        ("SELECT 1; DROP TABLE events", "exactly one SELECT"),
        ("INSERT INTO events SELECT * FROM events", "exactly one SELECT"),
        ("SELECT FROM WHERE", "does not parse"),
    ],
)
def test_anything_beyond_reading_allowed_tables_is_refused_with_the_reason(sql: str, reason: str) -> None:
    tree, problems = check_user_sql(sql, READABLE)
    assert tree is None
    assert any(reason in p.reason for p in problems), [p.reason for p in problems]
    assert all(p.field == "sql" for p in problems)


def test_an_operator_cannot_make_a_control_table_readable() -> None:
    _, problems = check_user_sql("SELECT * FROM api_keys", {"api_keys", *EVIDENCE_TABLES})
    assert "control-plane" in problems[0].reason


def test_every_problem_is_listed_once() -> None:
    _, problems = check_user_sql(
        "SELECT * FROM api_keys JOIN flags ON TRUE JOIN api_keys AS k ON TRUE", READABLE
    )
    assert sorted(p.reason for p in problems) == [
        "reads api_keys, a control-plane table",
        "reads flags, a control-plane table",
    ]
