"""The soak program's short form: ingestion load with kill -9, a full disk, re-serialized,
cross-environment and conflicting resends; nothing acknowledged may be lost or stored twice."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

SOAK = Path(__file__).resolve().parents[2] / "benchmarks" / "soak.py"


def test_soak_loses_and_doubles_nothing(tmp_path: Path) -> None:
    command = [sys.executable, str(SOAK), "--quick", "--seconds", "25", "--kill-every", "6", "--json"]
    if os.environ.get("RAMPLIGHT_REQUIRE_TMPFS"):  # CI runs as root: the full-disk part must run
        command.append("--require-full-disk")
    done = subprocess.run(command, capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert done.stdout.strip(), done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["problems"] == [], result
    assert result["acknowledged"] > 0
    assert result["stored"] == result["acknowledged"]
    assert (result["lost"], result["duplicates"], result["extra"], result["wrong_payload"]) == (0, 0, 0, 0)
    assert result["kills"] >= 2
    assert result["conflicts_sent"] > 0 and result["conflicts_answered"] == result["conflicts_sent"]
    assert result["staging_batches"] > 0 and result["reserialized_resends"] > 0
    if os.environ.get("RAMPLIGHT_REQUIRE_TMPFS"):
        assert result["disk_full_episodes"] >= 1 and result["refused_full_disk"] >= 1
    assert done.returncode == 0
