"""The installed `ramplight` command, as a user runs it (not `python -m ramplight`): the processes
its server spawns re-run the script's imports, which must not pull in the whole CLI."""

from __future__ import annotations

import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx

from tests.e2e.served import Served


def _children(pid: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:  # ended meanwhile
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def _cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:  # ended meanwhile
        return b""


def test_ingestion_workers_of_the_console_scripts_server_start_without_the_cli(tmp_path: Path) -> None:
    assert Path(sys.executable).with_name("ramplight").exists(), "the package's console script is installed"
    # Every batch goes to a worker, however small, whatever the machine's idle time.
    server = Served(
        script=True,
        db=str(tmp_path / "w.duckdb"),
        batch_worker_spare_cores="0",
        batch_worker_min_bytes="1",
    )
    try:
        headers = {"Authorization": f"Bearer {server.admin_key()}"}
        now = (datetime.now(UTC) - timedelta(minutes=1)).isoformat()
        events = [
            {"ts": now, "name": "resolved", "unit_id": f"u{i}", "assignment_unit": "user"} for i in range(100)
        ]
        answer = httpx.post(
            f"{server.url}/ingest/batch",
            params={"environment": "production"},
            json={"events": events},
            headers=headers,
            timeout=60,
        )
        assert answer.status_code == 200, answer.text
        assert answer.json()["accepted"]["events"] == 100, answer.text
        workers = [pid for pid in _children(server.process.pid) if b"spawn_main" in _cmdline(pid)]
        assert workers, "the batch was judged in a worker, started for it"
        for pid in workers:
            # The CLI imports the server and DuckDB; a worker needs neither.
            assert "duckdb" not in Path(f"/proc/{pid}/maps").read_text(), f"worker {pid} loaded DuckDB"
    finally:
        server.stop()
