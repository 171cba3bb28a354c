"""The TypeScript SDK (sdks/typescript) against a real `ramplight serve`: it assigns every unit as
the Python SDK does, and the exposures and outcomes it records arrive and are stored.

Needs Node.js 20 and npm. Without them the test skips, except when RAMPLIGHT_REQUIRE_NODE or CI
is set (.ci/run sets the first): then it fails."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import duckdb
import httpx
import pytest

from ramplight import Client
from tests.e2e.served import Served
from tests.factories import flag_doc

SDK = Path(__file__).resolve().parents[2] / "sdks" / "typescript"
DRIVER = SDK / "dist" / "e2e" / "drive.js"
FLAG = "support_assistant_profile"


@pytest.fixture(scope="module")
def node() -> str:
    """The node binary, with the TypeScript SDK built (npm ci + tsc when dist/ is missing)."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        if os.environ.get("RAMPLIGHT_REQUIRE_NODE") or os.environ.get("CI"):
            pytest.fail("node and npm are required (RAMPLIGHT_REQUIRE_NODE/CI is set)")
        pytest.skip("node/npm not installed")
    if not DRIVER.exists():
        if not (SDK / "node_modules").exists():
            subprocess.run([npm, "ci"], cwd=SDK, check=True, capture_output=True)
        subprocess.run([npm, "run", "build"], cwd=SDK, check=True, capture_output=True)
    return node


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Served]:
    server = Served(db=str(tmp_path / "ts.duckdb"))
    try:
        yield server
    finally:
        server.stop()


def units(n: int) -> list[tuple[str, dict[str, Any]]]:
    """Conversations, every 7th on the enterprise plan (which a rule sends to the candidate)."""
    return [(f"conv-{i}", {"plan": "enterprise" if i % 7 == 0 else "free"}) for i in range(n)]


def test_the_typescript_sdk_assigns_as_python_does_and_its_evidence_is_stored(
    node: str, served: Served, tmp_path: Path
) -> None:
    admin = httpx.Client(
        base_url=served.url, headers={"Authorization": f"Bearer {served.admin_key()}"}, timeout=30
    )
    production = {
        "default_variation": "control",
        "off_variation": "control",
        "rules": [
            {
                "id": "enterprise",
                "clauses": [{"attribute": "plan", "op": "in", "values": ["enterprise"]}],
                "variation": "candidate",
            }
        ],
        "rollout": {"weights": {"control": 60, "candidate": 40}},
    }
    created = admin.post("/api/flags", json=flag_doc(environments={"production": production}))
    assert created.status_code == 201, created.text
    key = admin.post("/api/keys", json={"kind": "sdk", "name": "ts", "environment": "production"})
    sdk_key = key.json()["key"]
    cohort = units(300)

    python = Client(sdk_key, url=served.url, init_timeout=10)
    expected = {unit: python.evaluate(FLAG, unit, attributes).variation for unit, attributes in cohort}
    python.close()

    request = {"url": served.url, "sdkKey": sdk_key, "flagKey": FLAG, "units": cohort}
    run = subprocess.run(
        [node, str(DRIVER), json.dumps(request)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert run.returncode == 0, run.stderr
    result = json.loads(run.stdout)
    assert result["ready"] is True
    assert result["unsent"] == {}
    assert {unit: a["variation"] for unit, a in result["assignments"].items()} == expected
    assert {a["reason"] for a in result["assignments"].values()} == {"rule", "rollout"}
    assert set(expected.values()) == {"control", "candidate"}
    assert result["stats"]["sent"] == 600 and result["stats"]["rejected"] == 0

    deadline = time.monotonic() + 30
    while admin.get("/api/ingest/status").json()["backlog_items"] > 0:
        assert time.monotonic() < deadline, "the ingest log was not loaded within 30 s"
        time.sleep(0.05)
    served.stop()

    with duckdb.connect(str(tmp_path / "ts.duckdb"), read_only=True) as con:
        exposures = con.execute(
            "SELECT unit_id, assigned_variation, served_variation, fallback_reason, sdk, assignment_unit "
            "FROM exposures"
        ).fetchall()
        events = con.execute("SELECT unit_id, name, value, variation FROM events").fetchall()
    by_unit = {row[0]: row[1:] for row in exposures}
    assert len(exposures) == len(by_unit) == 300
    for k, (unit, _) in enumerate(cohort):
        assigned = expected[unit]
        fell_back = k % 10 == 0
        served_variation = "control" if fell_back else assigned
        assert by_unit[unit] == (
            assigned,
            served_variation,
            "timeout" if fell_back else None,
            "ramplight-typescript/0.1.0",
            "conversation",
        ), unit
    assert sorted(events) == sorted((unit, "resolved", 1.0, by_unit[unit][1]) for unit, _ in cohort)
