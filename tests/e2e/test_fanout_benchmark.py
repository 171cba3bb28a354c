"""The fan-out benchmark's small form: every streaming client serves each kill and restore."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

FANOUT = Path(__file__).resolve().parents[2] / "benchmarks" / "fanout.py"


def test_every_streaming_client_serves_each_change(tmp_path: Path) -> None:
    command = [sys.executable, str(FANOUT), "--clients", "20", "--workers", "2", "--no-anchor", "--json"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    (stream,) = json.loads(done.stdout)
    assert stream["server_streams"] == 20
    assert [r["action"] for r in stream["rounds"]] == ["kill", "restore", "kill"]
    assert [r["served"] for r in stream["rounds"]] == [20, 20, 20]
