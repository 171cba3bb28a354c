"""The `ramplight` command on a real database file (and through a real running server)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb
import httpx
import pytest
import yaml

from tests.factories import RunningServer, flag_doc


def ramplight(
    *args: str, env: dict[str, str] | None = None, check: bool = True, input: str | None = None
) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [sys.executable, "-m", "ramplight", *args],
        capture_output=True, text=True, env=env, timeout=120, input=input,
    )  # fmt: skip
    if check:
        assert result.returncode == 0, result.stderr
    return result


def cli_env(**variables: str) -> dict[str, str]:
    """A clean environment for the command (keeping PYTHONPATH, so it runs this checkout)."""
    kept = {k: os.environ[k] for k in ("PATH", "PYTHONPATH") if k in os.environ}
    return {**kept, **variables}


@pytest.fixture
def db(tmp_path: Path) -> Path:
    path = tmp_path / "cli.duckdb"
    flags = tmp_path / "flags.yaml"
    flags.write_text(yaml.safe_dump({"flags": [flag_doc()]}))
    ramplight("apply", str(flags), "--db", str(path))
    return path


def test_apply_creates_then_is_idempotent_then_shows_a_diff(tmp_path: Path, db: Path) -> None:
    flags = tmp_path / "flags.yaml"
    again = json.loads(ramplight("apply", str(flags), "--db", str(db), "--json").stdout)
    assert again == [{"key": "support_assistant_profile", "action": "unchanged", "version": 1, "diff": ""}]
    doc = flag_doc(description="v4 prompt with citations")
    flags.write_text(yaml.safe_dump(doc))
    changed = ramplight("apply", str(flags), "--db", str(db)).stdout
    assert "updated (version 2)" in changed and '+  "description": "v4 prompt with citations"' in changed
    shown = json.loads(
        ramplight("flags", "show", "support_assistant_profile", "--changes", "--json", "--db", str(db)).stdout
    )
    assert [c["action"] for c in shown["changes"]] == ["create", "update"]


def test_ramp_and_kill_change_the_rollout_and_the_audit_log(db: Path) -> None:
    assert (
        "candidate 20 %"
        in ramplight("ramp", "support_assistant_profile", "candidate", "20", "--db", str(db)).stdout
    )
    assert (
        "KILLED"
        in ramplight("kill", "support_assistant_profile", "--reason", "latency", "--db", str(db)).stdout
    )
    listed = json.loads(ramplight("flags", "list", "--json", "--db", str(db)).stdout)
    production = listed[0]["environments"]["production"]
    assert production["enabled"] is False and production["rollout"]["weights"] == {
        "control": 80.0,
        "candidate": 20.0,
    }


def test_errors_are_one_line_naming_the_database_without_a_traceback(db: Path) -> None:
    result = ramplight("ramp", "nope", "candidate", "20", "--db", str(db), check=False)
    assert result.returncode == 1
    assert result.stderr.strip() == f"error: no flag 'nope' (in {db})"
    result = ramplight("ramp", "support_assistant_profile", "candidate", "120", "--db", str(db), check=False)
    assert result.returncode == 2 and "Traceback" not in result.stderr


def test_import_ndjson_validates_like_http_and_reports_rows(tmp_path: Path, db: Path) -> None:
    path = tmp_path / "exposures.ndjson"
    good = {
        "ts": "2026-11-20T10:00:00Z",
        "flag_key": "support_assistant_profile",
        "assignment_unit": "conversation",
        "assigned_variation": "candidate",
        "served_variation": "candidate",
    }
    lines = [json.dumps({**good, "unit_id": f"c{i}"}) for i in range(10)]
    lines[3] = json.dumps({**good, "unit_id": "c3", "assignment_unit": "user"})
    path.write_text("\n".join(lines) + "\n")
    result = json.loads(ramplight("import", str(path), "--db", str(db), "--json").stdout)
    assert (result["kind"], result["accepted"], result["rejected"]) == ("exposures", 9, 1)
    assert result["problems"][0]["row"] == 4 and result["problems"][0]["field"] == "assignment_unit"
    again = json.loads(ramplight("import", str(path), "--db", str(db), "--json").stdout)
    assert (again["accepted"], again["duplicates"]) == (0, 9)  # the same items: already stored
    report = json.loads(ramplight("report", "support_assistant_profile", "--db", str(db), "--json").stdout)
    assert report["data_quality"]["exposed_units"] == 9


def test_import_csv_and_parquet_with_contract_field_names(tmp_path: Path, db: Path) -> None:
    csv = tmp_path / "events.csv"
    csv.write_text(
        "ts,name,unit_id,assignment_unit,value,properties\n"
        '2026-11-20T10:00:00Z,latency_ms,1001,conversation,1840,"{""route"": ""stable""}"\n'
        "2026-11-20T10:00:01Z,latency_ms,1002,conversation,not-a-number,\n"
    )
    result = json.loads(ramplight("import", str(csv), "--db", str(db), "--json").stdout)
    assert (result["accepted"], result["rejected"]) == (1, 1)
    assert result["problems"][0]["field"] == "value"
    parquet = tmp_path / "evals.parquet"
    con = duckdb.connect()
    con.execute(f"""COPY (SELECT TIMESTAMPTZ '2026-11-20 10:00:00+00' + INTERVAL (i) SECOND AS ts,
                 'faithfulness' AS name, 0.8 AS score, 'llm_judge' AS evaluator, 'c' || i AS unit_id
                 FROM range(50) t(i)) TO '{parquet}' (FORMAT parquet)""")
    con.close()
    result = json.loads(ramplight("import", str(parquet), "--db", str(db), "--json").stdout)
    assert (result["kind"], result["accepted"], result["rejected"]) == ("evals", 50, 0)


def test_commands_go_through_the_server_that_holds_the_database(
    server: RunningServer, tmp_path: Path
) -> None:
    server.create_flag()
    env = cli_env(RAMPLIGHT_DB=str(server.settings.db))
    refused = ramplight("flags", "list", env=env, check=False)
    assert refused.returncode == 1 and "RAMPLIGHT_ADMIN_KEY" in refused.stderr
    env["RAMPLIGHT_ADMIN_KEY"] = server.admin_key
    ramplight("ramp", "support_assistant_profile", "candidate", "20", env=env)
    assert server.admin.get("/api/flags/support_assistant_profile").json()["version"] == 2
    report = json.loads(ramplight("report", "support_assistant_profile", "--json", env=env).stdout)
    assert report["flag_key"] == "support_assistant_profile"


def test_metrics_as_code_then_sql_and_export(tmp_path: Path, db: Path) -> None:
    plan = tmp_path / "plan.yaml"
    plan.write_text(
        yaml.safe_dump(
            {
                "metrics": [
                    {
                        "key": "latency",
                        "type": "event",
                        "event": "latency_ms",
                        "aggregation": "mean",
                        "direction": "decrease",
                    },
                    {"key": "cost", "type": "event", "event": "cost_usd", "aggregation": "sum"},
                ]
            }
        )
    )
    applied = json.loads(ramplight("apply", str(plan), "--db", str(db), "--json").stdout)
    assert [(r["key"], r["action"]) for r in applied] == [("latency", "create"), ("cost", "create")]
    assert (
        json.loads(ramplight("apply", str(plan), "--db", str(db), "--json").stdout)[0]["action"]
        == "unchanged"
    )
    sql = ramplight(
        "sql", "support_assistant_profile", "--db", str(db), "--dialect", "postgres", "-m", "latency"
    ).stdout
    assert "PERCENTILE" not in sql and "latency_ms" in sql
    out = tmp_path / "units.csv"
    ramplight("export", "support_assistant_profile", "--db", str(db), "--format", "csv", "-o", str(out))
    assert set(out.read_text().splitlines()[0].split(",")[-2:]) == {"latency", "cost"}


def _release_file(tmp_path: Path, margin: float = 0.05) -> Path:
    path = tmp_path / "release.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "metrics": [
                    {
                        "key": "latency_ms",
                        "type": "event",
                        "event": "latency_ms",
                        "aggregation": "mean",
                        "direction": "decrease",
                    }
                ],
                "plans": [
                    {
                        "flag_key": "support_assistant_profile",
                        "guardrails": [{"metric": "latency_ms", "margin": margin}],
                        "stages": [{"percent": 5, "min_units": 10}, {"percent": 20}, {"percent": 100}],
                        "gates": [],
                    }
                ],
            }
        )
    )
    return path


def _slow_candidate(tmp_path: Path, db: Path) -> None:
    now = datetime.now(UTC).isoformat()
    rows = []
    for i in range(400):
        variation = "candidate" if i % 4 == 0 else "control"
        rows.append({"kind": "exposures", "ts": now, "flag_key": "support_assistant_profile",
                     "assignment_unit": "conversation", "unit_id": f"u{i}", "assigned_variation": variation,
                     "served_variation": variation})  # fmt: skip
    events = [{"ts": now, "name": "latency_ms", "unit_id": f"u{i}",
               "assignment_unit": "conversation", "value": (1500.0 if i % 4 == 0 else 1000.0) + i % 7}
              for i in range(400)]  # fmt: skip
    (tmp_path / "exposures.ndjson").write_text(
        "\n".join(json.dumps({k: v for k, v in r.items() if k != "kind"}) for r in rows)
    )
    (tmp_path / "events.ndjson").write_text("\n".join(json.dumps(e) for e in events))
    ramplight("import", str(tmp_path / "exposures.ndjson"), "--kind", "exposures", "--db", str(db))
    ramplight("import", str(tmp_path / "events.ndjson"), "--kind", "events", "--db", str(db))


def test_plans_as_code_then_a_refused_ramp_a_forced_one_and_decisions(tmp_path: Path, db: Path) -> None:
    applied = json.loads(ramplight("apply", str(_release_file(tmp_path)), "--db", str(db), "--json").stdout)
    assert {
        "key": "support_assistant_profile@production",
        "action": "create",
        "version": 1,
        "diff": "",
    } in applied
    again = json.loads(ramplight("apply", str(_release_file(tmp_path)), "--db", str(db), "--json").stdout)
    assert {
        "key": "support_assistant_profile@production",
        "action": "unchanged",
        "version": 1,
        "diff": "",
    } in again
    _slow_candidate(tmp_path, db)

    report = json.loads(ramplight("report", "support_assistant_profile", "--db", str(db), "--json").stdout)
    assert report["recommendation"]["action"] == "rollback"
    table = ramplight("report", "support_assistant_profile", "--db", str(db)).stdout
    assert table.lstrip().startswith("ROLLBACK — roll back: latency_ms is worse by")

    refused = ramplight("ramp", "support_assistant_profile", "candidate", "50", "--db", str(db), check=False)
    assert refused.returncode == 1 and "ramp refused: latency_ms is worse" in refused.stderr
    no_reason = ramplight(
        "ramp", "support_assistant_profile", "candidate", "50", "--force", "--db", str(db), check=False
    )
    assert no_reason.returncode == 1 and "a forced action needs a reason" in no_reason.stderr
    ramplight(
        "ramp",
        "support_assistant_profile",
        "candidate",
        "50",
        "--force",
        "--reason",
        "load test",
        "--db",
        str(db),
    )
    same = ramplight("ramp", "support_assistant_profile", "candidate", "50", "--db", str(db)).stdout
    assert "unchanged" in same

    decided = json.loads(ramplight("decide", "support_assistant_profile", "rollback", "--reason", "latency",
                                   "--db", str(db), "--json").stdout)  # fmt: skip
    assert decided["state"] == "rollback" and decided["rollout_after"]["rollout"]["weights"]["candidate"] == 0
    listed = ramplight("decisions", "support_assistant_profile", "--db", str(db)).stdout
    assert "rollback by cli — latency" in listed and "recommended: roll back: latency_ms" in listed
    stale = json.loads(ramplight("flags", "stale", "--days", "0", "--db", str(db), "--json").stdout)
    assert stale[0]["flag_key"] == "support_assistant_profile"


# -- a newcomer's first hour ---------------------------------------------------------------


def test_every_command_takes_json() -> None:
    from typer.main import get_command

    from ramplight.cli.main import app

    def commands(command: Any, path: tuple[str, ...]) -> Iterator[tuple[str, Any]]:
        if hasattr(command, "commands"):
            for name, sub in command.commands.items():
                yield from commands(sub, (*path, name))
        else:
            yield " ".join(path), command

    found = dict(commands(get_command(app), ()))
    assert {"sql", "export", "env create", "env list", "backup", "restore-backup"} <= set(found)
    assert [name for name, c in found.items() if not any("--json" in p.opts for p in c.params)] == []


def test_sql_and_export_answer_in_json(tmp_path: Path, db: Path) -> None:
    sql = json.loads(ramplight("sql", "support_assistant_profile", "--db", str(db), "--json").stdout)
    assert sql["dialect"] == "duckdb" and sql["sql"].lstrip().upper().startswith(("WITH", "SELECT"))
    out = tmp_path / "units.csv"
    exported = json.loads(
        ramplight("export", "support_assistant_profile", "--format", "csv", "-o", str(out), "--db", str(db),
                  "--json").stdout
    )  # fmt: skip
    assert exported["file"] == str(out) and exported["bytes"] == out.stat().st_size > 0


def test_environments_are_created_and_listed_on_the_file(tmp_path: Path) -> None:
    db = tmp_path / "new.duckdb"
    created = json.loads(
        ramplight("env", "create", "canary", "--name", "Canary", "--db", str(db), "--json").stdout
    )
    assert (created["key"], created["name"]) == ("canary", "Canary")
    listed = json.loads(ramplight("env", "list", "--db", str(db), "--json").stdout)
    assert [e["key"] for e in listed] == ["production", "staging", "canary"]
    again = ramplight("env", "create", "canary", "--db", str(db), check=False)
    assert again.returncode == 1 and again.stderr.strip() == "error: environment 'canary' already exists"
    assert "sdk key" in ramplight("keys", "create", "--env", "canary", "--db", str(db)).stdout


def test_environments_are_created_and_listed_through_the_server(server: RunningServer) -> None:
    env = cli_env(RAMPLIGHT_DB=str(server.settings.db), RAMPLIGHT_ADMIN_KEY=server.admin_key)
    assert "created environment canary (Canary)" in ramplight("env", "create", "canary", "--name", "Canary",
                                                               env=env).stdout  # fmt: skip
    assert "canary" in {e["key"] for e in server.admin.get("/api/environments").json()}
    listed = ramplight("env", "list", env=env).stdout
    assert "production" in listed and "Canary" in listed


_HEAVY = ("duckdb", "scipy", "fastapi", "uvicorn")
_PROBE = (
    "import atexit, sys; "
    f"atexit.register(lambda: sys.stderr.write('loaded: ' + ' '.join(m for m in {_HEAVY!r} if m in sys.modules) + chr(10))); "
    "from ramplight.cli import main; sys.argv[0] = 'ramplight'; main()"
)


def _probe(*args: str, env: dict[str, str]) -> tuple[str, list[str]]:
    """The command's output, and which of the heavy modules it imported."""
    result = subprocess.run(
        [sys.executable, "-c", _PROBE, *args], capture_output=True, text=True, env=env, timeout=120
    )
    assert result.returncode == 0, result.stderr
    last = result.stderr.splitlines()[-1]
    assert last.startswith("loaded: "), result.stderr
    return result.stdout, last.removeprefix("loaded: ").split()


