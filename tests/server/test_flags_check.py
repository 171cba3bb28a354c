"""Flags saved under older rules: a stored flag whose regex today's checks refuse (a shape with
catastrophic backtracking, accepted before the RE2 rules) is named by `control.stored_problems`,
`GET /api/flags-check`, `ramplight flags check` and a warning when the server starts — instead of
serving its default in every SDK without a word."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import duckdb
import pytest

from ramplight import control
from ramplight.core.evaluate import CompiledConfig
from ramplight.store.duckdb import DuckDBStore
from tests.core.builders import clause, flag_doc, rule
from tests.factories import RunningServer

SAFE, CATASTROPHIC = "^[a-z]+@corp$", "^(a+)+$"
FIELD = "environments.production.rules[0].clauses[0].values[0]"


@pytest.fixture
def old_db(tmp_path: Path) -> Path:
    """A database where flag `router` was saved with a regex today's checks refuse."""
    db = tmp_path / "old.duckdb"
    store = DuckDBStore(db)
    try:
        control.ensure_default_environments(store)
        control.create_flag(store, flag_doc(key="fine"), actor="ana")
        control.create_flag(
            store, flag_doc(key="router", rules=[rule("staff", clause("email", "regex", SAFE))]), actor="ana"
        )
        assert control.stored_problems(store) == []
    finally:
        store.close()
    # As an older version stored it, before catastrophic shapes were refused at save time.
    con = duckdb.connect(str(db))
    try:
        (doc,) = con.execute("SELECT doc FROM flags WHERE key = 'router'").fetchone()  # type: ignore[misc]
        con.execute("UPDATE flags SET doc = ? WHERE key = 'router'", [doc.replace(SAFE, CATASTROPHIC)])
    finally:
        con.close()
    return db


def test_a_flag_saved_under_older_rules_is_named_with_its_field_and_its_sdk_default(old_db: Path) -> None:
    store = DuckDBStore(old_db)
    try:
        (row,) = control.stored_problems(store)
        config = CompiledConfig(control.sdk_config(store, "production"))
    finally:
        store.close()
    assert (row["kind"], row["key"]) == ("flag", "router")
    assert [p["field"] for p in row["problems"]] == [FIELD]
    assert row["problems"][0]["reason"].startswith("nested quantifiers")
    # What the check warns of: the SDK cannot compile it and serves the caller's default.
    served = config.evaluate("router", "u1", {"email": "aaaa"}, default="fallback")
    assert (served.value, served.error_code) == ("fallback", "invalid_flag")
    assert config.evaluate("fine", "u1").error_code is None


def test_the_server_warns_at_start_and_answers_flags_check(
    old_db: Path, make_server: Callable[..., RunningServer], caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="ramplight.server"):
        server = make_server(db=old_db)
    warnings = [r.getMessage() for r in caplog.records if r.name == "ramplight.server"]
    assert any("'router'" in w and FIELD in w and "flags check" in w for w in warnings), warnings
    checked = server.admin.get("/api/flags-check")
    assert checked.status_code == 200
    assert [(r["kind"], r["key"]) for r in checked.json()] == [("flag", "router")]

    # Fixed through the API, it passes and nothing is listed.
    flag = server.admin.get("/api/flags/router").json()
    fixed = flag_doc(key="router", rules=[rule("staff", clause("email", "regex", SAFE))])
    saved = server.admin.put("/api/flags/router", json={**fixed, "version": flag["version"]})
    assert saved.status_code == 200, saved.text
    assert server.admin.get("/api/flags-check").json() == []


def test_flags_check_on_the_command_line(old_db: Path) -> None:
    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "ramplight", "flags", "check", "--db", str(old_db), *args],
            capture_output=True, text=True, timeout=120,
        )  # fmt: skip

    shown = run()
    assert shown.returncode == 1, shown.stderr
    assert "flag router:" in shown.stdout and FIELD in shown.stdout
    as_json = run("--json")
    assert as_json.returncode == 1
    assert [(r["kind"], r["key"]) for r in json.loads(as_json.stdout)] == [("flag", "router")]
