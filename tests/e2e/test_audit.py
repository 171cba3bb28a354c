"""Tampering made in the real DuckDB file while the server is down is named by the running
server (`GET /api/audit/verify`, the changes' marks) and by `ramplight audit verify`, both on the
file and through the server."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import duckdb

from tests.e2e.test_decisions import FLAG, planned, send_traffic  # noqa: F401 - `planned` is a fixture
from tests.factories import RunningServer


def ramplight(*args: str, admin_key: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAMPLIGHT_")}
    if admin_key:
        env["RAMPLIGHT_ADMIN_KEY"] = admin_key
    return subprocess.run(
        [sys.executable, "-m", "ramplight", *args], capture_output=True, text=True, env=env, timeout=120
    )


def tamper(db: Path, *statements: str) -> None:
    con = duckdb.connect(str(db))
    for sql in statements:
        con.execute(sql)
    con.close()


def restart(server: RunningServer, make_server: Callable[..., RunningServer], *sql: str) -> RunningServer:
    server.thread.stop()
    tamper(server.settings.db, *sql)
    again = make_server(db=server.settings.db)
    again.admin_key = server.admin_key  # the database has its admin key already
    again.admin.headers["Authorization"] = f"Bearer {server.admin_key}"
    return again


def ramped(server: RunningServer) -> list[dict[str, Any]]:
    server.create_flag()
    for percent in (10, 20, 30):
        body = {
            "environment": "production",
            "variation": "candidate",
            "percent": percent,
            "reason": f"to {percent}",
        }
        assert server.admin.post(f"/api/flags/{FLAG}/ramp", json=body).status_code == 200
    rows: list[dict[str, Any]] = server.admin.get(f"/api/flags/{FLAG}/changes").json()
    return rows


def test_an_intact_log_verifies_and_every_change_carries_its_mark(server: RunningServer) -> None:
    rows = ramped(server)
    assert [r["verified"] for r in rows] == [True] * 4
    assert [r["seq"] for r in rows] == [1, 2, 3, 4] and rows[1]["flag_prev_hash"] == rows[0]["hash"]
    response = server.admin.get(f"/api/flags/{FLAG}/changes")
    assert json.loads(response.headers["Ramplight-Audit-Head"])["flag_changes"]["seq"] == 4
    result = server.admin.get("/api/audit/verify").json()
    assert result["ok"] is True and result["flag_changes"]["rows"] == 4
    assert result["head"]["flag_changes"]["hash"] == rows[-1]["hash"]


def test_an_edited_reason_is_named_by_the_server_and_the_cli(
    server: RunningServer, make_server: Callable[..., RunningServer]
) -> None:
    rows = ramped(server)
    again = restart(server, make_server, "UPDATE flag_changes SET reason = 'routine' WHERE seq = 3")
    result = again.admin.get("/api/audit/verify").json()
    assert result["ok"] is False
    assert result["flag_changes"]["first_break"]["kind"] == "edited"
    assert (
        result["flag_changes"]["first_break"]["row_id"],
        result["flag_changes"]["first_break"]["seq"],
    ) == (
        rows[2]["change_id"],
        3,
    )
    marks = again.admin.get(f"/api/flags/{FLAG}/changes").json()
    assert [r["verified"] for r in marks] == [True, True, False, False]
    assert marks[2]["audit_break"]["kind"] == "edited"

    remote = ramplight("audit", "verify", "--json", "--db", str(again.settings.db), admin_key=again.admin_key)
    assert remote.returncode == 1
    assert json.loads(remote.stdout)["flag_changes"]["first_break"]["row_id"] == rows[2]["change_id"]
    shown = ramplight(
        "flags", "show", FLAG, "--changes", "--db", str(again.settings.db), admin_key=again.admin_key
    )
    assert "✗" in shown.stdout and "edited (seq 3)" in shown.stdout

    again.thread.stop()
    local = ramplight("audit", "verify", "--db", str(again.settings.db))
    assert local.returncode == 1
    assert f"EDITED at {rows[2]['change_id']} (seq 3)" in local.stdout


def test_deleted_and_swapped_and_truncated_flag_changes_are_named_through_the_cli(
    server: RunningServer, make_server: Callable[..., RunningServer]
) -> None:
    rows = ramped(server)
    server.thread.stop()
    db = server.settings.db
    cases = [
        (["DELETE FROM flag_changes WHERE seq = 2"], ("deleted", rows[2]["change_id"], 3)),
        (["UPDATE flag_changes SET seq = 100 WHERE seq = 3", "UPDATE flag_changes SET seq = 3 WHERE seq = 2",
          "UPDATE flag_changes SET seq = 2 WHERE seq = 100"], ("reordered", rows[2]["change_id"], 2)),
        (["DELETE FROM flag_changes WHERE seq = 4"], ("truncated", None, 4)),
    ]  # fmt: skip
    pristine = db.read_bytes()
    for statements, expected in cases:
        db.write_bytes(pristine)
        tamper(db, *statements)
        result = ramplight("audit", "verify", "--json", "--db", str(db))
        assert result.returncode == 1, result.stderr
        found = json.loads(result.stdout)["flag_changes"]["first_break"]
        assert (found["kind"], found["row_id"], found["seq"]) == expected
    db.write_bytes(pristine)
    assert ramplight("audit", "verify", "--db", str(db)).returncode == 0


def test_a_deleted_newest_decision_is_named_by_the_server(
    planned: RunningServer,  # noqa: F811 - the fixture imported above
    make_server: Callable[..., RunningServer],
) -> None:
    send_traffic(planned, 4000, candidate_slowdown=0.3)
    made = planned.admin.post(
        f"/api/flags/{FLAG}/decisions", json={"action": "rollback", "reason": "latency"}
    )
    assert made.status_code == 201, made.text
    assert made.json()["audit_head"]["decisions"]["seq"] == made.json()["seq"] == 1
    assert planned.admin.get("/api/audit/verify").json()["ok"] is True
    again = restart(planned, make_server, "DELETE FROM decisions")
    result = again.admin.get("/api/audit/verify").json()
    assert result["ok"] is False and result["flag_changes"]["ok"] is True
    assert result["decisions"]["first_break"]["kind"] == "truncated"
    assert result["decisions"]["first_break"]["seq"] == 1