def test_commands_through_a_server_start_without_the_store_the_statistics_or_the_server(
    server: RunningServer, tmp_path: Path
) -> None:
    """A command that acts through a server needs HTTP only: the database engine, SciPy and the
    web framework stay unimported, so `ramplight --help` and every call start in a fraction of
    the time. On a file of its own, the same command loads the store (the probe sees it)."""
    server.create_flag()
    env = cli_env(RAMPLIGHT_URL=server.url, RAMPLIGHT_ADMIN_KEY=server.admin_key)
    for args in (
        ["flags", "list", "--json"],
        ["flags", "show", "support_assistant_profile", "--json"],
        ["report", "support_assistant_profile", "--json"],
        ["env", "list", "--json"],
    ):
        out, loaded = _probe(*args, env=env)
        assert json.loads(out) and loaded == [], args
    out, loaded = _probe("--help", env=env)
    assert "Usage" in out and loaded == []
    own = tmp_path / "own.duckdb"
    ramplight("env", "create", "qa", "--db", str(own))
    out, loaded = _probe("env", "list", "--json", "--db", str(own), env=cli_env())
    assert "qa" in {e["key"] for e in json.loads(out)} and "duckdb" in loaded


def test_a_missing_database_is_named_and_never_created(tmp_path: Path) -> None:
    typo = tmp_path / "typo.duckdb"
    for args in (
        ["flags", "show", "x"],
        ["flags", "list"],
        ["report", "x"],
        ["env", "list"],
        ["audit", "verify"],
    ):
        result = ramplight(*args, "--db", str(typo), check=False)
        assert result.returncode == 1
        assert result.stderr.startswith(f"error: the database file {typo} does not exist;"), result.stderr
    assert list(tmp_path.iterdir()) == []


