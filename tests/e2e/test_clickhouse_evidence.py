"""A server whose evidence lives in ClickHouse (chdb://, the real engine in-process of the server):
the same traffic gives the same readout as on the embedded DuckDB store, and the SQL it shows is
ClickHouse's."""

from __future__ import annotations

import math
import random
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.served import Served
from tests.factories import flag_doc

FLAG = "support_assistant_profile"
METRICS = {
    "latency_ms": {"type": "event", "event": "latency_ms", "aggregation": "mean", "direction": "decrease"},
    "resolved": {"type": "event", "event": "resolved", "aggregation": "binary"},
}


def traffic(units: int, seed: int = 3) -> dict[str, list[dict[str, Any]]]:
    """Conversations from now on (after the flag's first phase began), 0.1 s apart."""
    rng = random.Random(seed)
    start = datetime.now(UTC) + timedelta(seconds=1)
    exposures, events = [], []
    for i in range(units):
        unit = f"conv-{i}"
        variation = "candidate" if rng.random() < 0.3 else "control"
        ts = start + timedelta(seconds=i / 10)
        exposures.append({"ts": ts.isoformat(), "flag_key": FLAG, "assignment_unit": "conversation",
                          "unit_id": unit, "assigned_variation": variation, "served_variation": variation,
                          "attributes": {"plan": rng.choice(["free", "pro"])}})  # fmt: skip
        slow = 1.2 if variation == "candidate" else 1.0
        for _ in range(rng.randrange(1, 4)):
            events.append({"ts": (ts + timedelta(seconds=30)).isoformat(), "name": "latency_ms", "unit_id": unit,
                           "assignment_unit": "conversation", "value": rng.gauss(900, 120) * slow})  # fmt: skip
        if rng.random() < 0.6:
            events.append({"ts": (ts + timedelta(seconds=60)).isoformat(), "name": "resolved", "unit_id": unit,
                           "assignment_unit": "conversation", "value": 1.0})  # fmt: skip
    return {"exposures": exposures, "events": events}


def prepare(server: Served) -> tuple[httpx.Client, str]:
    """The flag and metrics on `server`: its admin client and an SDK key."""
    headers = {"Authorization": f"Bearer {server.admin_key()}"}
    admin = httpx.Client(base_url=server.url, headers=headers, timeout=120)
    assert admin.post("/api/flags", json=flag_doc()).status_code == 201
    for key, metric in METRICS.items():
        assert admin.put(f"/api/metrics/{key}", json=metric).status_code == 200
    key = admin.post("/api/keys", json={"kind": "sdk", "name": "t", "environment": "production"})
    return admin, key.json()["key"]


def readout(server: Served, admin: httpx.Client, sdk_key: str, batch: dict[str, Any]) -> dict[str, Any]:
    headers = {"Authorization": f"Bearer {sdk_key}"}
    answer = httpx.post(f"{server.url}/ingest/batch", json=batch, headers=headers, timeout=120)
    assert answer.status_code == 200 and not answer.json()["rejected"], answer.text
    report = admin.get(f"/api/flags/{FLAG}/report", params={"metrics": ",".join(METRICS)})
    assert report.status_code == 200, report.text
    result: dict[str, Any] = report.json()
    return result


@pytest.fixture
def servers(tmp_path: Path) -> Iterator[tuple[Served, Served]]:
    clickhouse = Served(db=str(tmp_path / "ch-control.duckdb"), evidence=f"chdb://{tmp_path / 'clickhouse'}")
    duckdb = Served(db=str(tmp_path / "embedded.duckdb"))
    try:
        yield clickhouse, duckdb
    finally:
        clickhouse.stop()
        duckdb.stop()


WALL_CLOCK = {"days_remaining", "elapsed_days"}
"""Figures that depend on when the readout ran, not on the evidence."""


def differences(a: Any, b: Any, path: str = "") -> list[str]:
    """Where two readout documents differ: floats beyond 1e-9 relative, anything else at all."""
    if isinstance(a, dict) and isinstance(b, dict):
        if a.keys() != b.keys():
            return [f"{path}: keys {sorted(a.keys() ^ b.keys())}"]
        return [d for k in a if k not in WALL_CLOCK for d in differences(a[k], b[k], f"{path}.{k}")]
    if isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            return [f"{path}: {len(a)} vs {len(b)} items"]
        return [
            d for i, (x, y) in enumerate(zip(a, b, strict=True)) for d in differences(x, y, f"{path}[{i}]")
        ]
    if isinstance(a, float) and isinstance(b, float | int):
        return [] if math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12) else [f"{path}: {a!r} vs {b!r}"]
    return [] if a == b else [f"{path}: {a!r} vs {b!r}"]


def test_a_readout_on_clickhouse_evidence_equals_the_embedded_one(servers: tuple[Served, Served]) -> None:
    prepared = [prepare(s) for s in servers]
    batch = traffic(1500)
    on_clickhouse, on_duckdb = (readout(s, *p, batch) for s, p in zip(servers, prepared, strict=True))
    assert "toDateTime64(" in on_clickhouse["sql"] and "toDateTime64(" not in on_duckdb["sql"]
    assert on_clickhouse["data_quality"]["exposed_units"] == 1500
    assert [m["key"] for m in on_clickhouse["metrics"]] == ["latency_ms", "resolved"]
    latency = on_clickhouse["metrics"][0]["comparisons"][0]["fixed"]["relative"]
    assert 0.1 < latency < 0.3  # the candidate's 20 % slowdown is seen
    assert differences(on_clickhouse["metrics"], on_duckdb["metrics"]) == []
    assert differences(on_clickhouse["data_quality"], on_duckdb["data_quality"]) == []
