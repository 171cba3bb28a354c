"""A full disk under the ingest log: nothing is acknowledged that could not be made durable, the
log is not corrupted by the partial write, and ingestion recovers once space frees up."""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.factories import RunningServer

FLAG = "support_assistant_profile"


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 256 KiB tmpfs where the server will keep its ingest log (needs root, as CI has here)."""
    db = tmp_path / "full.duckdb"
    log_dir = Path(str(db) + ".log")
    log_dir.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(log_dir)], capture_output=True
    )
    if mounted.returncode != 0:
        reason = f"cannot mount a small tmpfs here: {mounted.stderr.decode().strip()}"
        if os.environ.get("RAMPLIGHT_REQUIRE_TMPFS"):  # CI sets it: there the test must run
            pytest.fail(reason)
        pytest.skip(reason)
    try:
        yield db
    finally:
        subprocess.run(["umount", "-l", str(log_dir)], check=False)


def body(start: int, n: int) -> bytes:
    items = [{"ts": "2026-11-20T10:00:00Z", "flag_key": FLAG, "assignment_unit": "conversation",
              "unit_id": f"c{start + i}", "assigned_variation": "control", "served_variation": "control",
              "attributes": {"pad": "x" * 200}}
             for i in range(n)]  # fmt: skip
    return json.dumps({"exposures": items}).encode()


def test_a_full_disk_acknowledges_nothing_it_could_not_keep(make_server: Any, small_disk: Path) -> None:
    server: RunningServer = make_server(db=small_disk, guardian_interval=0)
    server.create_flag()
    key = server.sdk_key()
    state = server.thread.server.config.app.state.ramplight
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    acknowledged, refused = 0, None
    state.store._lock.acquire()  # the loader waits: segments pile up on the small disk
    try:
        for i in range(100):
            response = httpx.post(
                f"{server.url}/ingest/batch", content=body(i * 50, 50), headers=headers, timeout=30
            )
            if response.status_code != 200:
                refused = response
                break
            acknowledged += response.json()["accepted"]["exposures"]
        assert refused is not None and refused.status_code == 503, "the disk never filled"
        assert "could not be made durable" in refused.json()["message"]
    finally:
        state.store._lock.release()
    # Space frees as segments load: the refused batch is accepted on retry, nothing twice.
    deadline = time.monotonic() + 60
    while True:
        retry = httpx.post(
            f"{server.url}/ingest/batch", content=body(i * 50, 50), headers=headers, timeout=30
        )
        if retry.status_code == 200:
            break
        assert time.monotonic() < deadline, retry.text
        time.sleep(0.2)
    assert retry.json()["accepted"]["exposures"] == 50
    state.log.flush()
    rows = state.store.query("SELECT count(*), count(DISTINCT event_id) FROM exposures")
    assert rows == [(acknowledged + 50, acknowledged + 50)]
    assert state.log.dead_letters() == []