def test_a_wrong_database_names_the_server_that_runs_beside_it(server: RunningServer) -> None:
    typo = server.settings.db.with_name("typo.duckdb")
    result = ramplight("flags", "list", "--db", str(typo), env=cli_env(), check=False)
    assert result.returncode == 1
    assert f"a server holds {server.settings.db} at {server.url}" in result.stderr


def test_markup_in_user_text_is_printed_as_written(tmp_path: Path, db: Path) -> None:
    flags = tmp_path / "flags.yaml"
    flags.write_text(yaml.safe_dump(flag_doc(description="v4 [/bold] prompt [red]")))
    ramplight("apply", str(flags), "--db", str(db))
    ramplight("kill", "support_assistant_profile", "--reason", "[/red] latency [x]", "--db", str(db))
    shown = ramplight("flags", "show", "support_assistant_profile", "--changes", "--db", str(db)).stdout
    assert "v4 [/bold] prompt [red]" in shown and "[/red] latency [x]" in shown
    missing = ramplight("flags", "show", "[/bold]", "--db", str(db), check=False)
    assert missing.stderr.startswith("error: no flag '[/bold]'")


def test_a_malformed_setting_is_one_line_naming_the_variable_and_value() -> None:
    result = ramplight("serve", env=cli_env(RAMPLIGHT_PORT="abc"), check=False)
    assert result.returncode == 1
    assert result.stderr.strip() == "error: RAMPLIGHT_PORT: 'abc' is not an integer from 1 to 65535"


