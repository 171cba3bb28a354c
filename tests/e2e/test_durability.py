"""An acknowledged item survives `kill -9` of the server right after the response."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from ramplight.server.run import free_port
from ramplight.store.duckdb import DuckDBStore
from tests.factories import flag_doc


def start_server(db: Path, port: int) -> tuple[subprocess.Popen[str], str]:
    process = subprocess.Popen(
        [sys.executable, "-m", "ramplight", "serve", "--db", str(db), "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"server exited: {process.stdout.read() if process.stdout else ''}")
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                return process, url
        except httpx.HTTPError:
            time.sleep(0.05)
    process.kill()
    raise AssertionError("server did not become healthy within 60 s")


def test_acknowledged_events_survive_kill_9(tmp_path: Path) -> None:
    db = tmp_path / "durable.duckdb"
    port = free_port()
    process, url = start_server(db, port)
    assert process.stdout is not None
    admin_key = ""
    while not admin_key:
        match = re.search(r"RAMPLIGHT_ADMIN_KEY=(\S+)", process.stdout.readline())
        admin_key = match.group(1) if match else ""
    admin = httpx.Client(base_url=url, headers={"Authorization": f"Bearer {admin_key}"})
    assert admin.post("/api/flags", json=flag_doc()).status_code == 201
    sdk_key = admin.post("/api/keys", json={"kind": "sdk", "name": "t", "environment": "production"}).json()[
        "key"
    ]
    sdk = httpx.Client(base_url=url, headers={"Authorization": f"Bearer {sdk_key}"})
    acknowledged = 0
    for batch in range(6):
        events = [
            {
                "ts": "2026-11-20T10:00:00Z",
                "name": "latency_ms",
                "unit_id": f"c{batch}-{i}",
                "assignment_unit": "conversation",
                "value": i,
                "event_id": f"e{batch}-{i}",
            }
            for i in range(500)
        ]
        exposures = [
            {
                "ts": "2026-11-20T09:59:00Z",
                "flag_key": "support_assistant_profile",
                "assignment_unit": "conversation",
                "unit_id": f"c{batch}-{i}",
                "assigned_variation": "control",
                "served_variation": "control",
            }
            for i in range(100)
        ]
        response = sdk.post("/ingest/batch", json={"events": events, "exposures": exposures})
        assert response.status_code == 200
        acknowledged += sum(response.json()["accepted"].values())
    os.kill(process.pid, signal.SIGKILL)  # right after the last acknowledgement
    process.wait(timeout=30)
    assert acknowledged == 3600

    process, url = start_server(db, port)
    admin = httpx.Client(base_url=url, headers={"Authorization": f"Bearer {admin_key}"})
    report = admin.get("/api/flags/support_assistant_profile/report").json()
    assert report["data_quality"]["exposed_units"] == 600
    process.send_signal(signal.SIGTERM)
    process.wait(timeout=30)
    store = DuckDBStore(db)
    try:
        assert store.count("events") == 3000
        assert store.count("exposures") == 600
    finally:
        store.close()
