"""The trace-analysis benchmark's small form: Ramplight's trace summary and critical paths, computed
in the store, equal what numpy computes from the same spans pulled into Python."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

TRACES = Path(__file__).resolve().parents[2] / "benchmarks" / "traces.py"


def test_the_critical_paths_and_percentiles_in_the_store_equal_numpys(tmp_path: Path) -> None:
    command = [sys.executable, str(TRACES), "--traces", "3000", "--memory-gib", "1"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "numpy and Ramplight agree" in done.stdout
    assert "critical path (recursive CTE)" in done.stdout