def test_the_readout_fits_80_columns_without_cutting_a_cell(tmp_path: Path, db: Path) -> None:
    ramplight("apply", str(_release_file(tmp_path)), "--db", str(db))
    _slow_candidate(tmp_path, db)
    narrow = ramplight(
        "report", "support_assistant_profile", "--db", str(db), env=cli_env(COLUMNS="80")
    ).stdout
    wide = ramplight(
        "report", "support_assistant_profile", "--db", str(db), env=cli_env(COLUMNS="400")
    ).stdout
    assert max(len(line) for line in narrow.splitlines()) <= 80
    assert narrow.count("…") == wide.count("…")  # nothing cut to fit
    assert "latency_ms" in narrow and "1k → 1.5k" in narrow and "+49.8, +49.9 %" in narrow


def test_commands_leave_no_duckdb_leak_warnings_at_exit(tmp_path: Path, db: Path) -> None:
    csv = tmp_path / "events.csv"
    csv.write_text(
        "ts,name,unit_id,assignment_unit,value\n2026-11-20T10:00:00Z,latency_ms,1,conversation,9\n"
    )
    for args in (["flags", "list"], ["import", str(csv)], ["report", "support_assistant_profile"]):
        result = ramplight(*args, "--db", str(db))
        assert "leaked" not in result.stderr


# -- backup and restore --------------------------------------------------------------------


def _stored_unit_ids(db: Path) -> set[str]:
    con = duckdb.connect(str(db), read_only=True)
    try:
        return {row[0] for row in con.execute("SELECT unit_id FROM events").fetchall()}
    finally:
        con.close()


def test_a_backup_through_the_server_under_ingestion_restores_every_acknowledged_event(
    server: RunningServer, tmp_path: Path
) -> None:
    server.create_flag()
    sdk = httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {server.sdk_key()}"})
    acknowledged: list[str] = []
    failures: list[str] = []
    stop = threading.Event()

    def ingest() -> None:
        batch_no = 0
        while not stop.is_set():
            ids = [f"u{batch_no}-{i}" for i in range(50)]
            events = [{"ts": datetime.now(UTC).isoformat(), "name": "latency_ms", "unit_id": unit,
                       "assignment_unit": "conversation", "value": 1.0} for unit in ids]  # fmt: skip
            response = sdk.post("/ingest/batch", json={"events": events})
            if response.status_code != 200 or response.json()["accepted"]["events"] != 50:
                failures.append(response.text)
                return
            acknowledged.extend(ids)
            batch_no += 1

    sender = threading.Thread(target=ingest)
    sender.start()
    try:
        deadline = time.monotonic() + 30
        while len(acknowledged) < 1000 and time.monotonic() < deadline and not failures:
            time.sleep(0.01)
        server.admin.post(
            "/api/flags/support_assistant_profile/ramp",
            json={"environment": "production", "variation": "candidate", "percent": 10, "force": True,
                  "reason": "a change in the audit chain"},
        ).raise_for_status()  # fmt: skip
        before = list(acknowledged)
        env = cli_env(RAMPLIGHT_DB=str(server.settings.db), RAMPLIGHT_ADMIN_KEY=server.admin_key)
        archive = tmp_path / "backup.tar"
        made = json.loads(ramplight("backup", str(archive), "--json", env=env).stdout)
        during = len(acknowledged)
        deadline = time.monotonic() + 30
        while len(acknowledged) == during and time.monotonic() < deadline and not failures:
            time.sleep(0.01)
    finally:
        stop.set()
        sender.join()
        sdk.close()
    assert failures == [] and len(acknowledged) > during  # ingestion went on
    assert made["secret_included"] and made["counts"]["events"] >= len(before)

    restored = tmp_path / "elsewhere" / "restored.duckdb"
    result = json.loads(ramplight("restore-backup", str(archive), "--db", str(restored), "--json").stdout)
    assert result["audit"]["ok"] and result["audit"]["flag_changes"]["rows"] == 2
    assert set(before) <= _stored_unit_ids(restored)
    verified = json.loads(ramplight("audit", "verify", "--db", str(restored), "--json").stdout)
    assert verified["ok"] and verified["flag_changes"]["keyed"]


def test_a_backup_of_the_file_restores_only_into_a_new_file_and_refuses_a_damaged_one(
    tmp_path: Path, db: Path
) -> None:
    ramplight("kill", "support_assistant_profile", "--reason", "before the backup", "--db", str(db))
    archive = tmp_path / "backup.tar"
    assert "wrote" in ramplight("backup", str(archive), "--db", str(db)).stdout
    again = ramplight("backup", str(archive), "--db", str(db), check=False)
    assert again.returncode == 1 and "exists" in again.stderr
    over = ramplight("restore-backup", str(archive), "--db", str(db), check=False)
    assert over.returncode == 1 and f"{db} exists" in over.stderr

    restored = tmp_path / "restored.duckdb"
    text = ramplight("restore-backup", str(archive), "--db", str(restored)).stdout
    assert "✓ flag_changes: 2 row(s) verify" in text
    shown = json.loads(
        ramplight("flags", "show", "support_assistant_profile", "--db", str(restored), "--json").stdout
    )
    assert shown["environments"]["production"]["enabled"] is False

    damaged = tmp_path / "damaged.tar"
    data = bytearray(archive.read_bytes())
    data[-20000] ^= 0xFF  # inside the database member
    damaged.write_bytes(bytes(data))
    refused = ramplight("restore-backup", str(damaged), "--db", str(tmp_path / "new.duckdb"), check=False)
    assert refused.returncode == 1 and "checksum" in refused.stderr
    assert not (tmp_path / "new.duckdb").exists()


def test_a_backup_of_the_file_includes_evidence_a_stopped_server_left_in_its_log(
    tmp_path: Path, db: Path
) -> None:
    from ramplight.store.log import encode_items
    from tests.store.evidence import exposures

    segment = db.with_name(db.name + ".log") / "000000000007.open"
    segment.mkdir(parents=True)
    (segment / "exposures.ndjson").write_bytes(
        encode_items({"exposures": exposures("left-1", "left-2")})["exposures"]
    )
    archive = tmp_path / "backup.tar"
    made = json.loads(ramplight("backup", str(archive), "--db", str(db), "--json").stdout)
    assert made["counts"]["exposures"] == 2
    restored = tmp_path / "restored.duckdb"
    ramplight("restore-backup", str(archive), "--db", str(restored))
    con = duckdb.connect(str(restored), read_only=True)
    try:
        assert sorted(r[0] for r in con.execute("SELECT unit_id FROM exposures").fetchall()) == [
            "left-1",
            "left-2",
        ]
    finally:
        con.close()


def test_users_list_and_set_change_roles_and_disable_here_and_through_a_server(
    db: Path, make_server: Callable[..., RunningServer]
) -> None:
    ramplight(
        "users",
        "add",
        "ana",
        "--role",
        "editor",
        "--password-stdin",
        "--db",
        str(db),
        input="a long enough password\n",
    )
    listed = json.loads(ramplight("users", "list", "--db", str(db), "--json").stdout)
    assert [(u["name"], u["role"], u["disabled_at"], u["last_sign_in_at"]) for u in listed] == [
        ("ana", "editor", None, None)
    ]
    assert "password" not in json.dumps(listed) and "hash" not in json.dumps(listed)
    changed = ramplight("users", "set", "ana", "--role", "approver", "--db", str(db))
    assert "user ana: approver, active" in changed.stdout
    nothing = ramplight("users", "set", "ana", "--db", str(db), check=False)
    assert nothing.returncode == 1 and "give --role, --disable or --enable" in nothing.stderr
    unknown = ramplight("users", "set", "nobody", "--disable", "--db", str(db), check=False)
    assert unknown.returncode == 1 and "no user 'nobody'" in unknown.stderr

    server = make_server(db=db)  # the same database, served: the CLI goes through the API
    env = cli_env(RAMPLIGHT_URL=server.url, RAMPLIGHT_ADMIN_KEY=server.admin_key)
    session = users_session(server, "ana", "a long enough password")
    disabled = json.loads(ramplight("users", "set", "ana", "--disable", "--json", env=env).stdout)
    assert disabled["role"] == "approver" and disabled["disabled_at"] is not None
    assert session.get("/").status_code == 303  # the session ended at once: back to sign-in
    assert server.admin.patch("/api/users/ana", json={"role": "owner"}).status_code == 422
    enabled = server.admin.patch("/api/users/ana", json={"disabled": False}).json()
    assert enabled["disabled_at"] is None and enabled["last_sign_in_at"] is not None
    session.close()


def users_session(server: RunningServer, name: str, password: str) -> httpx.Client:
    """A browser-like client signed in to the web UI through its form."""
    client = httpx.Client(base_url=server.url, timeout=30)
    form = client.get("/login").text
    token = re.search(r'name="csrf" value="([^"]+)"', form)
    assert token is not None
    answer = client.post("/login", data={"csrf": token.group(1), "name": name, "password": password})
    assert answer.status_code == 303 and client.get("/").status_code == 200
    return client


def test_users_add_reads_or_generates_a_password_and_keeps_only_its_hash(db: Path) -> None:
    added = ramplight(
        "users", "add", "ana", "--role", "editor", "--password-stdin", "--db", str(db),
        input="a long enough password\n",
    )  # fmt: skip
    assert "user ana (editor) added" in added.stdout and "a long enough password" not in added.stdout
    generated = json.loads(ramplight("users", "add", "bo", "--db", str(db), "--json", input="").stdout)
    assert generated["role"] == "viewer" and len(generated["password"]) >= 20
    refused = ramplight("users", "add", "cy", "--role", "owner", "--db", str(db), check=False, input="")
    assert refused.returncode == 1 and "role: one of viewer, editor, approver, admin" in refused.stderr
    from ramplight.control import users
    from ramplight.store.duckdb import DuckDBStore

    store = DuckDBStore(db)
    try:
        assert users.check_password(store, "ana", "a long enough password").role == "editor"
        assert users.check_password(store, "bo", generated["password"]).role == "viewer"
    finally:
        store.close()
